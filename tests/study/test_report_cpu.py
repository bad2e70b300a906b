"""A CPU study: labels from the realized precision, peak RSS and codecarbon where VRAM and NVML
are absent, a resumed run marked in every table and kept off the Pareto front."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from latex_checks import check_booktabs, table_floats

from vlm_quant.study.report.appendix import build_appendix
from vlm_quant.study.report.build import compare
from vlm_quant.study.report.query import load_runs

FP32, INT8, MIXED = "fp32", "int8 (language)", "nf4 (language) + int8 (vision)"


@pytest.fixture(scope="module")
def cpu_report(cpu_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("cpu_report")
    return compare(out, experiment=cpu_store.experiment, tracking_uri=cpu_store.uri, n_resamples=200)


def test_labels_and_baseline_come_from_the_realized_precision(cpu_report, cpu_store):
    # Every run asked quant=fp16; the audit found float32 (and int8 / nf4 where the plan said so).
    assert all(run.params["quant"] == "fp16" for run in cpu_store.runs.values())
    assert cpu_report.baseline_run_id == cpu_store.runs[FP32].run_id
    quality = cpu_report.tables.quality
    assert quality["Configuration"].tolist() == [FP32, INT8, MIXED + "‡"]
    shown = [*quality["Configuration"], *cpu_report.tables.cost["Configuration"]]
    assert not any("fp16" in label for label in shown)
    runs = load_runs(experiment=cpu_store.experiment, tracking_uri=cpu_store.uri).runs
    sections = dict(build_appendix(runs, {}).sections)
    precision = sections["Precision per configuration"].set_index("Configuration")
    assert precision.loc[MIXED, "realized_precision_language"] == "nf4"
    assert precision.loc[MIXED, "realized_precision_vision"] == "int8"
    assert precision.loc[FP32, "realized_precision_language"] == "fp32"
    assert precision["caveats"].to_dict() == {FP32: "none", INT8: "none", MIXED: "resumed"}
    assert "realized_precision_vision" in (cpu_report.out_dir / "appendix.md").read_text()


def test_cost_table_shows_rss_and_codecarbon_where_vram_and_nvml_are_absent(cpu_report, cpu_store):
    cost = cpu_report.tables.cost.set_index("Configuration")
    assert "Peak VRAM (MiB)" not in cost.columns
    assert cost["Peak RSS (MiB)"].tolist() == [
        f"{cpu_store.runs[label].metrics['peak_rss_mib']:.0f}" for label in (FP32, INT8, MIXED)
    ]
    assert set(cost["Energy (J/image, cost pass bs 8)"]) == {"n/a (no NVML)"}
    assert set(cost["CO2e (kg, quality pass)"]) == {"n/a (no NVML)"}
    for label in (FP32, INT8, MIXED):
        metrics = cpu_store.runs[label].metrics
        wh = (metrics["codecarbon_cpu_energy_kwh"] + metrics["codecarbon_ram_energy_kwh"]) * 1000
        key = label + ("‡" if label == MIXED else "")
        three_significant = f"{wh:.{max(0, 2 - math.floor(math.log10(wh)))}f}"  # 1003.3 -> 1003, never 1e+03
        header = "CPU+RAM energy (Wh, whole run, est.)"
        assert cost.loc[key, header] == f"{three_significant} (est., constant)"
    assert cost.loc[FP32, "Throughput (images/s)"] == "n/a (not logged)"
    assert not (cost == "0").any().any()
    md = (cpu_report.out_dir / "results.md").read_text()
    assert "no NVIDIA GPU (device cpu)" in md  # the logged reason, in the legend
    assert "an estimate" in md and "Not per image" in md
    # codecarbon 3.3.2's constant method: half the TDP whatever the load (not "TDP x load")
    assert "'constant': 0.5 x the CPU's TDP" in md and "TDP x load" not in md


def test_the_resumed_run_is_marked_in_every_table_with_a_legend(cpu_report):
    md = (cpu_report.out_dir / "results.md").read_text()
    quality_md, cost_md = md.split("## Cost")
    for section in (quality_md, cost_md):
        assert f"| {MIXED}‡ |" in section
        assert "‡ resumed after an interruption" in section
    for name in ("results_quality.tex", "results_cost.tex"):
        tex = (cpu_report.out_dir / name).read_text()
        for part in table_floats(tex):
            check_booktabs(part)
        assert r"int8 (vision)$^\ddagger$" in tex and r"$^\ddagger$ resumed after an interruption" in tex
    csv = pd.read_csv(cpu_report.out_dir / "results.csv", keep_default_na=False).set_index("label")
    assert csv.loc[MIXED, "caveats"] == "resumed" and csv.loc[FP32, "caveats"] == ""
    html = (cpu_report.out_dir / "report.html").read_text()
    assert "resumed after an interruption" in html


def test_the_resumed_run_is_kept_off_the_pareto_front_unless_asked(cpu_report, cpu_store, tmp_path):
    # MIXED is the fastest and the best: it would dominate every other run.
    latency = next(p for p in cpu_report.plots if p.name == "quality_vs_latency")
    points = latency.data["points"].set_index("label")
    assert latency.data["excluded"] == [MIXED]
    assert not points.loc[MIXED, "pareto"]
    assert points["pareto"].tolist() == [True, False, False]  # fp32 dominates int8 once MIXED is out
    included = compare(
        tmp_path, experiment=cpu_store.experiment, tracking_uri=cpu_store.uri, n_resamples=200,
        pareto_include_caveats=True,
    )
    points = next(p for p in included.plots if p.name == "quality_vs_latency").data["points"]
    assert points.set_index("label")["pareto"].to_dict() == {FP32: False, INT8: False, MIXED: True}


def test_cost_bars_plot_rss_on_cpu(cpu_report):
    bars = next(p for p in cpu_report.plots if p.name == "cost_bars")
    assert "peak_rss_mib" in bars.data["panels"] and "peak_vram_allocated_mib" not in bars.data["absent"]


def test_quality_is_plotted_against_peak_rss_on_cpu(cpu_report, cpu_store):
    rss = next(p for p in cpu_report.plots if p.name == "quality_vs_peak_rss")
    assert not rss.skipped and rss.data["cost_metric"] == "peak_rss_mib"
    points = rss.data["points"].set_index("label")
    assert points.loc[FP32, "cost"] == cpu_store.runs[FP32].metrics["peak_rss_mib"]


def test_cli_option_lets_caveated_runs_onto_the_front(cpu_store, tmp_path):
    import json

    from click.testing import CliRunner

    from vlm_quant.cli import main

    args = ["compare", "--experiment", cpu_store.experiment, "--tracking-uri", cpu_store.uri, "--no-log",
            "--bootstrap", "100", "--out-dir"]
    for flag, expected in (((), "false"), (("--pareto-include-caveats",), "true")):
        out = tmp_path / expected
        result = CliRunner().invoke(main, [*args, str(out), *flag])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output[result.output.index("{"):])["out_dir"] == str(out)
        markdown = (out / "results.md").read_text()
        assert "‡ resumed" in markdown
    # The front differs between the two reports only through the option.
    assert (tmp_path / "false" / "figures" / "quality_vs_latency.png").read_bytes() != (
        tmp_path / "true" / "figures" / "quality_vs_latency.png"
    ).read_bytes()
