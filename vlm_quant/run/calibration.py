"""The calibrated-quantization step of a run (AutoRound or llm-compressor), then the export reloaded.

Reads top to bottom: choose calibration ids (the split's one calibration draw: seeded, disjoint from the
evaluated images) -> turn them into model inputs with the quality pass's own processor call -> the
library quantizes the language model and exports it in its own format -> transformers loads the export
back (never the in-memory object) -> that model is what the run evaluates, audits and logs.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

from vlm_quant.models.families import linear_modules_by_role
from vlm_quant.models.loading import LoadedVLM, load_vlm
from vlm_quant.quantize.calibrated import CalibrationSettings, autoround_export
from vlm_quant.quantize.plan_fit import autoround_group_size, ptq_group_size
from vlm_quant.quantize.presets import PRECISIONS
from vlm_quant.run.sample_inputs import sample_inputs
from vlm_quant.tasks.calibration_split import require_calibration_ids

ARTIFACT_CALIBRATION_IDS = "split/calibration_ids.json"


def quantize_calibrated(prepared: Any, loaded: LoadedVLM, tracker: Any) -> tuple[LoadedVLM, dict[str, float]]:
    """Apply the plan's calibrated role (language model) and return the reloaded model with its metrics."""
    (role, precision), *others = prepared.plan.calibrated_roles.items()
    assert not others, "calibrated precisions exist for the language role only"  # presets.Precision.roles
    names = linear_modules_by_role(loaded.model, loaded.family)[role]
    backend = PRECISIONS[precision].backend
    export_dir = Path(tempfile.mkdtemp(prefix=f"vlmq-{backend}-"))
    try:
        if backend == "auto-round":
            export = _autoround(prepared, loaded, precision, names, export_dir, tracker)
        else:
            export = _llmcompressor(prepared, loaded, precision, names, export_dir, tracker)
        tracker.log_params({**export.params, f"quantizer_{role}": backend})
        reloaded = load_vlm(str(export_dir), dtype=prepared.dtype, device=prepared.device.type)
    finally:  # the weights are in memory now; the run saves (and logs) its checkpoint at the end
        shutil.rmtree(export_dir, ignore_errors=True)
    metrics = {**export.to_metrics(), "reload_time_s": reloaded.load_time_s}
    if backend == "llm-compressor":
        from vlm_quant.quantize.llmcompressor_backend import decompress

        metrics["decompress_s"] = decompress(reloaded.model)
    # The run is still about the base model: keep its id, revision and source for the logs.
    result = dataclasses.replace(
        reloaded,
        model_id=loaded.model_id,
        revision=loaded.revision,
        weights=loaded.weights,
        source_dir=loaded.source_dir,
        load_time_s=loaded.load_time_s,
    )
    return result, metrics


def _calibration_inputs(prepared, loaded, n: int, tracker, **logged) -> list[dict[str, Any]]:
    """The calibration pairs as model inputs; their ids logged as ``split/calibration_ids.json``."""
    data, cfg = prepared.data, prepared.cfg
    ids = require_calibration_ids(data.samples, data.ids, n, cfg.seed, logged["quantizer"]) if n else []
    inputs = [x for x in (sample_inputs(prepared, loaded, i) for i in ids) if x is not None]
    tracker.log_json(
        {"ids": ids, "n": len(inputs), "seed": cfg.seed, "disjoint_from": "evaluated images", **logged},
        ARTIFACT_CALIBRATION_IDS,
    )
    return inputs


def _autoround(prepared, loaded, precision, names, export_dir, tracker):
    cfg = prepared.cfg
    group_size = autoround_group_size(loaded.model, names, cfg.ar_group_size)  # checked before the run too
    settings = CalibrationSettings(group_size, cfg.ar_iters, cfg.ar_calibration_samples, cfg.seed)
    n = 0 if settings.iters == 0 else settings.n_samples  # data-free: no calibration pairs
    inputs = _calibration_inputs(prepared, loaded, n, tracker, quantizer="AutoRound", iters=settings.iters)
    export = autoround_export(
        loaded.model, loaded.processor, precision, settings, inputs, export_dir, device=prepared.device
    )
    export.params["ar_calibration_n"] = len(inputs)
    return export


def _llmcompressor(prepared, loaded, precision, names, export_dir, tracker):
    from vlm_quant.quantize.llmcompressor_backend import llmcompressor_export

    group_size = ptq_group_size(loaded.model, names)
    n = prepared.cfg.ptq_calibration_samples
    inputs = _calibration_inputs(prepared, loaded, n, tracker, quantizer=f"llm-compressor {precision}")
    prefix = loaded.family.roles["language"][0]
    export = llmcompressor_export(
        loaded.model,
        loaded.processor,
        precision,
        names,
        prefix,
        group_size,
        inputs,
        export_dir,
        device=prepared.device,
    )
    export.params["ptq_calibration_n"] = len(inputs)
    export.params["ptq_calibration_samples"] = n
    return export
