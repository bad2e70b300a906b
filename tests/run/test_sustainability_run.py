"""What a run derives from its measurements (`run.sustainability.derive`): every number from its inputs,
every metric described in the run schema, GPU-only quantities absent on a CPU run with the reason."""

from __future__ import annotations

import re

import pytest

from vlm_quant.config import ExperimentConfig
from vlm_quant.measure.carbon import carbon_intensity_g_per_kwh
from vlm_quant.run.sustainability import derive
from vlm_quant.tracking import run_schema

GPU_METRICS = {
    "flops_per_image": 4e11,
    "throughput_images_per_s_bs1": 20.0,
    "energy_j_per_image_bs1": 8.0,
    "bs1_energy_j_per_image": 9.0,  # batch-1 phase windows, preprocessing included
}


def config(**overrides) -> ExperimentConfig:
    return ExperimentConfig.from_mapping({"data_dir": "/data", "pue": 1.2, **overrides})


def described(name: str, table: dict = run_schema.SUSTAINABILITY_METRICS) -> bool:
    """Whether ``table`` has an entry for ``name`` (``<...>`` in an entry stands for a varying part)."""
    patterns = ("[A-Za-z0-9_]*".join(map(re.escape, re.split(r"<[^>]*>", entry))) for entry in table)
    return any(re.fullmatch(pattern, name) for pattern in patterns)


def test_a_gpu_run_derives_efficiency_water_place_and_scale():
    out = derive(config(), GPU_METRICS, "NVIDIA H100 80GB HBM3", n_images=10)
    m = out.metrics
    assert m["flop_per_j"] == pytest.approx(4e11 / 8.0)
    assert m["mfu"] == pytest.approx(4e11 * 20.0 / 989e12)
    device_kwh_per_image = 9.0 / 3.6e6
    assert m["water_l_per_1k_images"] == pytest.approx(1000 * device_kwh_per_image * (0.55 + 1.2 * 3.142))
    usa, _ = carbon_intensity_g_per_kwh("USA")
    assert m["co2e_g_per_1k_images_usa"] == pytest.approx(1000 * device_kwh_per_image * 1.2 * usa)
    assert m["scale_co2e_t_per_1b_images"] == pytest.approx(1e9 * device_kwh_per_image * 1.2 * usa / 1e6)
    assert out.place["basis"].startswith("GPU energy") and len(out.place["rows"]) == 9
    assert all(described(name) for name in m), [name for name in m if not described(name)]
    assert all(described(tag, run_schema.SUSTAINABILITY_TAGS) for tag in out.tags), out.tags


def test_a_country_without_a_sourced_water_intensity_has_no_water_but_keeps_the_rest():
    out = derive(config(country_iso_code="FRA"), GPU_METRICS, "NVIDIA L4", n_images=10)
    assert not any(name.startswith(("water_", "scale_water")) for name in out.metrics)
    assert "no sourced grid water intensity for FRA" in out.tags[run_schema.TAG_WATER_ABSENT]
    assert "scale_co2e_t_per_1m_images" in out.metrics


def test_a_cpu_run_places_codecarbons_estimate_labelled_and_leaves_gpu_quantities_absent():
    metrics = {"flops_per_image": 4e9, "throughput_images_per_s_bs1": 0.5, "codecarbon_energy_kwh": 0.002}
    out = derive(config(), metrics, None, n_images=4)
    assert set(out.metrics) == {"achieved_flop_per_s", "co2e_place_highest_to_lowest_ratio"}
    assert "GPU only" in out.tags[run_schema.TAG_SUSTAINABILITY_ABSENT]
    assert out.place["basis"].startswith("ESTIMATE: codecarbon CPU+RAM")
    assert out.place["facility_energy_kwh"] == pytest.approx(0.002 * 1000 / 4)
    assert all(described(tag, run_schema.SUSTAINABILITY_TAGS) for tag in out.tags), out.tags
