"""The human spot-check sheet: seeded rows, CSV + inline-image HTML, and the import back into MLflow."""

import base64
import csv
import io
import json
import re

import pytest
from click.testing import CliRunner
from PIL import Image

from vlm_quant.cli.vqa import spotcheck
from vlm_quant.errors import UserError
from vlm_quant.tasks.spotcheck import (
    SHEET_COLUMNS,
    SPOTCHECK_CSV,
    SPOTCHECK_HTML,
    import_spotcheck,
    log_spotcheck,
    parse_verdict,
    select_spotcheck_rows,
    spotcheck_metrics,
)
from vlm_quant.tracking.tracker import InMemoryTracker, open_run

ACCURACIES = (0.0, 0.3, 0.6, 0.9, 1.0)


def make_rows(n: int) -> list[dict]:
    return [
        {
            "sample_id": 1000 + 7 * i,
            "question_id": 1000 + 7 * i,
            "image_file": f"val2014/img_{i}.jpg",
            "question": f"How many cats, {i}?",
            "prediction": "two",
            "answers": ["2"] * 6 + ["3"] * 4,
            "accuracy": ACCURACIES[i % len(ACCURACIES)],
        }
        for i in range(n)
    ]


def fake_image(row: dict) -> Image.Image:
    return Image.new("RGB", (640, 480), (row["sample_id"] % 255, 90, 160))


def test_rows_are_a_seeded_random_sample_not_the_first_ones():
    rows = make_rows(40)
    chosen = select_spotcheck_rows(rows, 25, seed=0)
    assert len(chosen) == 25 and len({r["sample_id"] for r in chosen}) == 25
    assert chosen == select_spotcheck_rows(list(reversed(rows)), 25, seed=0)  # order of rows is irrelevant
    assert chosen != rows[:25] and chosen != select_spotcheck_rows(rows, 25, seed=1)
    assert [r["sample_id"] for r in chosen] == sorted(r["sample_id"] for r in chosen)
    assert select_spotcheck_rows(rows[:10], 25, seed=0) == rows[:10]  # fewer rows than asked: all


def test_sheet_csv_and_html_with_inline_thumbnails():
    tracker = InMemoryTracker()
    chosen = log_spotcheck(tracker, make_rows(30), fake_image, n=25, seed=3)
    table = list(csv.reader(io.StringIO(tracker.artifacts[SPOTCHECK_CSV])))
    assert (
        tuple(table[0])
        == SHEET_COLUMNS
        == (
            "sample_id",
            "question_id",
            "image_file",
            "question",
            "prediction",
            "human_answers",
            "auto_accuracy",
            "human_correct",
        )
    )
    assert len(table) == 26 and [int(r[0]) for r in table[1:]] == [r["sample_id"] for r in chosen]
    first = dict(zip(SHEET_COLUMNS, table[1], strict=True))
    assert first["human_answers"] == " | ".join(["2"] * 6 + ["3"] * 4) and first["human_correct"] == ""
    assert float(first["auto_accuracy"]) == chosen[0]["accuracy"]
    page = tracker.artifacts[SPOTCHECK_HTML]
    uris = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(uris) == 25
    with Image.open(io.BytesIO(base64.b64decode(uris[0]))) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) == 384
    assert "How many cats" in page and "two" in page
    assert log_spotcheck(InMemoryTracker(), make_rows(30), fake_image, n=0, seed=3) == []


def test_a_broken_image_leaves_a_card_without_a_picture():
    tracker = InMemoryTracker()

    def broken(row):
        raise OSError("truncated file")

    log_spotcheck(tracker, make_rows(2), broken, n=2, seed=0)
    assert tracker.artifacts[SPOTCHECK_HTML].count("(no image)") == 2


