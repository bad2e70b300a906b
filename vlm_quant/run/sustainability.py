"""The run's sustainability numbers: FLOPs counted before quantizing, and after the cost pass the quantities
derived from its measurements (efficiency, water, CO2e by place, scale), as metrics and two artifacts.

Every formula is a pure function of ``vlm_quant.measure`` (flops, water, place, scale) with its source;
this module only picks the inputs from the run. What needs the GPU's energy counter (J/image at batch 1) is
absent on a CPU run with the tag ``vlm_quant.sustainability_absent_reason``; there the place artifact holds
codecarbon's CPU + RAM estimate of the whole run instead, labelled as such.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vlm_quant.engines.generate import generate_prepared, pad_token_id
from vlm_quant.measure.carbon import carbon_intensity_g_per_kwh
from vlm_quant.measure.energy import J_PER_KWH
from vlm_quant.measure.flops import board_peak, count_generation_flops, efficiency_metrics
from vlm_quant.measure.place import co2e_by_place, place_record
from vlm_quant.measure.scale import scale_metrics
from vlm_quant.measure.water import grid_water_intensity, water_litres
from vlm_quant.run.cost_pass import fixed_length
from vlm_quant.run.sample_inputs import sample_inputs
from vlm_quant.tracking.run_schema import TAG_CO2E_BY_PLACE_BASIS as TAG_PLACE_BASIS
from vlm_quant.tracking.run_schema import TAG_FLOPS_ABSENT, TAG_SUSTAINABILITY_ABSENT, TAG_WATER_ABSENT


def count_flops(prepared: Any, loaded: Any) -> tuple[dict[str, float], dict[str, str]]:
    """FLOPs of one batch-1 generation (the first readable evaluated sample, the cost pass's output length)
    on the model as loaded: call it before quantizing. The metrics, or a tag saying why there are none."""
    if prepared.plan.prequantized:  # a published quantized checkpoint: there is no 16-bit model here
        return {}, {TAG_FLOPS_ABSENT: "the checkpoint loaded quantized: no unquantized model to count on"}
    settings = dataclasses.replace(fixed_length(prepared.settings, prepared.cost_settings), engine="eager")
    inputs = next(
        (x for x in (sample_inputs(prepared, loaded, i) for i in prepared.data.ids) if x is not None), None
    )
    if inputs is None:
        return {}, {TAG_FLOPS_ABSENT: "no readable image to count a generation's FLOPs on"}
    pad = pad_token_id(loaded.model, loaded.processor)
    try:
        flops = count_generation_flops(
            lambda processors: generate_prepared(
                loaded.model, inputs, settings, pad_token_id=pad, logits_processor=processors
            ),
            loaded.model,
            loaded.family.roles["vision"],
            settings.max_new_tokens,
        )
    except Exception as error:  # an exotic family's generate(): the run goes on without the count
        return {}, {TAG_FLOPS_ABSENT: f"FLOP counting failed: {type(error).__name__}: {str(error)[:200]}"}
    return flops.as_metrics(), {}


@dataclasses.dataclass
class Derived:
    """Derived metrics, tags and the place artifact (a JSON-ready dict)."""

    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    place: dict[str, Any] | None = None


def derive(cfg: Any, metrics: dict[str, Any], gpu_name: str | None, n_images: int) -> Derived:
    """Efficiency, water, CO2e by place and scale from the run's ``metrics`` (see the module docstring).

    ``n_images``: images the quality pass generated for (the CPU estimate's per-image basis).
    """
    out = Derived()
    board = board_peak(gpu_name)
    if "flops_per_image" in metrics:
        out.metrics.update(
            efficiency_metrics(
                metrics["flops_per_image"],
                images_per_s=metrics.get("throughput_images_per_s_bs1"),
                j_per_image=metrics.get("energy_j_per_image_bs1"),
                board=board,
            )
        )
    if gpu_name and board is None:
        out.tags["vlm_quant.mfu_absent_reason"] = f"no peak FLOP/s known for {gpu_name!r} (measure.flops)"
    j_per_image = metrics.get("bs1_energy_j_per_image")
    if j_per_image is None:
        out.tags[TAG_SUSTAINABILITY_ABSENT] = (
            "GPU only: Wh/1k images, water, CO2e by place and scale need the batch-1 phase windows' NVML "
            "energy (see vlm_quant.phase_energy_absent_reason)"
        )
        out.place = _cpu_place(metrics, n_images)
        if out.place is not None:
            out.tags[TAG_PLACE_BASIS] = out.place["basis"]
            out.metrics.update(_ratio_metric(out.place))
        return out
    water_l_per_image = _water(cfg, j_per_image, out)
    intensity, _ = carbon_intensity_g_per_kwh(cfg.country_iso_code)
    out.metrics.update(
        scale_metrics(
            j_per_image,
            pue=cfg.pue,
            carbon_intensity_g_per_kwh=intensity,
            water_l_per_image=water_l_per_image,
        )
    )
    facility_kwh_per_1k = j_per_image * 1000.0 * cfg.pue / J_PER_KWH
    rows = co2e_by_place(facility_kwh_per_1k)
    out.place = place_record(
        rows, basis="GPU energy per 1,000 images at batch 1 (NVML) x PUE", facility_kwh=facility_kwh_per_1k
    )
    out.tags[TAG_PLACE_BASIS] = out.place["basis"]
    out.metrics.update({f"co2e_g_per_1k_images_{r.country_iso_code.lower()}": r.co2e_g for r in rows})
    out.metrics.update(_ratio_metric(out.place))
    return out


def _water(cfg: Any, j_per_image: float, out: Derived) -> float | None:
    """Litres per image (and the metric per 1,000 images), or None with the tag saying why."""
    ewif, source = grid_water_intensity(cfg.country_iso_code, cfg.water_intensity_l_per_kwh)
    if ewif is None:
        out.tags[TAG_WATER_ABSENT] = source
        return None
    litres = water_litres(
        j_per_image / J_PER_KWH, pue=cfg.pue, wue_l_per_kwh=cfg.wue_l_per_kwh, ewif_l_per_kwh=ewif
    )
    out.metrics["water_l_per_1k_images"] = litres * 1000.0
    out.tags["vlm_quant.water_source"] = source
    return litres


def _cpu_place(metrics: dict[str, Any], n_images: int) -> dict[str, Any] | None:
    """The place artifact from codecarbon's CPU+RAM estimate of the whole run, or None without one."""
    kwh = metrics.get("codecarbon_energy_kwh")  # facility energy: codecarbon applied the PUE
    if kwh is None or n_images <= 0:
        return None
    per_1k = kwh * 1000.0 / n_images
    basis = (
        "ESTIMATE: codecarbon CPU+RAM facility energy of the whole run (load, quality and cost passes) per "
        "1,000 images evaluated; no GPU energy counter"
    )
    return place_record(co2e_by_place(per_1k), basis=basis, facility_kwh=per_1k)


def _ratio_metric(place: dict[str, Any]) -> dict[str, float]:
    ratio = place["highest_to_lowest_ratio"]
    return {} if ratio is None else {"co2e_place_highest_to_lowest_ratio": ratio}
