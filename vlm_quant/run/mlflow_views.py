"""What the MLflow UI shows of an evaluate run, beyond params and metrics (the runner's small hooks).

The split and micro-set as dataset inputs (runs list: Dataset column), the checkpoint as a logged
model that `vlm-quant load` can rebuild, and the run page's description. The words and the dataset
records come from `tracking.run_story`; the MLflow calls are the tracker's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlm_quant.models.logged_model import rebuild_recipe
from vlm_quant.quantize.audit import audit_precision
from vlm_quant.run.scoring import DEFERRED_REASON
from vlm_quant.tasks.captioning_data import ids_hash
from vlm_quant.tracking import run_schema
from vlm_quant.tracking.run_story import (
    TAG_NOTE,
    RunFacts,
    describe_run,
    micro_set_input,
    run_caveats,
    run_display_name,
    split_inputs,
)

SHORT_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def display_name(cfg: Any, prepared: Any = None) -> str:
    """The run's name: the user's ``run_name``, else ``<model short name> · <preset>[+override]``, with
    what the 16-bit roles really computed in when ``prepared`` (a PreparedRun) says it is not the preset's
    dtype, e.g. ``· fp16 (fp32 on cpu)``: a name never says fp16 for a float32 run."""
    if cfg.run_name:
        return cfg.run_name
    ran = ""
    if prepared is not None and prepared.plan.engine == "llama.cpp":
        ran = "llama.cpp on cpu"  # GGUF files run by llama.cpp's CPU build, whatever device torch had
    elif prepared is not None:
        computed = SHORT_DTYPES.get(str(prepared.dtype).removeprefix("torch."), str(prepared.dtype))
        if computed != prepared.plan.half_dtype_name:
            ran = f"{computed} on {prepared.device.type}"
    return run_display_name(cfg.model, cfg.quant, cfg.precision, ran)


def log_split(tracker: Any, cfg: Any, data: Any) -> None:
    """The evaluated split (and the few-shot pool) as dataset inputs; digest = the ids hash."""
    tracker.log_datasets(split_inputs(cfg, data, ids_hash))


def log_micro_set(tracker: Any, cfg: Any, data: Any, micro_ids: list[Any]) -> None:
    tracker.log_datasets([micro_set_input(cfg, data, micro_ids, ids_hash)])


def checkpoint_recipe(prepared: Any, loaded: Any) -> dict[str, Any]:
    """The rebuild recipe saved beside the checkpoint's weights (see models/logged_model.py)."""
    settings = prepared.settings
    precision_map = audit_precision(loaded.model, loaded.family, prepared.plan)
    generation = {
        "max_new_tokens": prepared.cfg.max_new_tokens,
        "image_splitting": settings.image_splitting,
        "max_image_side": prepared.cfg.max_image_side,
        "engine": settings.engine,
    }
    return rebuild_recipe(
        prepared.cfg, loaded, prepared.plan, prepared.dtype, prepared.device.type, precision_map, generation
    )


def log_checkpoint_model(tracker: Any, prepared: Any, folder: Path) -> str:
    """The saved checkpoint as the run's logged model (registered when ``register`` is set)."""
    cfg = prepared.cfg
    params = {"model": cfg.model, "quant": cfg.quant, "precision": cfg.precision, "weights": cfg.weights,
              **prepared.plan.to_params()}
    tags = {"preset": cfg.quant, run_schema.TAG_WEIGHTS: cfg.weights, run_schema.TAG_CONFIG_HASH: _key(cfg)}
    return tracker.log_model(folder, display_name(cfg), params=params, tags=tags, register=cfg.register)


def _key(cfg: Any) -> str:
    from vlm_quant.run.resume import config_key

    return config_key(cfg)


def describe(tracker: Any, prepared: Any, metrics: dict[str, Any]) -> str:
    """The run page's description (tag ``mlflow.note.content``); returns the text."""
    return describe_values(
        tracker, prepared.cfg, prepared.data.dataset, prepared.dtype_note, prepared.settings.engine, metrics
    )


def describe_values(
    tracker: Any, cfg: Any, dataset: str, dtype_note: str, engine_resolved: str, metrics: dict[str, Any]
) -> str:
    """`describe` from plain values (`score run` rewrites a logged run's description from its params)."""
    caveats = run_caveats(
        resumed=int(metrics.get("n_samples_resumed") or 0),
        dtype_note=dtype_note,
        engine_requested=cfg.engine,
        engine_resolved=engine_resolved,
    )
    facts = RunFacts(
        name=display_name(cfg),
        task=cfg.task,
        metrics={k: float(v) for k, v in metrics.items() if v is not None},
        weights=cfg.weights,
        n_samples=int(metrics.get("n_samples_evaluated") or 0) or None,
        dataset=dataset,
        caveats=caveats,
        quality_absent_reason=DEFERRED_REASON if getattr(cfg, "score", "now") == "later" else "",
    )
    text = describe_run(facts)
    tracker.set_tags({TAG_NOTE: text})
    return text
