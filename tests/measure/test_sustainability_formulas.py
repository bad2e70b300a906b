"""Sustainability formulas with fake NVML counters and fake clocks, with numbers a wrong formula misses.

A window's energy comes from a scripted counter (mJ) at both ends of a fake clock, exactly as
``EnergyMeter`` reads a board; FLOPs from tiny modules whose matrix products can be counted by hand.
"""

from __future__ import annotations

import pytest
import torch

from vlm_quant.measure.batch_optimum import energy_optimal_batch, optimum_metrics
from vlm_quant.measure.energy import EnergyMeter
from vlm_quant.measure.flops import board_peak, count_generation_flops, efficiency_metrics
from vlm_quant.measure.phases import PhaseWindow, phase_energy
from vlm_quant.measure.place import PLACES, co2e_by_place, highest_to_lowest_ratio
from vlm_quant.measure.scale import saving, scale_metrics
from vlm_quant.measure.water import grid_water_intensity, water_litres


@pytest.fixture
def clock(fake_clock):
    return fake_clock(start=100.0)


class PowerGpu:
    """An NVML energy counter (mJ) integrating a settable power (W) over a fake clock (s)."""

    available = True

    def __init__(self, clock) -> None:
        self.clock, self.watts, self.mj, self.last = clock, 100.0, 5_000_000.0, clock.now

    def energy_mj(self) -> float:
        self.mj += self.watts * (self.clock.now - self.last) * 1000.0
        self.last = self.clock.now
        return self.mj


def window(clock, gpu, seconds: float, watts: float, calls: int) -> PhaseWindow:
    """One measured window of ``seconds`` at ``watts`` in which ``calls`` images were made."""
    meter = EnergyMeter(gpu, clock=clock)
    gpu.energy_mj()  # bring the counter up to now at the old power
    gpu.watts = watts
    meter.begin_window("w")
    clock.advance(seconds)
    return PhaseWindow(meter.end_window("w"), calls)


def test_decode_energy_is_the_labelled_difference_of_prefill_and_full_windows(clock):
    gpu = PowerGpu(clock)
    # 4 prefill calls in 2.4 s at 200 W: 120 J/image; 2 full calls (10 tokens) in 3 s at 300 W: 450 J/image.
    prefill = [window(clock, gpu, 2.4, 200.0, 4) for _ in range(3)]
    full = [window(clock, gpu, 3.0, 300.0, 2) for _ in range(3)]
    result = phase_energy(prefill, full, new_tokens=10)
    m = result.metrics
    assert m["prefill_energy_j_per_image"] == pytest.approx(120.0)
    assert m["bs1_energy_j_per_image"] == pytest.approx(450.0)
    assert m["decode_energy_j_per_token"] == pytest.approx((450.0 - 120.0) / 9)  # N - 1 decode steps
    assert m["decode_energy_share"] == pytest.approx(330.0 / 450.0)
    assert m["phase_prefill_windows_n"] == 3 and m["phase_full_calls_n"] == 6
    assert not result.absent


def test_a_phase_window_shorter_than_2_s_gives_no_metric(clock):
    gpu = PowerGpu(clock)
    # 1.5 s: the energy meter gives a reading (>= 1 s), but a phase needs >= 2 s.
    prefill = [window(clock, gpu, 1.5, 200.0, 3)]
    full = [window(clock, gpu, 3.0, 300.0, 2)]
    assert prefill[0].window.energy_j is not None
    result = phase_energy(prefill, full, new_tokens=10)
    assert "prefill_energy_j_per_image" not in result.metrics
    assert "decode_energy_j_per_token" not in result.metrics
    assert "1.50 s (< 2 s)" in result.absent["decode_energy_j_per_token"]
    assert result.metrics["phase_prefill_windows_dropped_n"] == 1


