"""A run that fails or is killed keeps its power trace, idle power and reason tags; a resumed run's power
history continues the step axis of the attempt before it."""

from __future__ import annotations

import pytest
import torch

from vlm_quant.measure.carbon import NullCodecarbonTracker
from vlm_quant.measure.energy import EnergyWindow
from vlm_quant.measure.nvml import NullGpu
from vlm_quant.measure.power_sampler import PowerSample
from vlm_quant.run import instruments as instruments_module
from vlm_quant.run.instruments import RunInstruments
from vlm_quant.run.interrupts import RunInterrupted
from vlm_quant.tracking.run_schema import ARTIFACT_POWER_CSV, METRIC_POWER_HISTORY, TAG_IDLE_POWER_ABSENT
from vlm_quant.tracking.tracker import InMemoryTracker

POWER = "gpu_power_w"


class FakeGpu(NullGpu):
    """A GPU whose readings are fixed numbers (no NVML)."""

    available = True
    name = "Fake H100"
    driver_version = "999.1"

    def __init__(self) -> None:
        super().__init__("")

    def power_w(self) -> float:
        return 123.0

    def other_processes(self) -> list[int]:
        return []


class FakeSampler:
    """A power sampler that returns fixed samples (t_ms 0, 100, 200 at 10 Hz) when stopped."""

    period_s = 0.1

    def __init__(self, watts=(100.0, 200.0, 300.0)):
        self.samples = [PowerSample(100.0 * i, w, 40.0, 1500.0, 512.0) for i, w in enumerate(watts)]

    def start(self):
        return self

    def stop(self):
        return list(self.samples)


def fake_instruments(monkeypatch, gpu=None, sampler=None) -> RunInstruments:
    idle = EnergyWindow("idle", 5.0, 307.5, 61.5)
    monkeypatch.setattr(instruments_module, "measure_idle_window", lambda gpu, seconds: idle)
    instruments = RunInstruments(
        torch.device("cpu"), power_hz=10, idle_seconds=0, country_iso_code="USA", pue=1.0
    )
    instruments.gpu = gpu or FakeGpu()
    instruments.sampler = sampler or FakeSampler()
    instruments.codecarbon = NullCodecarbonTracker("codecarbon off in this test")
    return instruments


@pytest.mark.parametrize("error", [RuntimeError("cost pass crashed"), RunInterrupted("SIGTERM")])
def test_a_failed_or_killed_run_logs_power_trace_idle_power_and_reasons(monkeypatch, error):
    tracker = InMemoryTracker()
    instruments = fake_instruments(monkeypatch)
    with pytest.raises(type(error)):
        with instruments.logged_on_failure(tracker), instruments:
            raise error
    assert tracker.histories[POWER] == [(0, 100.0), (100, 200.0), (200, 300.0)]
    assert ARTIFACT_POWER_CSV in tracker.artifacts
    assert tracker.params["idle_power_w"] == "61.5" and tracker.params["gpu_name"] == "Fake H100"
    assert tracker.metrics["peak_nvml_memory_used_mib"] == 512.0
    assert tracker.tags["vlm_quant.codecarbon_absent_reason"] == "codecarbon off in this test"


def test_without_a_gpu_a_failed_run_logs_why_energy_is_absent(monkeypatch):
    tracker = InMemoryTracker()
    instruments = fake_instruments(monkeypatch, gpu=NullGpu("no CUDA device"), sampler=FakeSampler(()))
    with pytest.raises(RuntimeError):
        with instruments.logged_on_failure(tracker), instruments:
            raise RuntimeError("boom")
    assert tracker.tags["vlm_quant.energy_absent_reason"] == "no CUDA device"
    assert POWER not in tracker.histories and "idle_power_w" not in tracker.params


def test_a_failure_while_logging_never_hides_the_runs_error(monkeypatch):
    class Broken(InMemoryTracker):
        def log_metric_history(self, *args, **kwargs):
            raise OSError("store down")

    instruments = fake_instruments(monkeypatch)
    with pytest.raises(RuntimeError, match="the real error"):
        with instruments.logged_on_failure(Broken()), instruments:
            raise RuntimeError("the real error")


def test_a_resumed_attempt_continues_the_power_step_axis(monkeypatch):
    tracker = InMemoryTracker()
    first = fake_instruments(monkeypatch)
    with first:
        pass
    first.log_to(tracker)
    second = fake_instruments(monkeypatch, sampler=FakeSampler((400.0, 500.0)))
    with second:
        pass
    second.log_to(tracker)
    steps = [step for step, _ in tracker.histories[POWER]]
    # 0, 100, 200 then one 100 ms period later: 300, 400 (not 0, 100 again)
    assert steps == [0, 100, 200, 300, 400]
    assert steps == sorted(set(steps))


def test_mlflow_tracker_reads_the_last_step_of_a_resumed_run(tracking_uri, monkeypatch):
    from vlm_quant.tracking.tracker import open_run

    with pytest.raises(RuntimeError):
        with open_run("steps", "power") as tracker:
            run_id = tracker.run_id
            assert tracker.last_metric_step(METRIC_POWER_HISTORY) is None
            attempt = fake_instruments(monkeypatch)
            with attempt.logged_on_failure(tracker), attempt:
                raise RuntimeError("first attempt fails")
    with open_run("steps", "power", resume_run_id=run_id) as tracker:
        assert tracker.last_metric_step(METRIC_POWER_HISTORY) == 200
        attempt = fake_instruments(monkeypatch, sampler=FakeSampler((1.0,)))
        with attempt:
            pass
        attempt.log_to(tracker)
    import mlflow

    history = mlflow.MlflowClient(tracking_uri).get_metric_history(run_id, METRIC_POWER_HISTORY)
    assert sorted((m.step, m.value) for m in history) == [(0, 100.0), (100, 200.0), (200, 300.0), (300, 1.0)]


def test_an_idle_window_without_a_reading_is_absent_with_its_reason_not_the_string_none(monkeypatch):
    tracker = InMemoryTracker()
    instruments = fake_instruments(monkeypatch)
    short = EnergyWindow("idle", 0.2, None, None, "window lasted 0.200 s (< 1 s)")
    monkeypatch.setattr(instruments_module, "measure_idle_window", lambda gpu, seconds: short)
    with pytest.raises(RuntimeError):
        with instruments.logged_on_failure(tracker), instruments:
            raise RuntimeError("boom")
    assert "idle_power_w" not in tracker.params
    assert tracker.tags[TAG_IDLE_POWER_ABSENT] == "window lasted 0.200 s (< 1 s)"
