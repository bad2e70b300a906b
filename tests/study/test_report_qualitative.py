"""Qualitative examples: ranking by disagreement, the figure with and without images."""

from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from vlm_quant.study.report.qualitative import normalise, pick_examples, rank_disagreements, write_qualitative


def _rows(predictions, scores):
    return [
        {"sample_id": f"s{i}", "image_id": i, "image_file": f"img/{i}.jpg", "prediction": p, "cider": c}
        for i, (p, c) in enumerate(zip(predictions, scores, strict=True))
    ]


PREDICTIONS = {
    "fp16": _rows(["a cat.", "a dog", "a bird", "a car"], [1.0, 0.5, 0.9, 0.4]),
    "int8": _rows(["A cat", "a dog", "a plane", "a car"], [1.0, 0.7, 0.2, 0.4]),
    "nf4": _rows(["a cat", "a dog", "a ship", "a bus"], [1.0, 0.1, 0.3, 0.4]),
}


def test_ranking_counts_distinct_predictions_then_score_spread():
    assert normalise("  A  Cat. ") == "a cat"
    ranked = rank_disagreements(PREDICTIONS, "cider")
    assert ranked["sample_id"].tolist() == ["s2", "s3", "s1", "s0"]
    assert ranked["n_distinct"].tolist() == [3, 2, 1, 1]
    assert ranked["score_spread"].tolist() == pytest.approx([0.7, 0.0, 0.6, 0.0])
    examples = pick_examples(ranked, k=3)
    assert examples["sample_id"].tolist() == ["s2", "s3", "s1"]  # s0: all agree, never an example


def test_figure_without_images_says_so(tmp_path):
    result = write_qualitative(PREDICTIONS, "cider", tmp_path, tmp_path, data_dir=str(tmp_path / "missing"))
    assert result.images_shown == 0 and "not found under data_dir" in result.note
    assert {p.name for p in result.paths} == {
        "disagreements.md",
        "disagreements.csv",
        "qualitative.png",
        "qualitative.pdf",
    }
    csv = pd.read_csv(tmp_path / "disagreements.csv")
    assert csv["sample_id"].tolist() == ["s2", "s3", "s1", "s0"]
    assert "prediction[int8]" in csv.columns and "score[nf4]" in csv.columns


def test_sweep_examples_show_images_and_leave_out_random_weights(caption_report, caption_store):
    qualitative = caption_report.qualitative
    assert qualitative.images_shown == 3 and qualitative.note is None
    assert len(qualitative.examples) == 3
    assert (qualitative.examples["n_distinct"] == 3).all()  # samples where fp16, nf4 and int4 all differ
    assert not any("random" in column for column in qualitative.ranked.columns)
    assert len(qualitative.ranked) == len(caption_store.runs["fp16"].rows)  # csv: every sample
    md = (caption_report.out_dir / "disagreements.md").read_text()
    assert md.count("\n| s0") == 20  # the top rows in the Markdown file
    figure = caption_report.out_dir / "figures" / "qualitative.png"
    with Image.open(figure) as image:
        assert image.size[0] > image.size[1]  # three columns side by side