def test_a_decode_difference_lost_in_noise_is_absent_not_clamped(clock):
    gpu = PowerGpu(clock)
    prefill = [window(clock, gpu, 2.0, 300.0, 2)]  # 300 J/image
    full = [window(clock, gpu, 2.0, 280.0, 2)]  # 280 J/image: less than prefill alone
    result = phase_energy(prefill, full, new_tokens=4)
    assert "decode_energy_j_per_token" not in result.metrics
    assert "decode_energy_share" not in result.metrics
    assert "noise" in result.absent["decode_energy_j_per_token"]


def test_water_applies_pue_to_the_grid_share_only():
    # Li et al. 2023: e x WUE + e x PUE x EWIF.
    at_1 = water_litres(2.0, pue=1.0, wue_l_per_kwh=0.55, ewif_l_per_kwh=3.142)
    at_15 = water_litres(2.0, pue=1.5, wue_l_per_kwh=0.55, ewif_l_per_kwh=3.142)
    assert at_1 == pytest.approx(2.0 * (0.55 + 3.142))
    assert at_15 == pytest.approx(2.0 * 0.55 + 2.0 * 1.5 * 3.142)
    assert at_15 - at_1 == pytest.approx(2.0 * 0.5 * 3.142)


def test_grid_water_intensity_is_sourced_or_absent():
    value, source = grid_water_intensity("usa")
    assert value == 3.142 and "Li et al. 2023" in source
    value, reason = grid_water_intensity("FRA")
    assert value is None and "no sourced grid water intensity for FRA" in reason
    assert grid_water_intensity("FRA", 1.2) == (1.2, "user parameter water_intensity_l_per_kwh")


def test_energy_optimal_batch_is_the_minimum_of_the_measured_curve():
    metrics = {
        "energy_j_per_image_bs1": 10.0,
        "energy_j_per_image_bs8": 3.0,
        "energy_j_per_image_bs32": 4.0,
        "energy_j_per_image_bs64": None,  # out of memory: not a candidate
        "energy_j_per_image": 3.0,  # the headline copy is not a batch size
    }
    assert optimum_metrics(metrics) == {"energy_optimal_batch_size": 8.0, "energy_j_per_image_optimal": 3.0}
    assert energy_optimal_batch({4: 2.0, 2: 2.0}) == (2, 2.0)  # a tie: the smaller batch
    assert optimum_metrics({"throughput_images_per_s_bs1": 5.0}) == {}


def test_scale_projection_in_kwh_tonnes_and_cubic_metres():
    # 36 J/image: 1e6 images = 3.6e7 J = 10 kWh of device energy, 15 kWh of facility energy at PUE 1.5.
    m = scale_metrics(36.0, pue=1.5, carbon_intensity_g_per_kwh=400.0, water_l_per_image=0.002)
    assert m["scale_energy_kwh_per_1m_images"] == pytest.approx(15.0)
    assert m["scale_energy_kwh_per_1b_images"] == pytest.approx(15_000.0)
    assert m["scale_co2e_t_per_1m_images"] == pytest.approx(15.0 * 400.0 / 1e6)
    assert m["scale_water_m3_per_1b_images"] == pytest.approx(2_000.0)
    no_water = scale_metrics(36.0, pue=1.0, carbon_intensity_g_per_kwh=None, water_l_per_image=None)
    assert set(no_water) == {"scale_energy_kwh_per_1m_images", "scale_energy_kwh_per_1b_images"}


def test_saving_interval_from_window_repeats_holds_the_point_and_stays_below_1():
    baseline = [10.0, 11.0, 9.5, 10.5, 10.2, 9.8, 10.1, 10.4, 9.9, 10.6]
    candidate = [6.0, 6.5, 5.8, 6.2, 6.1, 5.9, 6.4, 6.0, 6.3, 5.7]
    point, low, high = saving(baseline, candidate)
    assert point == pytest.approx(1 - 6.09 / 10.2)
    assert low < point < high < 1.0
    assert saving(baseline[:3], candidate[:3])[1:] == (None, None)  # too few windows: no interval


