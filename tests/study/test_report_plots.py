"""Figures: valid files, the expected series, the Pareto front, skipped plots with a reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vlm_quant.study.report.plots import cost_bars, pareto_front, power_traces, quality_vs_cost

PRETRAINED = ["fp16", "int8", "nf4", "int4"]


def test_pareto_front_on_a_constructed_case():
    costs = np.array([1.0, 2.0, 3.0, 4.0, 2.0, np.nan, 0.5])
    quality = np.array([0.5, 0.7, 0.6, 0.9, 0.7, 1.0, 0.1])
    # (3, .6) is beaten by (2, .7); the tie (2, .7) twice is on the front twice; NaN never is.
    assert pareto_front(costs, quality).tolist() == [True, True, False, True, True, False, True]
    assert pareto_front(np.array([1.0, 1.0]), np.array([0.5, 0.4])).tolist() == [True, False]


def test_every_figure_is_a_valid_png_and_pdf(caption_report):
    figures = [p for p in caption_report.paths if p.suffix in (".png", ".pdf")]
    names = {p.stem for p in figures}
    assert names == {
        "hallucination_vs_quality",
        "quality_vs_latency",
        "quality_vs_peak_vram",
        "quality_vs_size_on_disk",
        "quality_vs_energy",
        "cost_bars",
        "gpu_power",
        "qualitative",
    }
    for path in figures:
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.verify()
                assert image.format == "PNG" and image.size[0] > 100
        else:
            assert path.read_bytes()[:5] == b"%PDF-"


def _plot(report, name):
    return next(p for p in report.plots if p.name == name)


def test_quality_vs_latency_plots_the_logged_values_with_the_expected_front(caption_report, caption_store):
    points = _plot(caption_report, "quality_vs_latency").data["points"].set_index("label")
    assert points.index.tolist() == PRETRAINED  # random-weight run not in a quality plot
    for label in PRETRAINED:
        metrics = caption_store.runs[label].metrics
        assert points.loc[label, "cost"] == pytest.approx(metrics["latency_ms_p50"])
        assert points.loc[label, "quality"] == pytest.approx(metrics["cider"])
    # int8 is as good as fp16 but slower: dominated; nf4 and int4 trade quality for speed.
    assert points.index[points["pareto"]].tolist() == ["fp16", "nf4", "int4"]


def test_quality_vs_energy_leaves_out_the_run_without_energy(caption_report):
    data = _plot(caption_report, "quality_vs_energy").data
    assert data["missing"] == ["nf4"]
    assert data["points"]["label"].tolist() == ["fp16", "int8", "int4"]


def test_cost_bars_hold_every_run_and_missing_values_as_nan(caption_report, caption_store):
    outcome = _plot(caption_report, "cost_bars")
    panels = outcome.data["panels"]
    assert outcome.data["absent"] == []
    latency = panels["latency_ms_p50"]
    assert latency["label"].tolist() == [*PRETRAINED, "fp16 (random)"]
    assert latency["random"].tolist() == [False] * 4 + [True]
    expected = [caption_store.runs[lab].metrics["latency_ms_p50"] for lab in latency["label"]]
    assert latency["value"].tolist() == pytest.approx(expected)
    energy = panels["energy_j_per_image"].set_index("label")["value"]
    assert np.isnan(energy["nf4"]) and energy["fp16"] == pytest.approx(30.0)


def test_power_traces_share_one_time_axis_in_seconds(caption_report, caption_store):
    data = _plot(caption_report, "gpu_power").data
    assert data["missing"] == ["nf4"]  # no NVML on that run
    assert list(data["traces"]) == ["fp16", "int8", "int4", "fp16 (random)"]
    fp16 = data["traces"]["fp16"]
    assert fp16["t_s"].tolist() == [ms / 1000 for ms, _ in caption_store.runs["fp16"].power]
    assert fp16["power_w"].tolist() == pytest.approx([w for _, w in caption_store.runs["fp16"].power])


def test_plots_of_absent_metrics_are_skipped_with_a_reason(tmp_path):
    runs = pd.DataFrame(
        {"label": ["fp16", "int8"], "weights": ["pretrained"] * 2, "metrics.cider": [1.0, 0.9]}
    )
    outcome = quality_vs_cost(runs, "energy_j_per_image", "cider", tmp_path, "energy")
    assert outcome.paths == () and "energy_j_per_image" in outcome.skipped
    assert cost_bars(runs, tmp_path).skipped == "no cost metric was logged by any run"
    empty = pd.DataFrame({"t_s": [], "power_w": []})
    assert "gpu_power_w" in power_traces({"fp16": empty}, tmp_path).skipped
    assert not any(tmp_path.iterdir())


def test_figure_artists_draw_the_returned_data(caption_report, tmp_path):
    scatter = _plot(caption_report, "quality_vs_latency")
    points = scatter.data["points"]
    ax = scatter.figure.axes[0]
    np.testing.assert_allclose(ax.collections[0].get_offsets(), points[["cost", "quality"]].to_numpy())
    front = points[points["pareto"]].sort_values("cost")
    (front_line,) = ax.lines
    np.testing.assert_allclose(front_line.get_xdata(), front["cost"])
    np.testing.assert_allclose(front_line.get_ydata(), front["quality"])
    assert {t.get_text() for t in ax.texts} == set(points["label"])

    power = _plot(caption_report, "gpu_power")
    lines = power.figure.axes[0].lines
    assert [line.get_label() for line in lines] == list(power.data["traces"])
    assert [line.get_linestyle() for line in lines] == ["-", "-", "-", "--"]  # random weights dashed
    np.testing.assert_allclose(lines[0].get_xdata(), power.data["traces"]["fp16"]["t_s"])

    bars = _plot(caption_report, "cost_bars")
    ax = bars.figure.axes[0]  # first panel: TTFT
    widths = [patch.get_width() for patch in ax.patches]
    expected = bars.data["panels"]["ttft_ms_p50"]["value"].to_numpy()
    np.testing.assert_allclose(widths, expected)
    assert [patch.get_hatch() for patch in ax.patches][-1] == "//"  # the random-weight run


def test_moving_a_point_off_the_front(tmp_path):
    runs = pd.DataFrame(
        {
            "label": ["a", "b", "c"],
            "weights": ["pretrained"] * 3,
            "metrics.cider": [1.0, 0.8, 0.9],
            "metrics.size_on_disk_mib": [100.0, 50.0, 60.0],
        }
    )
    outcome = quality_vs_cost(runs, "size_on_disk_mib", "cider", tmp_path, "size")
    assert outcome.data["points"]["pareto"].tolist() == [True, True, True]
    runs.loc[2, "metrics.size_on_disk_mib"] = 120.0  # c: bigger and worse than a -> off the front
    outcome = quality_vs_cost(runs, "size_on_disk_mib", "cider", tmp_path, "size")
    assert outcome.data["points"]["pareto"].tolist() == [True, True, False]
