"""A run evaluated with score=later and not yet scored: its quality cells say why they are empty."""

from __future__ import annotations

import pandas as pd

from vlm_quant.study.report import quality_cells
from vlm_quant.study.report.hallucination import safety_table
from vlm_quant.study.report.tables import numbers_table, quality_table
from vlm_quant.tracking import run_schema as rs


def runs_frame() -> pd.DataFrame:
    """Two pretrained runs as `query` returns them: fp16 scored, int8 deferred (no quality metric)."""
    return pd.DataFrame({
        "label": ["fp16", "int8"],
        "run_id": ["a", "b"],
        "run_name": ["m · fp16", "m · int8"],
        "weights": ["pretrained", "pretrained"],
        "precision": ["fp16", "int8"],
        "metrics.cider": [0.512, float("nan")],
        "metrics.meteor": [0.2, float("nan")],
        "metrics.latency_ms_p50": [12.0, 10.0],
        f"tags.{rs.TAG_SCORING_ABSENT}": [float("nan"), "scoring deferred (score=later)"],
    })


def test_deferred_run_reads_absent_with_the_reason_not_blank_or_zero():
    numbers = numbers_table(runs_frame(), "captioning", {}, "a")
    table = quality_table(numbers, "captioning").set_index("Configuration")
    assert table.loc["fp16", "CIDEr"] == "0.512" and table.loc["fp16", "METEOR"] == "0.200"
    assert table.loc["int8", "CIDEr"] == quality_cells.DEFERRED_CELL == "n/a (scoring deferred, score=later)"
    assert table.loc["int8", "METEOR"] == table.loc["int8", "ΔCIDEr [95% CI]"] == quality_cells.DEFERRED_CELL
    assert numbers.set_index("label").loc["int8", "scoring_absent_reason"] == "scoring deferred (score=later)"
    [line] = quality_cells.legend(numbers)
    assert line.startswith(quality_cells.DEFERRED_CELL) and "int8" in line and "vlm-quant score run" in line
    assert "fp16" not in line


def test_deferred_run_has_no_safety_screen_yet_and_says_why():
    runs = runs_frame()
    runs["metrics.n_samples_evaluated"] = [4.0, 4.0]
    runs["metrics.safety_flagged_n"] = [0.0, float("nan")]
    safety = safety_table(runs, {"a": [], "b": None}).set_index("Configuration")
    assert safety.loc["fp16", "Flagged"] == "0" and safety.loc["int8", "Screened"] == "4"
    assert safety.loc["int8", "Flagged"] == safety.loc["int8", "Examples"] == quality_cells.DEFERRED_CELL


def test_runs_without_the_tag_keep_plain_na():
    runs = runs_frame().drop(columns=[f"tags.{rs.TAG_SCORING_ABSENT}"])
    numbers = numbers_table(runs, "captioning", {}, "a")
    assert quality_table(numbers, "captioning").set_index("Configuration").loc["int8", "CIDEr"] == "n/a"
    assert quality_cells.legend(numbers) == []
