"""compare's sustainability section, from runs logged as evaluate logs them (metrics + the two artifacts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from report_store import _params, caption_rows, cost_metrics

from vlm_quant.measure.place import PlaceRow, place_record
from vlm_quant.study.report.build import build_report
from vlm_quant.study.report.query import load_runs
from vlm_quant.study.report.tables import BEST_BATCH_HEADER
from vlm_quant.tracking import run_schema as rs

URI: dict[str, str] = {}  # the store the module's runs live in
FP16_WINDOWS = [10.0, 11.0, 9.5, 10.5, 10.2, 9.8, 10.1, 10.4, 9.9, 10.6]  # J/image of each full window
INT8_WINDOWS = [6.0, 6.5, 5.8, 6.2, 6.1, 5.9, 6.4, 6.0, 6.3, 5.7]


def windows(j_per_image: list[float]) -> str:
    record = [{"kind": "prefill", "repeat": 0, "calls": 8, "duration_s": 2.1, "energy_j": 30.0}]
    record += [
        {"kind": "full", "repeat": i, "calls": 4, "duration_s": 2.5, "energy_j": 4 * j}
        for i, j in enumerate(j_per_image)
    ]
    record.append({"kind": "full", "repeat": 99, "calls": 4, "duration_s": 1.2, "energy_j": 1.0})  # < 2 s
    return json.dumps(record)


def place(scale: float) -> str:
    rows = [PlaceRow("SWE", 40.0, 40.0 * scale, "test"), PlaceRow("IND", 700.0, 700.0 * scale, "test")]
    return json.dumps(
        place_record(rows, basis="GPU energy per 1,000 images at batch 1 (NVML) x PUE", facility_kwh=scale)
    )


@pytest.fixture(scope="module")
def report(store_writer, tmp_path_factory):
    writer = store_writer
    exp = writer.experiment("sustainability")
    data_dir = writer.root / "sustainability-data"
    scores = np.linspace(0.2, 1.2, 24)
    for quant, per_window, best in (("fp16", FP16_WINDOWS, (8, 3.0)), ("int8", INT8_WINDOWS, (32, 2.0))):
        metrics = {
            **cost_metrics(1.0),
            "cider": float(scores.mean()),
            "energy_wh_per_1k_images_bs1": float(np.mean(per_window)) / 3.6,
            "energy_optimal_batch_size": float(best[0]),
            "energy_j_per_image_optimal": best[1],
            "flops_per_image": 2.5e11,
            "flop_per_j": 2.5e11 / best[1],
            "co2e_place_highest_to_lowest_ratio": 17.5,
        }
        rows = caption_rows(scores, [f"a dog {i}" for i in range(24)])
        run_id = writer.run(
            exp, quant, params=_params(quant, "pretrained", data_dir), metrics=metrics, rows=rows, env=None
        )
        staging = writer.root / "staging" / run_id
        writer._artifact(run_id, staging, rs.ARTIFACT_PHASE_WINDOWS, windows(per_window))
        writer._artifact(run_id, staging, rs.ARTIFACT_CO2E_BY_PLACE, place(np.mean(per_window)))
    URI["uri"] = writer.uri
    run_set = load_runs(experiment="sustainability", tracking_uri=writer.uri)
    return build_report(run_set, tmp_path_factory.mktemp("sustainability-report"), n_resamples=200)


def test_saving_against_the_baseline_has_its_interval_from_the_window_repeats(report):
    section = report.sustainability
    (int8_id,) = [rid for rid in report.run_ids if rid != report.baseline_run_id]
    point, low, high = section.savings[int8_id]
    assert point == pytest.approx(
        1 - np.mean(INT8_WINDOWS) / np.mean(FP16_WINDOWS)
    )  # the 1.2 s window left out
    assert low < point < high < 1
    table = section.table.set_index("Configuration")
    assert table.loc["fp16", "Energy saving vs baseline [95% CI]"] == "baseline"
    assert table.loc["int8", "GPU Wh/1k images (batch 1)"] == f"{np.mean(INT8_WINDOWS) / 3.6:.3g}"
    assert table.loc["int8", "GFLOP/J"] == "125"
    assert table.loc["int8", "MFU"] == "n/a"  # not logged: never 0
    text = (report.out_dir / "sustainability.md").read_text()
    assert "Sustainability" in text and "baseline" in text


def test_place_figure_draws_each_runs_artifact_and_cost_table_shows_the_best_batch(report):
    plot = report.sustainability.plot
    assert plot.skipped is None and plot.data["fp16"]["IND"] == pytest.approx(700.0 * np.mean(FP16_WINDOWS))
    assert np.isnan(plot.data["int8"]["FRA"])  # a country the artifact lacks is a gap, not 0
    cells = dict(zip(report.tables.cost["Configuration"], report.tables.cost[BEST_BATCH_HEADER], strict=True))
    assert cells == {"fp16": "3.00 (batch 8)", "int8": "2.00 (batch 32)"}
    assert any(path.name == "co2e_by_place.png" for path in report.paths)
    assert "Sustainability" in (report.out_dir / "report.html").read_text()


def test_paper_and_slides_have_a_sustainability_section_whose_numbers_are_in_numbers_json(report):
    from vlm_quant.study.paper.build import build_draft
    from vlm_quant.study.paper.study import study_from

    runs = load_runs(experiment="sustainability", tracking_uri=URI["uri"]).runs
    study = study_from(report, runs, None, "experiment 'sustainability'")
    paper = build_draft(study, "paper", compile=False)
    tex = (paper.folder / "paper.tex").read_text()
    assert r"\section{Sustainability}" in tex and r"\label{tab:sustainability}" in tex
    assert "figures/co2e_by_place.pdf" in tex
    numbers = json.loads((paper.folder / "numbers.json").read_text())
    sources = {n["source"] for n in numbers}
    (int8_id,) = [rid for rid in report.run_ids if rid != report.baseline_run_id]
    assert f"compare:energy_saving:{int8_id}" in sources
    assert f"metric:{int8_id}:energy_wh_per_1k_images_bs1" in sources
    assert any(s.endswith(":co2e_place_highest_to_lowest_ratio") for s in sources)
    slides = build_draft(study, "slides", compile=False)
    deck = (slides.folder / "slides.tex").read_text()
    assert (
        "\\begin{frame}{Sustainability}" in deck
        and "compare:energy_saving" in (slides.folder / "numbers.json").read_text()
    )