def test_co2e_by_place_uses_codecarbon_intensities_and_states_the_ratio():
    rows = co2e_by_place(2.0)
    assert [r.country_iso_code for r in rows] != list(PLACES)  # sorted, lowest first
    assert {r.country_iso_code for r in rows} == set(PLACES)
    assert all(r.co2e_g == pytest.approx(2.0 * r.carbon_intensity_g_per_kwh) for r in rows)
    ratio = highest_to_lowest_ratio(rows)
    assert ratio == pytest.approx(rows[-1].carbon_intensity_g_per_kwh / rows[0].carbon_intensity_g_per_kwh)
    assert ratio > 5  # the lecture's "5-10x and more by where it runs"


class TinyVlm(torch.nn.Module):
    """A 'vision' Linear(6->4) on the image, a 'language' Linear(4->5) per position."""

    def __init__(self) -> None:
        super().__init__()
        self.vision = torch.nn.Linear(6, 4, bias=False)
        self.language = torch.nn.Linear(4, 5, bias=False)

    def generate(self, pixels, prompt_len: int, new_tokens: int, processors) -> None:
        image = self.vision(pixels)  # (1, 6) @ (6, 4): 2*1*6*4 = 48 FLOPs
        hidden = torch.cat([image, torch.zeros(prompt_len, 4)])  # prefill: (1+prompt_len) positions
        for step in range(new_tokens):
            logits = self.language(hidden if step == 0 else hidden[-1:])  # (n, 4) @ (4, 5): 40 n FLOPs
            for processor in processors:
                processor(None, logits)
            hidden = torch.cat([hidden, torch.zeros(1, 4)])


def test_flops_split_vision_prefill_and_decode_within_one_call():
    model = TinyVlm()
    flops = count_generation_flops(
        lambda processors: model.generate(torch.ones(1, 6), 3, 5, processors), model, ["vision"], 5
    )
    assert flops.vision == 48
    assert flops.prefill == 48 + 40 * 4  # vision + 4 positions through the language layer
    assert flops.decode == 40 * 4  # 4 one-position steps after the first token
    assert flops.as_metrics()["flops_decode_per_token"] == 40


def test_cpu_attention_is_counted_like_the_gpu_kernels():
    # PyTorch's counter alone skips the CPU flash-attention kernel; ours counts Q K^T and A V.
    q, k, v = torch.ones(1, 2, 5, 4), torch.ones(1, 2, 7, 4), torch.ones(1, 2, 7, 4)
    model = torch.nn.Module()
    model.vision = torch.nn.Identity()

    def attend(processors) -> None:
        torch.nn.functional.scaled_dot_product_attention(q, k, v)
        processors[0](None, None)

    flops = count_generation_flops(attend, model, [], 1)
    assert flops.prefill == 2 * (2 * 2 * 5 * 4 * 7)  # two products of 2 heads x (5x4)(4x7) and (5x7)(7x4)


def test_board_peaks_match_whole_names_and_give_mfu_and_flop_per_joule():
    assert board_peak("NVIDIA H100 80GB HBM3").name == "H100"
    assert board_peak("NVIDIA H100 PCIe").name == "H100 PCIe"
    assert board_peak("NVIDIA A100-SXM4-80GB").name == "A100"
    assert board_peak("NVIDIA A100-PCIE-40GB").name == "A100-PCIE"
    assert board_peak("Tesla T4").name == "T4"
    assert board_peak("NVIDIA GeForce RTX 4090").name == "RTX 4090"
    assert board_peak("NVIDIA L40S") is None  # not an L4
    assert board_peak(None) is None
    h100 = board_peak("NVIDIA H100 80GB HBM3")
    m = efficiency_metrics(2e12, images_per_s=10.0, j_per_image=4.0, board=h100)
    assert m["achieved_flop_per_s"] == 2e13
    assert m["mfu"] == pytest.approx(2e13 / 989e12)
    assert m["flop_per_j"] == 5e11
    assert m["energy_j_per_image_from_flops"] == pytest.approx(2e12 / (989e12 / 700.0))
    cpu = efficiency_metrics(2e12, images_per_s=1.0, j_per_image=None, board=None)
    assert set(cpu) == {"achieved_flop_per_s"}  # no energy, no board: absent, not 0
