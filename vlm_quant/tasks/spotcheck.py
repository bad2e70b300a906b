"""The human spot-check: does the automatic VQA accuracy agree with a person looking at the answers?

Every VQA run logs a seeded random sheet of ``spotcheck_n`` scored samples:

* ``spotcheck/spotcheck.html``: each image inline (base64 JPEG thumbnail, longest side <= 384 px),
  the question, the model's answer, the 10 human answers and the automatic score;
* ``spotcheck/spotcheck.csv``: one row per sample with the columns of `SHEET_COLUMNS` and an empty
  ``human_correct`` column for the reviewer to fill with 1/0 (yes/no, true/false).

`import_spotcheck` reads the filled CSV back, checks every row belongs to the run's sheet, and logs
to that run: ``human_accuracy`` (0-1), ``human_spotcheck_n``, ``spotcheck_auto_accuracy`` (the mean
automatic accuracy of the same rows, 0-1), ``human_minus_auto_accuracy`` (their difference: > 0 when
the metric under-credits answers a person accepts, e.g. paraphrases), and ``human_auto_agreement``
(0-1: the fraction of rows where the person's verdict equals the automatic one, an answer counting as
automatically correct when its VQA accuracy is >= `AUTO_CORRECT_THRESHOLD`, i.e. at least 2 of the
10 humans gave it). The filled CSV is logged as ``spotcheck/spotcheck_filled.csv``.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from vlm_quant.errors import UserError

SPOTCHECK_HTML = "spotcheck/spotcheck.html"
SPOTCHECK_CSV = "spotcheck/spotcheck.csv"
SPOTCHECK_FILLED_CSV = "spotcheck/spotcheck_filled.csv"
SHEET_COLUMNS = (
    "sample_id", "question_id", "image_file", "question", "prediction", "human_answers", "auto_accuracy",
    "human_correct",
)
THUMBNAIL_SIDE = 384
AUTO_CORRECT_THRESHOLD = 0.5  # VQA accuracy 0.6 = 2 of 10 humans gave the answer; 0.3 = only one
TRUE_WORDS = ("1", "yes", "true", "y")
FALSE_WORDS = ("0", "no", "false", "n")


# --- writing the sheet ------------------------------------------------------------------------


def select_spotcheck_rows(rows: Sequence[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """A seeded random sample of ``n`` scored rows (all when fewer), ordered by sample id.

    Independent of the rows' order; a seed of its own so the sheet is not the first rows evaluated.
    """
    ordered = sorted(rows, key=lambda r: r["sample_id"])
    if n >= len(ordered):
        return ordered
    chosen = random.Random(f"vqa-spotcheck-{seed}").sample(ordered, n)
    return sorted(chosen, key=lambda r: r["sample_id"])


def thumbnail_data_uri(image: Image.Image, max_side: int = THUMBNAIL_SIDE) -> str:
    """A ``data:image/jpeg;base64,...`` URI of an RGB copy whose longest side is <= ``max_side``."""
    thumb = image.convert("RGB")
    thumb.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def sheet_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The CSV to fill: `SHEET_COLUMNS`, ``human_answers`` joined by " | ", ``human_correct`` empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SHEET_COLUMNS)
    for row in rows:
        writer.writerow([
            row["sample_id"], row["question_id"], row["image_file"], row["question"], row["prediction"],
            " | ".join(row["answers"]), f"{row['accuracy']:.4f}", "",
        ])
    return buffer.getvalue()


def sheet_html(rows: Sequence[dict[str, Any]], image_uris: dict[int, str | None], title: str) -> str:
    """A self-contained page: one card per sample with its image inline."""
    cards = []
    for row in rows:
        uri = image_uris.get(row["sample_id"])
        picture = f'<img src="{uri}" alt="sample {row["sample_id"]}">' if uri else "<p>(no image)</p>"
        answers = ", ".join(html.escape(a) for a in row["answers"])
        ids = f"{row['sample_id']} / {html.escape(str(row['question_id']))}"
        cards.append(
            f'<div class="card">{picture}<dl>'
            f"<dt>sample_id / question_id</dt><dd>{ids}</dd>"
            f"<dt>question</dt><dd>{html.escape(row['question'])}</dd>"
            f"<dt>prediction</dt><dd><b>{html.escape(row['prediction'])}</b></dd>"
            f"<dt>human answers</dt><dd>{answers}</dd>"
            f"<dt>automatic VQA accuracy</dt><dd>{row['accuracy']:.2f}</dd></dl></div>"
        )
    style = (
        "body{font-family:sans-serif;margin:2em}"
        ".card{display:flex;gap:1.5em;border-bottom:1px solid #ccc;padding:1em 0}"
        ".card img{max-width:384px;max-height:384px}dt{font-weight:bold;color:#555}dd{margin:0 0 .5em}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
        "<p>Judge each prediction; fill <code>human_correct</code> in spotcheck.csv with 1/0 (yes/no), "
        "then run "
        "<code>vlm-quant spotcheck import --run-id RUN --csv filled.csv</code>.</p>"
        + "".join(cards) + "</body></html>"
    )


def log_spotcheck(
    tracker: Any, rows: Sequence[dict[str, Any]], open_image: Callable[[dict[str, Any]], Image.Image], *,
    n: int, seed: int, title: str = "VQA spot-check",
) -> list[dict[str, Any]]:
    """Log the seeded sheet (HTML + CSV) of ``n`` rows; returns the chosen rows (none when n is 0)."""
    if n <= 0 or not rows:
        return []
    chosen = select_spotcheck_rows(rows, n, seed)
    uris: dict[int, str | None] = {}
    for row in chosen:
        try:
            uris[row["sample_id"]] = thumbnail_data_uri(open_image(row))
        except Exception:  # a sheet with a missing picture is still useful; the card says so
            uris[row["sample_id"]] = None
    heading = f"{title} ({len(chosen)} samples, seed {seed})"
    tracker.log_text(sheet_html(chosen, uris, heading), SPOTCHECK_HTML)
    tracker.log_text(sheet_csv(chosen), SPOTCHECK_CSV)
    return chosen


# --- reading it back ------------------------------------------------------------------------------


def parse_verdict(value: str) -> bool | None:
    """1/0, yes/no, true/false (any case) -> bool; blank -> None; anything else -> ValueError."""
    text = value.strip().lower()
    if not text:
        return None
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError(text)


def read_sheet(path: str | Path) -> dict[int, dict[str, str]]:
    """A sheet as logged: {sample_id: row}."""
    rows = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            rows[int(row["sample_id"])] = row
    return rows


def read_verdicts(path: str | Path, sheet: dict[int, dict[str, str]]) -> dict[int, bool]:
    """The filled CSV -> {sample_id: human_correct}; every row checked against the run's sheet.

    Rows may be a subset of the sheet (a reviewer may drop a row), but none may be blank, unknown,
    repeated or disagree with the sheet's question_id. Line numbers count the header as line 1.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    verdicts: dict[int, bool] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("sample_id", "human_correct") if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(
                f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(SHEET_COLUMNS)}."
            )
        for line, row in enumerate(reader, start=2):
            verdicts.update(_verdict(path, line, row, sheet, verdicts))
    if not verdicts:
        raise UserError(f"{path} holds no rows.")
    return verdicts


