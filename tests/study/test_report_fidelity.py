"""The cost table shows the per-token fidelity metrics under headers that say what they are."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vlm_quant.models.families import ROLES
from vlm_quant.study.report import fidelity_note, table_parts
from vlm_quant.study.report.tables import FIDELITY_COLUMNS, cost_table
from vlm_quant.tracking import run_schema as rs

REALIZED = [f"realized_precision_{role}" for role in ROLES]
REPO = Path(__file__).resolve().parents[2]
METRICS_PAGE = REPO / "docs" / "reference" / "metrics.md"  # generated from vlm_quant/tracking/glossary/


def test_cost_table_reads_the_logged_fidelity_metrics():
    logged = {
        "fidelity_vision_cosine_token_mean": 0.29,
        "fidelity_vision_cosine_token_p5": 0.05,
        "fidelity_logits_kl_nats_token_mean": 0.125,
        "fidelity_top1_agreement_token_mean": 0.8125,
        "fidelity_n_images": 16,
        "fidelity_n_positions": 241,
    }
    numbers = pd.DataFrame(
        [
            {"label": "fp16", "weights": "pretrained", "caveats": ""},  # unquantized: nothing logged
            {"label": "int8", "weights": "pretrained", "caveats": "", **logged},
            {"label": "fp32", "weights": "random", "caveats": "", **dict.fromkeys(REALIZED, "fp32")},
        ]
    )
    cost = cost_table(numbers).set_index("Configuration")
    assert cost.loc["int8", "Vision cos, token mean"] == "0.2900"
    assert cost.loc["int8", "Vision cos, token p5"] == "0.0500"
    assert cost.loc["int8", "KL (nats/token)"] == "0.125"
    assert cost.loc["int8", "Top-1 agreement (tokens)"] == "0.81"
    assert cost.loc["fp16", "Vision cos, token mean"] == "n/a (not logged)"  # no audit: cannot say why
    assert cost.loc["fp32†", "KL (nats/token)"] == "n/a (unquantized)"  # nothing to compare with
    # the fidelity headers form their own part of the paper's split cost table
    assert {table_parts.cost_topic(h) for _, h, _ in FIDELITY_COLUMNS} == {"fidelity"}
    assert {metric for metric, _, _ in FIDELITY_COLUMNS} <= set(rs.FIDELITY_METRICS)
    (note,) = fidelity_note.legend(numbers)  # says what the columns are, over how much
    assert "5th percentile" in note and "(16 images, 241 positions)" in note
    assert fidelity_note.legend(numbers.iloc[:1]) == []  # no quantized run: no note


def test_the_metrics_reference_defines_every_fidelity_metric():
    page = METRICS_PAGE.read_text()
    for metric in rs.FIDELITY_METRICS:
        assert f"`{metric}`" in page, metric
    for old in ("`fidelity_vision_cosine`", "`fidelity_logits_kl`", "`fidelity_top1_agreement`"):
        assert old not in page and old not in (REPO / "README.md").read_text()
