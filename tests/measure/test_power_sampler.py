import csv
import time

import pytest
from PIL import Image

from vlm_quant.measure.nvml import NullGpu
from vlm_quant.measure.power_sampler import (
    CSV_COLUMNS,
    PowerSample,
    PowerSampler,
    peak_memory_used_mib,
    plot_power,
    write_power_csv,
)

FAST_HZ = 500.0  # keeps the tests short; the default is 10 Hz


def _wait_for(predicate, timeout_s=10.0):
    """Poll until predicate() holds; the timeout only guards against a hang, it asserts no speed."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "sampler thread made no progress"
        time.sleep(0.002)


def test_sampler_starts_stops_and_stamps_ms_since_start(fake_clock, scripted_gpu):
    gpu = scripted_gpu()
    clock = fake_clock(start=500.0, step=0.05)  # each read moves 50 ms: stamps are exact
    sampler = PowerSampler(gpu, hz=FAST_HZ, clock=clock)
    with sampler:
        _wait_for(lambda: len(sampler.samples) >= 5)
    samples = sampler.samples
    assert not sampler._thread.is_alive()
    assert len(samples) == gpu.reads  # every reading became a sample, none lost
    assert [s.t_ms for s in samples] == pytest.approx([50.0 * (i + 1) for i in range(len(samples))])
    first = samples[0]
    assert (first.power_w, first.temperature_c, first.sm_clock_mhz, first.memory_used_mib) == (
        101.0,
        50.0,
        None,
        1001.0,
    )
    assert sampler.reason is None and sampler.error is None


def test_an_exception_in_the_body_still_stops_the_thread_and_keeps_every_sample(fake_clock, scripted_gpu):
    gpu = scripted_gpu()
    sampler = PowerSampler(gpu, hz=FAST_HZ, clock=fake_clock(step=0.001))
    with pytest.raises(RuntimeError, match="model crashed"):
        with sampler:
            _wait_for(lambda: len(sampler.samples) >= 3)
            raise RuntimeError("model crashed")
    assert not sampler._thread.is_alive()
    assert len(sampler.samples) == gpu.reads >= 4  # at least 3 plus the closing sample
    assert sampler.stop() == sampler.samples  # stopping twice is harmless


def test_a_failing_gpu_read_ends_sampling_but_keeps_what_was_sampled(fake_clock, scripted_gpu):
    gpu = scripted_gpu(fail_after=3)
    sampler = PowerSampler(gpu, hz=FAST_HZ, clock=fake_clock(step=0.001)).start()
    _wait_for(lambda: sampler.error is not None)
    samples = sampler.stop()
    assert len(samples) == 3
    assert "fell off the bus" in sampler.reason


def test_null_gpu_records_nothing_and_says_why():
    sampler = PowerSampler(NullGpu("no CUDA device: the run is on CPU"))
    with sampler:
        pass
    assert sampler.samples == []
    assert sampler.reason == "no GPU to sample: no CUDA device: the run is on CPU"


def test_invalid_rate_is_refused(scripted_gpu):
    with pytest.raises(ValueError):
        PowerSampler(scripted_gpu(), hz=0)


SAMPLES = [
    PowerSample(t_ms=0.0, power_w=80.5, temperature_c=40.0, sm_clock_mhz=1410.0, memory_used_mib=1024.0),
    PowerSample(t_ms=100.0, power_w=310.25, temperature_c=47.0, sm_clock_mhz=1980.0, memory_used_mib=20480.5),
    PowerSample(t_ms=200.0, power_w=None, temperature_c=None, sm_clock_mhz=None, memory_used_mib=None),
]


def test_peak_memory_ignores_missing_readings():
    assert peak_memory_used_mib(SAMPLES) == 20480.5
    assert peak_memory_used_mib(SAMPLES[2:]) is None
    assert peak_memory_used_mib([]) is None


def test_csv_has_unit_columns_and_empty_cells_for_missing_readings(tmp_path):
    path = write_power_csv(SAMPLES, tmp_path / "power" / "gpu_power.csv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert (
        tuple(rows[0])
        == CSV_COLUMNS
        == ("t_ms", "power_w", "temperature_c", "sm_clock_mhz", "memory_used_mib")
    )
    assert float(rows[1]["power_w"]) == 310.25
    assert float(rows[1]["t_ms"]) == 100.0
    assert rows[2]["power_w"] == "" and rows[2]["memory_used_mib"] == ""
    assert len(rows) == 3


@pytest.mark.parametrize("samples", [SAMPLES, []], ids=["samples", "empty"])
def test_plot_is_a_png(tmp_path, samples):
    path = plot_power(samples, tmp_path / "gpu_power.png", "int8 - GPU power")
    assert path == tmp_path / "gpu_power.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (960, 600)  # 8 x 5 in at 120 dpi