def test_verdicts_and_metrics():
    assert [parse_verdict(v) for v in ("1", "Yes", " TRUE ", "0", "no", "False", "")] == [
        True,
        True,
        True,
        False,
        False,
        False,
        None,
    ]
    with pytest.raises(ValueError):
        parse_verdict("maybe")
    metrics = spotcheck_metrics(
        {1: True, 2: True, 3: False, 4: False}, {1: 1.0, 2: 0.3, 3: 0.0, 4: 0.6, 5: 1.0}
    )
    assert metrics == pytest.approx(
        {
            "human_accuracy": 0.5,
            "human_spotcheck_n": 4,
            "spotcheck_auto_accuracy": 0.475,
            "human_minus_auto_accuracy": 0.025,
            "human_auto_agreement": 0.5,  # rows 1 and 3 agree
        }
    )


def _fill(path, sheet_csv: str, verdict) -> None:
    rows = list(csv.DictReader(io.StringIO(sheet_csv)))
    for n, row in enumerate(rows):
        row["human_correct"] = verdict(n, row)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SHEET_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_import_into_a_real_mlflow_run(tracking_uri, tmp_path):
    from mlflow import MlflowClient

    with open_run("spotcheck-test", "vqa-run", tracking_uri=tracking_uri) as tracker:
        chosen = log_spotcheck(tracker, make_rows(30), fake_image, n=25, seed=0)
    run_id = tracker.run_id
    client = MlflowClient(tracking_uri)
    sheet = open(client.download_artifacts(run_id, SPOTCHECK_CSV, str(tmp_path))).read()

    filled = tmp_path / "filled.csv"
    _fill(filled, sheet, lambda n, row: ("yes", "0", "TRUE", "no")[n % 4])
    metrics = import_spotcheck(run_id, filled, tracking_uri)
    human = [(n % 4) in (0, 2) for n in range(25)]
    auto = [r["accuracy"] for r in chosen]
    expected = spotcheck_metrics(dict(enumerate(human)), dict(enumerate(auto)))
    assert metrics == pytest.approx(expected)
    assert metrics["human_spotcheck_n"] == 25 and metrics["human_accuracy"] == pytest.approx(13 / 25)
    logged = client.get_run(run_id).data.metrics
    assert {k: logged[k] for k in metrics} == pytest.approx(metrics)
    assert "spotcheck/spotcheck_filled.csv" in [a.path for a in client.list_artifacts(run_id, "spotcheck")]

    # the same through the CLI (sharing this store: creating one costs ~10 s)
    cli = CliRunner()
    result = cli.invoke(
        spotcheck, ["import", "--run-id", run_id, "--csv", str(filled), "--tracking-uri", tracking_uri]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metrics"] == pytest.approx(metrics)
    result = cli.invoke(spotcheck, ["import", "--run-id", run_id, "--csv", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2 and result.stderr.startswith("error: file not found: ")

    # bad sheets: each error names the file, the line and the sample
    _fill(filled, sheet, lambda n, row: "" if n == 4 else "1")
    with pytest.raises(UserError, match=r"filled.csv: line 6 \(sample_id \d+\): human_correct is empty"):
        import_spotcheck(run_id, filled, tracking_uri)
    _fill(filled, sheet, lambda n, row: "perhaps" if n == 0 else "1")
    with pytest.raises(
        UserError, match=r"line 2 .*: human_correct 'perhaps' is not 1/0, yes/no or true/false"
    ):
        import_spotcheck(run_id, filled, tracking_uri)
    stranger = next(
        r["sample_id"] for r in make_rows(30) if r["sample_id"] not in {c["sample_id"] for c in chosen}
    )
    _fill(filled, sheet.replace(str(chosen[0]["sample_id"]), str(stranger), 1), lambda n, row: "1")
    with pytest.raises(UserError, match=rf"line 2 \(sample_id {stranger}\): this sample is not in the run's"):
        import_spotcheck(run_id, filled, tracking_uri)
    with pytest.raises(UserError, match="run 'no-such-run' not found"):
        import_spotcheck("no-such-run", filled, tracking_uri)
    with open_run("spotcheck-test", "captioning-run", tracking_uri=tracking_uri) as other:
        pass
    with pytest.raises(UserError, match=f"run '{other.run_id}' has no spotcheck/spotcheck.csv"):
        import_spotcheck(other.run_id, filled, tracking_uri)
