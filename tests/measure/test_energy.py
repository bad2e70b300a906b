import pytest

from vlm_quant.measure.energy import (
    SHORT_WINDOW_S,
    EnergyMeter,
    EnergyWindow,
    derive_energy_metrics,
    measure_idle_window,
)
from vlm_quant.measure.nvml import NullGpu, open_gpu


def test_window_energy_is_the_counter_delta_in_joules(fake_clock, fake_nvml):
    gpu = open_gpu(0, nvml=fake_nvml(energy_mj=[1_000_000, 1_250_000]), environ={})
    clock = fake_clock(start=10.0)
    meter = EnergyMeter(gpu, clock=clock)
    meter.begin_window("generate")
    clock.advance(2.5)
    window = meter.end_window("generate")
    assert window == EnergyWindow(
        "generate", duration_s=2.5, energy_j=250.0, mean_power_w=100.0, absent_reason=None
    )


def test_windows_may_nest_and_are_kept_apart_by_name(fake_clock, scripted_gpu):
    gpu = scripted_gpu(energy_mj=[0, 5_000, 12_000, 20_000])
    clock = fake_clock()
    meter = EnergyMeter(gpu, clock=clock)
    meter.begin_window("outer")
    clock.advance(1.0)
    meter.begin_window("inner")
    clock.advance(2.0)
    inner = meter.end_window("inner")
    clock.advance(1.0)
    outer = meter.end_window("outer")
    assert (inner.energy_j, inner.duration_s, inner.mean_power_w) == (7.0, 2.0, 3.5)
    assert (outer.energy_j, outer.duration_s, outer.mean_power_w) == (20.0, 4.0, 5.0)


def test_window_boundaries_synchronize_the_device(fake_clock, scripted_gpu):
    syncs = []
    meter = EnergyMeter(
        scripted_gpu(energy_mj=[0, 1]), clock=fake_clock(step=1.0), synchronize=lambda: syncs.append(1)
    )
    meter.begin_window("w")
    meter.end_window("w")
    assert len(syncs) == 2


def test_short_window_gives_absent_energy_with_a_reason_not_zero(fake_clock, scripted_gpu):
    # An 80 ms window: the counter (refreshed ~every 100 ms) did not move, a naive delta would say 0 J.
    clock = fake_clock()
    meter = EnergyMeter(scripted_gpu(energy_mj=[7_000, 7_000]), clock=clock)
    meter.begin_window("blip")
    clock.advance(0.08)
    window = meter.end_window("blip")
    assert window.energy_j is None and window.mean_power_w is None
    assert "100 ms" in window.absent_reason and "0.080 s" in window.absent_reason
    assert derive_energy_metrics(window, n_images=8, n_tokens=64) == {}


def test_window_at_the_threshold_has_energy(fake_clock, scripted_gpu):
    clock = fake_clock()
    meter = EnergyMeter(scripted_gpu(energy_mj=[0, 30_000]), clock=clock)
    meter.begin_window("w")
    clock.advance(SHORT_WINDOW_S)
    window = meter.end_window("w")
    assert window.energy_j == 30.0 and window.mean_power_w == pytest.approx(30.0 / SHORT_WINDOW_S)
    assert window.absent_reason is None


def test_counter_going_backwards_gives_no_energy(fake_clock, scripted_gpu):
    clock = fake_clock()
    meter = EnergyMeter(scripted_gpu(energy_mj=[9_000_000, 10]), clock=clock)
    meter.begin_window("w")
    clock.advance(5.0)
    window = meter.end_window("w")
    assert window.energy_j is None and window.mean_power_w is None
    assert "backwards" in window.absent_reason
    assert derive_energy_metrics(window, n_images=8, n_tokens=64) == {}


def test_without_a_gpu_energy_is_absent_not_zero(fake_clock):
    clock = fake_clock()
    meter = EnergyMeter(NullGpu("no CUDA device"), clock=clock)
    meter.begin_window("w")
    clock.advance(3.0)
    window = meter.end_window("w")
    assert window.duration_s == 3.0
    assert window.energy_j is None and window.mean_power_w is None
    assert derive_energy_metrics(window, n_images=8, n_tokens=256) == {}


def test_window_names_are_checked(scripted_gpu):
    meter = EnergyMeter(scripted_gpu(energy_mj=[0, 0]))
    with pytest.raises(ValueError, match="not begun"):
        meter.end_window("never")
    meter.begin_window("twice")
    with pytest.raises(ValueError, match="already open"):
        meter.begin_window("twice")


def test_idle_power_is_the_mean_over_the_wait(fake_clock, fake_nvml):
    clock = fake_clock()
    gpu = open_gpu(0, nvml=fake_nvml(energy_mj=[50_000, 50_000 + 4 * 62_500]), environ={})
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock.advance(seconds)

    assert measure_idle_window(gpu, seconds=4.0, clock=clock, sleep=sleep).mean_power_w == pytest.approx(62.5)
    assert slept == [4.0]


def test_idle_power_without_a_gpu_is_none_and_does_not_wait():
    slept = []
    assert measure_idle_window(NullGpu("no GPU"), seconds=30.0, sleep=slept.append) is None
    assert slept == []


def test_derived_metrics_units():
    window = EnergyWindow("generate", duration_s=10.0, energy_j=360.0, mean_power_w=36.0)
    metrics = derive_energy_metrics(window, n_images=10, n_tokens=100)
    assert metrics == pytest.approx(
        {
            "energy_kwh": 1e-4,  # 360 J / 3.6e6 J/kWh
            "energy_j_per_image": 36.0,
            "energy_j_per_token": 3.6,
            "images_per_kwh": 1e5,
        }
    )


def test_derived_metrics_leave_out_what_cannot_be_computed():
    zero = EnergyWindow("w", duration_s=2.0, energy_j=0.0, mean_power_w=0.0)
    assert derive_energy_metrics(zero, n_images=4, n_tokens=0) == {
        "energy_kwh": 0.0,
        "energy_j_per_image": 0.0,
    }
    with pytest.raises(ValueError):
        derive_energy_metrics(zero, n_images=0, n_tokens=0)
