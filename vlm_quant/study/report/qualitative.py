"""Qualitative examples: the samples on which the configurations disagree most, shown side by side.

Disagreement of one sample = (number of distinct normalised predictions, spread max-min of the
per-sample score); samples are ranked by the first, then the second, then sample_id (deterministic).
Only pretrained-weight runs take part: random-weight outputs would top every ranking with noise.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from vlm_quant.study.report.render import fmt_number, markdown_table

DEFAULT_EXAMPLES = 3
MD_ROWS = 20  # disagreements.md shows the top rows; disagreements.csv holds every sample
THUMBNAIL_PX = 512


@dataclass(frozen=True)
class Qualitative:
    """Ranked samples, the examples drawn, files written and a note on what could not be shown."""

    ranked: pd.DataFrame
    examples: pd.DataFrame
    paths: tuple[Path, ...]
    images_shown: int
    note: str | None


def normalise(prediction: object) -> str:
    """Lower-case, collapse whitespace, drop a trailing full stop: "A cat." and "a cat" agree."""
    text = re.sub(r"\s+", " ", str(prediction or "")).strip().lower()
    return text.rstrip(".").strip()


def rank_disagreements(predictions: dict[str, list[dict]], score_key: str) -> pd.DataFrame:
    """One row per sample present in every configuration, most disagreed-upon first.

    Columns: sample_id, image_id, image_file, question, n_distinct, score_spread, then
    ``prediction[<label>]`` and ``score[<label>]`` per configuration.
    """
    frames = []
    for label, rows in predictions.items():
        frame = pd.DataFrame(
            {
                "sample_id": [str(r["sample_id"]) for r in rows],
                f"prediction[{label}]": [r.get("prediction", "") for r in rows],
                f"score[{label}]": [r.get(score_key) for r in rows],
            }
        ).set_index("sample_id")
        frames.append(frame)
    first = next(iter(predictions.values()))
    info = pd.DataFrame(
        {
            "sample_id": [str(r["sample_id"]) for r in first],
            "image_id": [r.get("image_id") for r in first],
            "image_file": [r.get("image_file") for r in first],
            "question": [r.get("question") for r in first],
        }
    ).set_index("sample_id")
    joined = info.join(frames, how="inner")  # only samples every configuration answered
    labels = list(predictions)
    joined["n_distinct"] = [
        len({normalise(row[f"prediction[{lab}]"]) for lab in labels}) for _, row in joined.iterrows()
    ]
    scores = joined[[f"score[{lab}]" for lab in labels]].astype(float)
    joined["score_spread"] = (scores.max(axis=1) - scores.min(axis=1)).fillna(0.0)
    joined = joined.reset_index()
    ordered = ["sample_id", "image_id", "image_file", "question", "n_distinct", "score_spread"]
    joined = joined[ordered + [c for c in joined.columns if c not in ordered]]
    return joined.sort_values(
        ["n_distinct", "score_spread", "sample_id"], ascending=[False, False, True], ignore_index=True
    )


def pick_examples(ranked: pd.DataFrame, k: int = DEFAULT_EXAMPLES) -> pd.DataFrame:
    """The top ``k`` samples on which the configurations actually differ (may be fewer, or none)."""
    differ = ranked[(ranked["n_distinct"] > 1) | (ranked["score_spread"] > 0)]
    return differ.head(k).reset_index(drop=True)


def examples_figure(
    examples: pd.DataFrame, labels: list[str], data_dir: str | None, out_dir: Path
) -> tuple[tuple[Path, Path], int]:
    """Each example as a column: its image (when found under ``data_dir``), then every configuration's
    prediction and score. Returns the (PNG, PDF) paths and how many images were drawn."""
    images = [_load_image(data_dir, image_file) for image_file in examples["image_file"]]
    blocks = [_caption_block(row, labels) for _, row in examples.iterrows()]
    shown = sum(image is not None for image in images)
    # Size the rows to their content: 7 pt monospace lines, and no image row when no image was found.
    text_height = 0.13 * max(block.count("\n") + 1 for block in blocks) + 0.3
    image_height = 3.0 if shown else 0.0
    fig = Figure(figsize=(4.0 * len(examples), image_height + text_height + 0.3), layout="constrained")
    grid = fig.add_gridspec(
        2 if shown else 1, len(examples), height_ratios=[image_height, text_height] if shown else None
    )
    for col, (sample_id, image, block) in enumerate(zip(examples["sample_id"], images, blocks, strict=True)):
        if shown:
            ax_img = fig.add_subplot(grid[0, col])
            ax_img.set_axis_off()
            if image is not None:
                ax_img.imshow(np.asarray(image))
            else:
                ax_img.text(0.5, 0.5, "image not found", ha="center", va="center", color="0.5")
        ax_txt = fig.add_subplot(grid[-1, col])
        ax_txt.set_axis_off()
        ax_txt.set_title(f"sample {sample_id}", fontsize=8, loc="left")
        ax_txt.text(
            0, 1, block, va="top", ha="left", fontsize=7, family="monospace", transform=ax_txt.transAxes
        )
    png, pdf = out_dir / "qualitative.png", out_dir / "qualitative.pdf"
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=150)
    fig.savefig(pdf, metadata={"CreationDate": None})
    return (png, pdf), shown


def write_qualitative(
    predictions: dict[str, list[dict]],
    score_key: str,
    out_dir: Path,
    figures_dir: Path,
    *,
    data_dir: str | None,
    k: int = DEFAULT_EXAMPLES,
) -> Qualitative:
    """Write ``disagreements.md``/``.csv`` under ``out_dir`` and ``qualitative.png``/``.pdf`` under
    ``figures_dir``; ``note`` says when images or examples could not be shown."""
    ranked = rank_disagreements(predictions, score_key)
    examples = pick_examples(ranked, k)
    labels = list(predictions)
    csv_path, md_path = out_dir / "disagreements.csv", out_dir / "disagreements.md"
    ranked.to_csv(csv_path, index=False, na_rep="n/a", float_format="%.10g")
    md_path.write_text(_disagreements_md(ranked, labels), encoding="utf-8")
    if examples.empty:
        note = "all configurations gave the same prediction and score on every sample: no example figure"
        return Qualitative(ranked, examples, (md_path, csv_path), 0, note)
    figure_paths, shown = examples_figure(examples, labels, data_dir, figures_dir)
    note = None
    if shown < len(examples):
        note = (
            f"{len(examples) - shown} of {len(examples)} example images not found under data_dir "
            f"{data_dir!r} on this machine: the figure shows the predictions without them"
        )
    return Qualitative(ranked, examples, (md_path, csv_path, *figure_paths), shown, note)


def _caption_block(row: pd.Series, labels: list[str]) -> str:
    lines = []
    if isinstance(row["question"], str) and row["question"]:
        lines += textwrap.wrap(f"Q: {row['question']}", 48) + [""]
    for label in labels:
        text = f"{label} ({fmt_number(row[f'score[{label}]'])}): {row[f'prediction[{label}]']}"
        lines += textwrap.wrap(text, 48)
    return "\n".join(lines)


def _load_image(data_dir: str | None, image_file: object) -> Image.Image | None:
    if not data_dir or not isinstance(image_file, str):
        return None
    path = Path(data_dir) / image_file
    if not path.is_file():
        return None
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        return image


def _disagreements_md(ranked: pd.DataFrame, labels: list[str]) -> str:
    top = ranked.head(MD_ROWS)
    table = pd.DataFrame(
        {
            "sample": top["sample_id"],
            "distinct": top["n_distinct"].astype(str),
            "score spread": [fmt_number(v) for v in top["score_spread"]],
        }
    )
    for label in labels:
        table[label] = [
            f"{p} ({fmt_number(s)})"
            for p, s in zip(top[f"prediction[{label}]"], top[f"score[{label}]"], strict=True)
        ]
    return (
        "# Where the configurations disagree\n\n"
        f"Top {len(top)} of {len(ranked)} samples by number of distinct predictions, then score spread "
        "(max - min of the per-sample score). Cells: prediction (per-sample score). "
        "All samples: `disagreements.csv`.\n\n" + markdown_table(table)
    )
