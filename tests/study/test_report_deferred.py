"""A run evaluated with score=later and not yet scored: its quality cells say why they are empty."""

from __future__ import annotations

import pandas as pd

from vlm_quant.study.report import quality_cells
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
    assert table.loc["int8", "METEOR"] == quality_cells.DEFERRED_CELL
    [line] = quality_cells.legend(numbers)
    assert line.startswith(quality_cells.DEFERRED_CELL) and "int8" in line and "vlm-quant score run" in line
    assert "fp16" not in line


def test_runs_without_the_tag_keep_plain_na():
    runs = runs_frame().drop(columns=[f"tags.{rs.TAG_SCORING_ABSENT}"])
    numbers = numbers_table(runs, "captioning", {}, "a")
    assert quality_table(numbers, "captioning").set_index("Configuration").loc["int8", "CIDEr"] == "n/a"
    assert quality_cells.legend(numbers) == []
