"""compare shows each run's batch-1 agreement; below the threshold it warns with the subset's metric delta."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from report_store import _params, cost_metrics, environment, vqa_rows

from vlm_quant.cli.commands import main
from vlm_quant.study.report import batch_invariance as bi
from vlm_quant.tracking import run_schema as rs

ACCURACY = [1.0, 0.0, 0.6, 1.0, 0.3, 1.0, 0.0, 1.0, 1.0, 0.9]
BELOW = bi.AGREEMENT_WARNING_THRESHOLD - 0.2
DELTA = "batch_invariance_vqa_accuracy_delta"


@pytest.fixture(scope="module")
def invariance_store(store_writer):
    """fp16 agrees fully; int8 is below the threshold (delta -0.150); nf4 was unscored (delta absent);
    int4 ran with invariance_samples=0; bf16 was logged before the check existed."""
    exp = store_writer.experiment("batch-invariance")
    logged = {
        "fp16": ({bi.AGREEMENT: 1.0, DELTA: 0.0}, {}),
        "int8": ({bi.AGREEMENT: BELOW, DELTA: -0.15}, {}),
        "nf4": ({bi.AGREEMENT: BELOW}, {rs.TAG_BATCH_INVARIANCE_DELTA_ABSENT: "no Java"}),
        "int4": ({}, {rs.TAG_BATCH_INVARIANCE_ABSENT: "disabled"}),
        "bf16": ({}, {}),
    }
    ids = {}
    for quant, (metrics, tags) in logged.items():
        params = _params(quant, "pretrained", store_writer.root / "none", task="vqa", n_samples="10")
        if metrics:
            params.update({rs.PARAM_BATCH_INVARIANCE_N: "10", rs.PARAM_BATCH_INVARIANCE_BATCH_SIZE: "8"})
        ids[quant] = store_writer.run(
            exp, quant, params=params,
            metrics={"vqa_accuracy": float(np.mean(ACCURACY)), **cost_metrics(1.0), **metrics},
            rows=vqa_rows(ACCURACY, ["red"] * 10), env=environment(), tags=tags,
        )
    return store_writer.uri, ids


def test_compare_shows_the_agreement_and_warns_below_the_threshold(invariance_store, tmp_path):
    uri, ids = invariance_store
    out = tmp_path / "report"
    args = ["compare", "--experiment", "batch-invariance", "--out-dir", str(out), "--tracking-uri", uri,
            "--no-log", "--bootstrap", "50"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)  # stdout stays one JSON object; the warnings go to stderr

    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: batch invariance")]
    assert len(warned) == 2
    int8 = next(line for line in warned if ids["int8"] in line)
    assert f"agreement {BELOW:.2f} (n=10)" in int8 and "vqa_accuracy on that subset changes by -0.150" in int8
    assert "batch 8" in int8
    nf4 = next(line for line in warned if ids["nf4"] in line)
    assert "delta was not measured (no Java)" in nf4
    assert not any(ids[q] in line for q in ("fp16", "int4", "bf16") for line in warned)

    markdown = (out / "results.md").read_text()
    notes = (out / "notes.md").read_text()
    assert all(line.removeprefix("warning: ") in markdown and line.removeprefix("warning: ") in notes
               for line in warned)
    numbers = pd.read_csv(out / "results.csv").set_index("run_name")
    assert numbers.loc["int8", bi.AGREEMENT] == pytest.approx(BELOW)
    assert numbers.loc["int8", bi.DELTA] == pytest.approx(-0.15)
    assert pd.isna(numbers.loc["int4", bi.AGREEMENT]) and numbers.loc["int4", bi.ABSENT] == "disabled"

    table = markdown.split("## Cost")[0]
    rows = {line.split("|")[1].strip(): line.split("|")[-2].strip() for line in table.splitlines()
            if line.startswith("| ") and bi.HEADER not in line}
    assert rows == {
        "fp16": "1.00 (n=10)", "int8": f"{BELOW:.2f} (n=10)", "nf4": f"{BELOW:.2f} (n=10)",
        "int4": "n/a (disabled)", "bf16": "n/a (not logged)",
    }
    assert "Batch-1 agreement" in (out / "results_quality.tex").read_text()


def test_no_column_and_no_warning_for_runs_logged_before_the_check(caption_report):
    assert bi.HEADER not in caption_report.tables.quality.columns
    assert caption_report.warnings == () and not caption_report.tables.warnings
