"""The calibrated-quantization step of a run: AutoRound on the language model, then the export reloaded.

Reads top to bottom: choose calibration ids (seeded, disjoint from the evaluated ids and images) ->
turn them into model inputs with the quality pass's own processor call -> AutoRound quantizes and
exports -> transformers loads the export back (packed ``QuantLinear`` layers) -> that model is what the
run evaluates, audits and logs.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

from vlm_quant.models.families import linear_modules_by_role
from vlm_quant.models.loading import LoadedVLM, load_vlm
from vlm_quant.quantize.calibrated import (
    CalibrationSettings,
    autoround_export,
    calibration_ids,
)
from vlm_quant.quantize.plan_fit import autoround_group_size
from vlm_quant.run.sample_inputs import sample_inputs

ARTIFACT_CALIBRATION_IDS = "split/calibration_ids.json"


def quantize_calibrated(prepared: Any, loaded: LoadedVLM, tracker: Any) -> tuple[LoadedVLM, dict[str, float]]:
    """Apply the plan's calibrated role (AutoRound, language model) and return the reloaded model."""
    cfg, data, plan = prepared.cfg, prepared.data, prepared.plan
    (role, precision), *others = plan.calibrated_roles.items()
    assert not others, "calibrated precisions exist for the language role only"  # presets.Precision.roles
    names = linear_modules_by_role(loaded.model, loaded.family)[role]
    group_size = autoround_group_size(loaded.model, names, cfg.ar_group_size)  # checked before the run too
    settings = CalibrationSettings(group_size, cfg.ar_iters, cfg.ar_calibration_samples, cfg.seed)
    ids = [] if settings.iters == 0 else calibration_ids(data.samples, data.ids, settings.n_samples, cfg.seed)
    inputs = [sample_inputs(prepared, loaded, sample_id) for sample_id in ids]
    inputs = [x for x in inputs if x is not None]
    tracker.log_json(
        {
            "ids": ids,
            "n": len(inputs),
            "seed": cfg.seed,
            "iters": settings.iters,
            "disjoint_from": "evaluated ids",
        },
        ARTIFACT_CALIBRATION_IDS,
    )
    export_dir = Path(tempfile.mkdtemp(prefix="vlmq-autoround-"))
    export = autoround_export(
        loaded.model, loaded.processor, precision, settings, inputs, export_dir, device=prepared.device
    )
    tracker.log_params({**export.params, "ar_calibration_n": len(inputs), f"quantizer_{role}": "auto-round"})
    try:
        reloaded = load_vlm(str(export_dir), dtype=prepared.dtype, device=prepared.device.type)
    finally:  # the weights are in memory now; the run saves (and logs) its checkpoint at the end
        shutil.rmtree(export_dir, ignore_errors=True)
    # The run is still about the base model: keep its id, revision and source for the logs.
    result = dataclasses.replace(
        reloaded,
        model_id=loaded.model_id,
        revision=loaded.revision,
        weights=loaded.weights,
        source_dir=loaded.source_dir,
        load_time_s=loaded.load_time_s,
    )
    return result, {**export.to_metrics(), "reload_time_s": reloaded.load_time_s}
