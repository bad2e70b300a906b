import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from vlm_quant.errors import UserError
from vlm_quant.measure.carbon import (
    CodecarbonTracker,
    NullCodecarbonTracker,
    carbon_intensity_g_per_kwh,
    estimate_co2e,
    open_codecarbon_tracker,
)

codecarbon = pytest.importorskip("codecarbon")
ENERGY_MIX = json.loads(
    (Path(codecarbon.__file__).parent / "data" / "private_infra" / "global_energy_mix.json").read_text()
)


@pytest.mark.parametrize("country", ["FRA", "USA", "DEU", "IND"])
def test_intensity_is_codecarbons_own_number(country):
    intensity, source = carbon_intensity_g_per_kwh(country)
    assert intensity == pytest.approx(ENERGY_MIX[country]["carbon_intensity"])
    assert "global_energy_mix.json" in source and country in source


def test_co2e_is_device_energy_times_pue_times_intensity():
    estimate = estimate_co2e(2.0, country_iso_code="fra", pue=1.5)
    intensity = ENERGY_MIX["FRA"]["carbon_intensity"]  # g CO2e / kWh
    assert estimate.energy_kwh == 2.0
    assert estimate.pue == 1.5
    assert estimate.facility_energy_kwh == pytest.approx(3.0)
    assert estimate.carbon_intensity_g_per_kwh == pytest.approx(intensity)
    assert estimate.co2e_kg == pytest.approx(3.0 * intensity / 1000.0)
    assert estimate.as_metrics() == pytest.approx(
        {
            "co2e_kg": 3.0 * intensity / 1000.0,
            "facility_energy_kwh": 3.0,
            "carbon_intensity_g_per_kwh": intensity,
        }
    )


def test_tonnes_per_mwh_form_agrees():
    estimate = estimate_co2e(1000.0, country_iso_code="USA")  # 1 MWh at PUE 1
    tonnes_per_mwh = ENERGY_MIX["USA"]["carbon_intensity"] / 1000.0  # g/kWh == kg/MWh; / 1000 -> t/MWh
    assert estimate.co2e_kg / 1000.0 == pytest.approx(1.0 * tonnes_per_mwh)


def test_unknown_country_is_a_user_error_that_says_how_to_find_codes():
    with pytest.raises(UserError) as caught:
        estimate_co2e(1.0, country_iso_code="FR")
    message = str(caught.value)
    assert "'FR'" in message and "alpha-3" in message and "get_global_energy_mix_data" in message
    assert "FRA" in message  # a close match is suggested


@pytest.mark.parametrize(("energy_kwh", "pue"), [(-1.0, 1.0), (1.0, 0.9)])
def test_impossible_inputs_are_user_errors(energy_kwh, pue):
    with pytest.raises(UserError):
        estimate_co2e(energy_kwh, pue=pue)


class FakeOfflineTracker:
    def __init__(self, *, gpu_count=1, fail_on=None, data=True, **options):
        self.options = options
        self.fail_on = fail_on
        self.started = False
        self.final_emissions_data = None
        self._data = data
        self._gpu_count = gpu_count
        self._hardware = [type("CPU", (), {"_mode": "intel_rapl"})()]

    def start(self):
        if self.fail_on == "start":
            raise RuntimeError("no RAPL")
        self.started = True

    def stop(self):
        if self.fail_on == "stop":
            raise RuntimeError("scheduler died")
        if self._data:
            self.final_emissions_data = SimpleNamespace(
                duration=12.0,
                energy_consumed=0.003,
                cpu_energy=0.001,
                gpu_energy=0.0015 if self._gpu_count else 0.0,
                ram_energy=0.0005,
                emissions=0.0012,
                gpu_count=self._gpu_count,
            )
        return 0.0012


def _factory(made, **behaviour):
    def factory(**options):
        made.append(FakeOfflineTracker(**behaviour, **options))
        return made[-1]

    return factory


def test_tracker_is_offline_quiet_and_writes_nowhere_near_the_repo():
    made = []
    tracker = open_codecarbon_tracker(
        country_iso_code="deu", pue=1.2, gpu_ids=[0], tracker_factory=_factory(made)
    )
    assert isinstance(tracker, CodecarbonTracker) and tracker.available
    options = made[0].options
    assert options["country_iso_code"] == "DEU" and options["pue"] == 1.2 and options["gpu_ids"] == [0]
    assert options["save_to_file"] is False and options["log_level"] == "error"
    assert not Path(options["output_dir"]).resolve().is_relative_to(Path.cwd().resolve())


def test_tracker_result_maps_codecarbon_fields():
    made = []
    tracker = open_codecarbon_tracker(tracker_factory=_factory(made))
    tracker.start()
    result = tracker.stop()
    assert (result.energy_kwh, result.cpu_energy_kwh, result.gpu_energy_kwh, result.ram_energy_kwh) == (
        0.003,
        0.001,
        0.0015,
        0.0005,
    )
    assert (result.co2e_kg, result.duration_s, result.cpu_method, result.reason) == (
        0.0012,
        12.0,
        "intel_rapl",
        None,
    )
    assert result.as_metrics()["codecarbon_energy_kwh"] == 0.003


def test_no_gpu_found_by_codecarbon_means_gpu_energy_absent_not_zero():
    tracker = open_codecarbon_tracker(tracker_factory=_factory([], gpu_count=0))
    tracker.start()
    result = tracker.stop()
    assert result.gpu_energy_kwh is None
    assert "codecarbon_gpu_energy_kwh" not in result.as_metrics()


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ({"fail_on": "start"}, "start failed"),
        ({"fail_on": "stop"}, "stop failed"),
        ({"data": False}, "no emissions data"),
    ],
)
def test_codecarbon_failures_become_reasons_not_exceptions(behaviour, reason):
    tracker = open_codecarbon_tracker(tracker_factory=_factory([], **behaviour))
    tracker.start()
    result = tracker.stop()
    assert reason in result.reason
    assert result.as_metrics() == {}


def test_factory_failure_and_missing_codecarbon_give_null_trackers(monkeypatch):
    def broken(**options):
        raise OSError("read-only filesystem")

    null = open_codecarbon_tracker(tracker_factory=broken)
    assert isinstance(null, NullCodecarbonTracker) and "read-only" in null.reason
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    null = open_codecarbon_tracker()
    assert isinstance(null, NullCodecarbonTracker) and null.reason.startswith("codecarbon not installed")
    null.start()
    assert null.stop().as_metrics() == {}


def test_bad_country_or_pue_is_refused_before_any_tracking():
    with pytest.raises(UserError):
        open_codecarbon_tracker(country_iso_code="ZZZ", tracker_factory=_factory([]))
    with pytest.raises(UserError):
        open_codecarbon_tracker(pue=0.5, tracker_factory=_factory([]))


def test_real_offline_tracker_runs_quietly_and_leaves_no_files(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    tracker = open_codecarbon_tracker(country_iso_code="FRA", pue=1.5)
    assert isinstance(tracker, CodecarbonTracker), getattr(tracker, "reason", None)
    tracker.start()
    result = tracker.stop()
    assert result.reason is None
    assert result.energy_kwh is not None and result.energy_kwh >= 0
    intensity = ENERGY_MIX["FRA"]["carbon_intensity"]
    assert result.co2e_kg == pytest.approx(result.energy_kwh * intensity / 1000.0, rel=1e-6, abs=1e-15)
    assert list(tmp_path.iterdir()) == []
    assert "codecarbon INFO" not in capfd.readouterr().err
