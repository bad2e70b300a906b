"""compare end to end: the files written, the HTML page, the appendix, VQA runs, the compare run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from latex_checks import check_booktabs
from mlflow import MlflowClient

from vlm_quant.study.report.build import compare
from vlm_quant.study.report.logging import log_report_run
from vlm_quant.study.report.query import load_runs
from vlm_quant.tracking import run_schema as rs

WRITTEN = {
    "results.md",
    "results.csv",
    "results_quality.tex",
    "results_cost.tex",
    "results_hallucination.md",
    "results_hallucination.csv",
    "results_hallucination.tex",
    "results_safety.md",
    "results_safety.tex",
    "disagreements.md",
    "disagreements.csv",
    "appendix.md",
    "appendix.tex",
    "notes.md",
    "report.html",
    *(
        f"figures/{name}.{ext}"
        for ext in ("png", "pdf")
        for name in (
            "quality_vs_latency",
            "quality_vs_peak_vram",
            "quality_vs_size_on_disk",
            "quality_vs_energy",
            "cost_bars",
            "gpu_power",
            "hallucination_vs_quality",
            "qualitative",
        )
    ),
}


def test_compare_writes_every_file_it_reports(caption_report, caption_store):
    out = caption_report.out_dir
    assert {p.relative_to(out).as_posix() for p in caption_report.paths} == WRITTEN
    assert all(p.is_file() and p.stat().st_size > 0 for p in caption_report.paths)
    assert caption_report.baseline_run_id == caption_store.runs["fp16"].run_id
    assert caption_report.run_ids[0] == caption_report.baseline_run_id
    assert caption_report.run_ids[-1] == caption_store.runs["fp16 (random)"].run_id
    # every plot drawn, every image found: only the power line, which every report with a Δ states
    assert caption_report.notes == (caption_report.power,) and "int4: n = 24 images" in caption_report.power


def test_report_html_is_self_contained(caption_report):
    page = (caption_report.out_dir / "report.html").read_text()
    pngs = [p for p in caption_report.paths if p.suffix == ".png"]
    assert page.count("data:image/png;base64,") == len(pngs)
    assert not re.search(r"""(src|href)=['"](?!data:)""", page)  # nothing fetched from elsewhere
    for text in ("ΔCIDEr [95% CI]", "fp16 (random)†", "random weights", "Package versions", "n/a"):
        assert text in page


def test_appendix_reports_settings_and_flags_version_disagreement(caption_report, caption_store):
    md = (caption_report.out_dir / "appendix.md").read_text()
    assert "| ids_hash | ab12cd34 |" in md and "| seed | 0 |" in md and "| engine | eager |" in md
    assert "NVIDIA H100 80GB HBM3" in md and "550.54.15" in md
    assert "runs disagree on package torch: 2.6.0 (fp16, int8, nf4, fp16 (random)); 2.7.0 (int4)" in md
    tex = (caption_report.out_dir / "appendix.tex").read_text()
    tables = re.findall(r"\\begin\{table\}.*?\\end\{table\}", tex, flags=re.S)
    # four sections; the wide ones (precision per role, hardware) in parts of the page's width
    assert [len(re.findall(rf"\\label\{{tab:appendix-{i}[-}}]", tex)) >= 1 for i in range(1, 5)] == [True] * 4
    assert len(tables) > 4
    for table in tables:
        check_booktabs(table)
    for header in (r"language\\ {}(realized)", r"vision\\ {}(requested)", "run id", "Driver", "Platform"):
        assert header in tex, header
    assert r"max\_new\_tokens" in tex


def test_vqa_runs_report_accuracy_and_say_images_are_missing(vqa_store, tmp_path):
    result = compare(tmp_path, experiment=vqa_store.experiment, tracking_uri=vqa_store.uri, n_resamples=500)
    quality = result.tables.quality.set_index("Configuration")
    assert quality.loc["fp16", "VQA acc."] == f"{vqa_store.runs['fp16'].metrics['vqa_accuracy']:.3f}"
    delta = result.deltas[vqa_store.runs["int8"].run_id]
    assert delta.delta == pytest.approx(-0.2) and delta.low <= -0.2 <= delta.high
    # Two questions per image: the bootstrap draws the 5 images, and the SE is the image-level one.
    assert (delta.n_samples, delta.n_images) == (10, 5)
    per_image = np.array([-1, 0, -1, 0, 0], float)  # int8 wrong on q001 (image 139) and q005 (image 141)
    draws = np.random.default_rng(0).integers(0, 5, size=(500, 5))  # images drawn, 2 rows each
    means = per_image[draws].sum(axis=1) / 10
    assert (delta.low, delta.high) == tuple(pytest.approx(q) for q in np.percentile(means, [2.5, 97.5]))
    se = np.sqrt(5 / 4 * np.sum((per_image - (-0.2) * 2) ** 2)) / 10  # power.py's formula, by hand
    assert delta.standard_error == pytest.approx(se)
    power = f"int8: n = 5 images (10 rows), SE {se:.3f}, MDE {2.801585 * se:.3f}"
    assert power in result.power and power in (tmp_path / "notes.md").read_text()
    results_md = (tmp_path / "results.md").read_text()
    assert power in results_md and "percentile paired bootstrap over images" in results_md
    numbers = result.tables.numbers.set_index("label")  # results.csv
    assert numbers.loc["int8", "n_paired_images"] == 5
    assert numbers.loc["int8", "vqa_accuracy_delta_se"] == pytest.approx(se)
    assert numbers.loc["int8", "vqa_accuracy_delta_mde"] == pytest.approx(2.801585 * se, rel=1e-6)
    assert any("not found under data_dir" in note for note in result.notes)
    assert result.qualitative.examples["question"].str.startswith("What colour").all()
    assert (tmp_path / "figures" / "qualitative.png").is_file()


def test_log_report_run_records_a_compare_run_that_compare_never_reads(
    caption_report, caption_store, monkeypatch
):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    run_id = log_report_run(caption_report, tracking_uri=caption_store.uri)
    client = MlflowClient(tracking_uri=caption_store.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[rs.TAG_KIND] == "compare"
    assert run.data.tags[rs.TAG_BASELINE_RUN] == caption_report.baseline_run_id
    assert run.data.tags[rs.TAG_COMPARED_RUNS].split(",") == list(caption_report.run_ids)
    logged = {a.path for a in client.list_artifacts(run_id, "report")}
    assert {"report/results.md", "report/report.html", "report/figures"} <= logged
    figures = {a.path for a in client.list_artifacts(run_id, "report/figures")}
    expected = {f"report/{p.relative_to(caption_report.out_dir).as_posix()}" for p in caption_report.paths}
    assert figures == {path for path in expected if path.startswith("report/figures/")}
    reloaded = load_runs(experiment=caption_store.experiment, tracking_uri=caption_store.uri)
    assert run_id not in set(reloaded.runs["run_id"])

    # What the UI shows of it: a name saying what was compared, the summary as an MLflow table (one row
    # per configuration), a description linking every compared run, each compared run tagged with it.
    assert run.info.run_name.startswith("compare ")
    table = json.loads(Path(client.download_artifacts(run_id, "report/summary_table.json")).read_text())
    run_ids = table["data"] and [row[table["columns"].index("run_id")] for row in table["data"]]
    assert sorted(run_ids) == sorted(caption_report.run_ids)
    note = run.data.tags["mlflow.note.content"]
    for compared in caption_report.run_ids:
        assert f"/runs/{compared})" in note
        assert run_id in client.get_run(compared).data.tags["vlm_quant.compared_in"].split(",")


def test_random_weight_runs_alone_give_a_cost_only_report(caption_store, tmp_path):
    random_run = caption_store.runs["fp16 (random)"].run_id
    result = compare(tmp_path, run_ids=[random_run], tracking_uri=caption_store.uri)
    assert result.baseline_run_id is None and result.qualitative is None
    assert result.tables.quality.empty
    assert result.tables.cost["Configuration"].tolist() == ["fp16 (random)†"]
    assert any("cost tables and figures only" in note for note in result.notes)
    check_booktabs((tmp_path / "results_quality.tex").read_text())
    assert {p.name for p in result.plots if not p.skipped} == {"cost_bars", "gpu_power"}
