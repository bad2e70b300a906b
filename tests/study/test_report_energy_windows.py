"""Energy cells say which window they measure and why one is absent; idle power and J/image net of it.

Three GPU runs at batch size 4, as `evaluate` logs them: fp16 measured everything (idle 60 W); int8's
throughput window at batch 4 lasted under a second and its quality pass's window was lost to a driver
reload (both reasons logged as tags, no energy metric); nf4 drew less per image than idle power x time
per image, so its net J/image is negative and must be shown as such, never clamped to 0.
"""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner
from report_store import Store, _params, caption_rows, cost_metrics, environment

from vlm_quant.cli.commands import main
from vlm_quant.study.report import cost_cells
from vlm_quant.study.report.build import compare
from vlm_quant.tracking.run_schema import TAG_IDLE_POWER_ABSENT

SHORT = (
    "window lasted 0.412 s (< 1 s): the NVML energy counter updates about every 100 ms, too coarse "
    "for it; measure over more seconds (cost_seconds)"
)
RELOAD = "NVML energy counter went backwards (driver reload?)"
IDLE_W = 60.0
THROUGHPUT = 10.0  # images/s at batch 4, every run
# label -> (energy_j_per_image at bs 4 or None, co2e_kg or None, tags)
RUNS = {
    "fp16": (30.0, 4.2e-6, {}),
    "int8": (
        None,
        None,
        {"vlm_quant.energy_absent_throughput_bs4": SHORT, "vlm_quant.energy_absent_quality_pass": RELOAD},
    ),
    "nf4": (3.0, 1.0e-6, {}),
}
ENERGY = "Energy (J/image, cost pass bs 4)"
NET = "Net of idle (J/image, cost pass bs 4)"
CO2E = "CO2e (kg, quality pass)"
IDLE = "Idle power (W, before load)"


@pytest.fixture(scope="module")
def energy_store(store_writer) -> Store:
    exp = store_writer.experiment("energy-windows")
    scores = [0.5, 0.7, 0.9, 1.1]
    runs = {}
    for quant, (energy, co2e, tags) in RUNS.items():
        params = _params(quant, "pretrained", store_writer.root / "data", n_samples="4", batch_size="4")
        params.update(cost_batch_sizes="1,4", idle_power_w=str(IDLE_W))
        metrics = {**cost_metrics(1.0, energy=False), "throughput_images_per_s": THROUGHPUT, "cider": 0.8}
        if energy is not None:
            metrics.update(energy_j_per_image=energy, energy_j_per_token=energy / 8, co2e_kg=co2e)
        rows = caption_rows(scores, [f"a dog {quant}"] * 4)
        runs[quant] = store_writer.run(
            exp, quant, params=params, metrics=metrics, rows=rows, env=environment(), tags=tags
        )
    return Store(store_writer.uri, store_writer.root, "energy-windows", runs, "", store_writer.root / "data")


@pytest.fixture(scope="module")
def energy_report(energy_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("energy_report")
    return compare(out, experiment=energy_store.experiment, tracking_uri=energy_store.uri, n_resamples=50)


def test_every_energy_header_names_its_window(energy_report):
    headers = energy_report.tables.cost.columns.tolist()
    assert {ENERGY, NET, CO2E, IDLE} <= set(headers)
    assert not [h for h in headers if h in ("Energy (J/image)", "CO2e (kg)")]  # no header without a window
    tex = (energy_report.out_dir / "results_cost.tex").read_text()
    for header in (ENERGY, NET, CO2E, IDLE):
        assert header in tex, header


def test_an_absent_energy_cell_shows_the_windows_logged_reason(energy_report):
    cost = energy_report.tables.cost.set_index("Configuration")
    assert cost.loc["int8", ENERGY] == "n/a (window lasted 0.412 s (< 1 s))"
    assert cost.loc["int8", CO2E] == f"n/a ({RELOAD})"
    assert cost.loc["int8", NET] == "n/a (window lasted 0.412 s (< 1 s))"  # gross absent: same reason
    md = (energy_report.out_dir / "results.md").read_text()
    assert f"int8, cost pass bs 4: {SHORT}." in md and f"int8, quality pass: {RELOAD}." in md


def test_idle_power_is_shown_and_net_energy_keeps_its_sign(energy_report):
    cost = energy_report.tables.cost.set_index("Configuration")
    assert cost.loc["fp16", IDLE] == "60.0"
    # net = gross J/image - idle W / (images/s): 30 - 60/10 and 3 - 60/10
    assert cost.loc["fp16", NET] == "24.00"
    assert cost.loc["nf4", NET] == "-3.00 (below idle)"
    numbers = energy_report.tables.numbers.set_index("label")
    assert numbers.loc["nf4", "energy_j_per_image_net"] == pytest.approx(-3.0)
    md = (energy_report.out_dir / "results.md").read_text()
    assert "Not clamped" in md


def test_the_slides_name_the_energy_window(energy_store, tmp_path):
    result = CliRunner().invoke(
        main,
        ["slides", "--experiment", energy_store.experiment, "--out-dir", str(tmp_path), "--bootstrap", "50",
         "--tracking-uri", energy_store.uri, "--no-log", "--no-compile"],
    )
    assert result.exit_code == 0, result.output
    slides = (tmp_path / "slides" / "slides.tex").read_text()
    assert r"energy per image\\(J, cost pass bs 4)" in slides


def test_an_absent_idle_power_shows_the_idle_windows_logged_reason():
    """A GPU run whose idle window gave no reading logs why (tag), and the idle cell says it."""
    runs = pd.DataFrame({
        "params.batch_size": ["4"],
        f"tags.{TAG_IDLE_POWER_ABSENT}": ["window lasted 0.200 s (< 1 s): the NVML energy counter ..."],
    })
    numbers = pd.DataFrame(cost_cells.window_columns(runs))
    assert cost_cells.idle_cells(numbers) == ["n/a (window lasted 0.200 s (< 1 s))"]
