"""Results tables: numbers equal the logged metrics, Δ intervals, random runs, n/a, LaTeX sanity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from latex_checks import check_booktabs, table_floats
from report_store import SHIFT

from vlm_quant.study.report.bootstrap import paired_bootstrap, paired_scores
from vlm_quant.study.report.render import latex_escape, markdown_table
from vlm_quant.tracking import run_schema as rs

PRETRAINED = ["fp16", "int8", "nf4", "int4"]


def test_quality_table_holds_the_logged_metrics_of_pretrained_runs_only(caption_report, caption_store):
    quality = caption_report.tables.quality
    assert quality["Configuration"].tolist() == PRETRAINED  # baseline first, random run absent
    for header, metric in (
        ("CIDEr", "cider"),
        ("BLEU-1", "bleu_1"),
        ("BLEU-4", "bleu_4"),
        ("METEOR", "meteor"),
        ("ROUGE-L", "rouge_l"),
    ):
        expected = [f"{caption_store.runs[label].metrics[metric]:.3f}" for label in PRETRAINED]
        assert quality[header].tolist() == expected
    assert "SPICE" not in quality.columns  # logged by no run: no column


def test_delta_column_on_the_constructed_cases(caption_report, caption_store):
    delta = dict(
        zip(
            caption_report.tables.quality["Configuration"],
            caption_report.tables.quality["ΔCIDEr [95% CI]"],
            strict=True,
        )
    )
    assert delta["fp16"] == "baseline"
    assert delta["int8"] == "0.000 [0.000, 0.000]"  # identical predictions
    assert delta["nf4"] == f"{SHIFT:.3f} [{SHIFT:.3f}, {SHIFT:.3f}]"  # constant shift
    base, int4 = caption_store.runs["fp16"].rows, caption_store.runs["int4"].rows
    expected = paired_bootstrap(*paired_scores(base, int4, "cider"), n_resamples=1000, seed=0)
    assert caption_report.deltas[caption_store.runs["int4"].run_id] == expected
    assert delta["int4"] == f"{expected.delta:.3f} [{expected.low:.3f}, {expected.high:.3f}]"
    assert expected.delta == pytest.approx(
        caption_store.runs["int4"].metrics["cider"] - caption_store.runs["fp16"].metrics["cider"]
    )


def test_results_csv_equals_logged_metrics_and_says_na(caption_report, caption_store):
    path = caption_report.out_dir / "results.csv"
    csv = pd.read_csv(path).set_index("label")
    for label, run in caption_store.runs.items():
        for metric, value in run.metrics.items():
            if label == "fp16 (random)" and metric in rs.CAPTION_METRICS:
                assert np.isnan(csv.loc[label, metric])  # quality of random weights is never reported
            else:
                assert csv.loc[label, metric] == pytest.approx(value, rel=1e-9), (label, metric)
    assert np.isnan(csv.loc["nf4", "energy_j_per_image"]) and np.isnan(csv.loc["nf4", "co2e_kg"])
    nf4_line = next(line for line in path.read_text().splitlines() if line.startswith("nf4,"))
    assert "n/a" in nf4_line and ",0," not in nf4_line


def test_cost_table_marks_random_runs_and_shows_missing_energy_as_na(caption_report, caption_store):
    cost = caption_report.tables.cost.set_index("Configuration")
    assert cost.index.tolist() == [*PRETRAINED, "fp16 (random)†"]
    # Absent, with the reason: the run had no NVML counter (its tag); never 0.
    assert cost.loc["nf4", "Energy (J/image, cost pass bs 8)"] == "n/a (no NVML)"
    assert cost.loc["nf4", "CO2e (kg, quality pass)"] == "n/a (no NVML)"
    for label in PRETRAINED:
        metrics = caption_store.runs[label].metrics
        assert cost.loc[label, "Latency p50 (ms/image)"] == f"{metrics['latency_ms_p50']:.1f}"
        assert cost.loc[label, "TTFT p50 (ms)"] == f"{metrics['ttft_ms_p50']:.1f}"
        assert cost.loc[label, "Peak VRAM (MiB)"] == f"{metrics['peak_vram_allocated_mib']:.0f}"
        assert cost.loc[label, "Size on disk (MiB)"] == f"{metrics['size_on_disk_mib']:.0f}"
    md = (caption_report.out_dir / "results.md").read_text()
    assert "fp16 (random)†" in md and "† random weights" in md
    assert md.split("## Cost")[0].count("random") == 0  # not in the quality section


def test_latex_tables_are_booktabs_with_escaped_underscores(caption_report):
    quality = (caption_report.out_dir / "results_quality.tex").read_text()
    cost = (caption_report.out_dir / "results_cost.tex").read_text()
    # each topic's part a booktabs float of its own, every run a row of it
    assert all(len(check_booktabs(part)) == 1 + 4 for part in table_floats(quality))  # header + pretrained
    assert all(len(check_booktabs(part)) == 1 + 5 for part in table_floats(cost))
    assert r"\label{tab:quality}" in quality and r"\label{tab:cost}" in cost
    assert "random" not in quality and r"fp16 (random)$^\dagger$" in cost
    assert r"$^\dagger$ random weights" in cost
    assert r"\shortstack{$\Delta$CIDEr\\ {}[95\% CI]}" in quality  # name, then the interval, on two lines


def test_render_helpers():
    assert latex_escape(r"peak_vram 50% a&b #1 $x {y} ~ ^ \ ") == (
        r"peak\_vram 50\% a\&b \#1 \$x \{y\} \textasciitilde{} \textasciicircum{} \textbackslash{} "
    )
    table = markdown_table(pd.DataFrame({"a": ["x|y"], "b": ["1"]}))
    assert table.splitlines() == ["| a | b |", "|---|---|", r"| x\|y | 1 |"]