def _verdict(path: Path, line: int, row: dict[str, str | None], sheet: dict[int, dict[str, str]],
             seen: dict[int, bool]) -> dict[int, bool]:
    raw_id = (row.get("sample_id") or "").strip()
    try:
        sample_id = int(raw_id)
    except ValueError:
        raise UserError(f"{path}: line {line}: sample_id {raw_id!r} is not an integer.") from None
    where = f"{path}: line {line} (sample_id {sample_id})"
    if sample_id not in sheet:
        raise UserError(f"{where}: this sample is not in the run's spot-check sheet.")
    if sample_id in seen:
        raise UserError(f"{where}: the sample appears more than once.")
    question_id = (row.get("question_id") or "").strip()
    if question_id and question_id != sheet[sample_id]["question_id"]:
        raise UserError(f"{where}: question_id {question_id!r} does not match the sheet's "
                        f"{sheet[sample_id]['question_id']!r}.")
    try:
        verdict = parse_verdict(row.get("human_correct") or "")
    except ValueError as exc:
        raise UserError(f"{where}: human_correct {exc.args[0]!r} is not 1/0, yes/no or true/false.") from None
    if verdict is None:
        raise UserError(f"{where}: human_correct is empty; fill 1/0 (yes/no, true/false).")
    return {sample_id: verdict}


def spotcheck_metrics(verdicts: dict[int, bool], auto: dict[int, float]) -> dict[str, float]:
    """Human accuracy, its gap to the automatic accuracy of the same rows, and their agreement (0-1)."""
    n = len(verdicts)
    human = sum(verdicts.values()) / n
    automatic = sum(auto[i] for i in verdicts) / n
    agree = sum((auto[i] >= AUTO_CORRECT_THRESHOLD) == verdict for i, verdict in verdicts.items()) / n
    return {
        "human_accuracy": human,
        "human_spotcheck_n": float(n),
        "spotcheck_auto_accuracy": automatic,
        "human_minus_auto_accuracy": human - automatic,
        "human_auto_agreement": agree,
    }


def import_spotcheck(run_id: str, csv_path: str | Path, tracking_uri: str | None = None) -> dict[str, float]:
    """Log a reviewer's filled sheet back to its run (metrics + the CSV); returns the metrics logged."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from vlm_quant.tracking.tracker import resolve_tracking_uri

    if not Path(csv_path).is_file():  # before any MLflow work
        raise UserError(f"file not found: {csv_path}")
    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    try:
        client.get_run(run_id)
    except Exception as exc:  # MlflowException for an unknown id; anything else also means "no such run"
        raise UserError(f"run {run_id!r} not found in {uri}: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="vlmq-spotcheck-") as tmp:
        try:
            sheet_path = client.download_artifacts(run_id, SPOTCHECK_CSV, tmp)
        except Exception as exc:  # missing artifact: MlflowException or OSError depending on the store
            raise UserError(
                f"run {run_id!r} has no {SPOTCHECK_CSV} (is it a VQA run with spotcheck_n > 0?)"
            ) from exc
        sheet = read_sheet(sheet_path)
        verdicts = read_verdicts(csv_path, sheet)
        metrics = spotcheck_metrics(verdicts, {i: float(row["auto_accuracy"]) for i, row in sheet.items()})
        now_ms = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now_ms, 0) for k, v in metrics.items()])
        filled = Path(tmp) / Path(SPOTCHECK_FILLED_CSV).name
        shutil.copyfile(csv_path, filled)
        client.log_artifact(run_id, str(filled), str(Path(SPOTCHECK_FILLED_CSV).parent))
    return metrics
