"""The plan against the model's structure and the split, before any run opens or any weight is read.

``prepare_experiment`` calls ``check_plan_before_loading`` once the model's config (config.json alone)
and the split are known. What it refuses used to be refused only after loading (up to a minute for a
2B model) inside an already-open run, which then stayed in the store as FAILED: an ONNX Runtime vision
tower for a family whose export is not implemented, an AutoRound group size that does not divide a
linear's width, a quantized ``lm_head`` tied to the embeddings, a role without linear layers, and a
calibrated precision with no image left outside the evaluated ones.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from vlm_quant.config import ExperimentConfig
from vlm_quant.models.families import FamilySpec
from vlm_quant.models.meta_model import build_meta_model
from vlm_quant.quantize import gguf_files
from vlm_quant.quantize.plan_fit import check_plan_fits
from vlm_quant.quantize.presets import LLAMA_CPP, PRECISIONS, PrecisionPlan
from vlm_quant.run.onnx_inputs import check_calibration_pool
from vlm_quant.tasks.base import TaskData
from vlm_quant.tasks.calibration_split import require_calibration_ids

log = logging.getLogger(__name__)


def check_plan_before_loading(
    cfg: ExperimentConfig, plan: PrecisionPlan, config: Any, family: FamilySpec, data: TaskData
) -> None:
    """UserError when ``plan`` cannot run on this model and split; nothing is downloaded or allocated.

    The structural checks run on the architecture built on the meta device from ``config``
    (``build_meta_model``, ~0.05 s for the bundled 256M-7B configs); the same checks run again on the
    loaded model, so a structure the meta build cannot give (it fails) only defers them, with a log line.
    """
    for precision in plan.calibrated_roles.values():  # calibration images: not evaluated ones
        if PRECISIONS[precision].backend == "llm-compressor":
            require_calibration_ids(data.samples, data.ids, 1, cfg.seed, f"llm-compressor {precision}")
        elif cfg.ar_iters > 0:
            require_calibration_ids(data.samples, data.ids, 1, cfg.seed, "AutoRound")
    if "ort-int8-static" in plan.quantized_roles.values():
        check_calibration_pool(cfg, data)
    if plan.engine == LLAMA_CPP:  # the converter's verdict on the family, before any weight is read
        gguf_files.check_family(config.model_type)
        return
    if not plan.quantized_roles or plan.prequantized:
        return
    started = time.perf_counter()
    try:
        model = build_meta_model(config, trust_remote_code=cfg.trust_remote_code)
    except Exception as error:  # noqa: BLE001 - a model class that cannot be built on meta: check after loading
        log.warning("the plan's structural checks wait for the loaded model (meta build failed: %s)", error)
        return
    check_plan_fits(plan, model, family, ar_group_size=cfg.ar_group_size)
    log.debug("plan checked on the meta-device model in %.3f s", time.perf_counter() - started)
