"""run_experiment: one configuration, from config to a complete MLflow run. Reads top to bottom.

Order matters: everything that can be wrong with the user's input (preset, device, data, n) is
checked before the model is downloaded or loaded, so bad input never costs a download and never
leaves a half-written run behind.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoConfig

from vlm_quant.config import ExperimentConfig
from vlm_quant.engines import pipeline
from vlm_quant.engines.generate import GenerationSettings, prompt_format
from vlm_quant.engines.selection import resolve_engine
from vlm_quant.errors import UserError
from vlm_quant.measure.carbon import carbon_intensity_g_per_kwh
from vlm_quant.measure.environment import environment_record
from vlm_quant.measure.memory import MemoryTracker, weights_footprint_mib
from vlm_quant.models.checkpoint import save_checkpoint
from vlm_quant.models.config_source import bundled_config_dir, find_config_source
from vlm_quant.models.families import FamilySpec, family_for_config
from vlm_quant.models.loading import _not_found_message as model_not_found_message
from vlm_quant.models.loading import load_vlm
from vlm_quant.models.remote_code import (
    check_random_weights_code,
    check_remote_code,
    config_with_code,
    read_raw_config,
)
from vlm_quant.quantize.audit import audit_precision, verify_plan
from vlm_quant.quantize.backends import apply_plan
from vlm_quant.quantize.onnxruntime_backend import graphs_exported
from vlm_quant.quantize.prequantized import check_prequantized
from vlm_quant.quantize.presets import LLAMA_CPP, PrecisionPlan, resolve_plan
from vlm_quant.run import batch_invariance, distributed, llama_cpp_run, mlflow_views, scoring, sustainability
from vlm_quant.run.calibration import quantize_calibrated
from vlm_quant.run.cost_pass import measure_cost, resolve_cost_settings
from vlm_quant.run.fidelity_pass import FidelityPass
from vlm_quant.run.instruments import RunInstruments
from vlm_quant.run.onnx_inputs import copy_onnx_files, ort_settings
from vlm_quant.run.partial_predictions import PredictionStream
from vlm_quant.run.pass_results import finish_quality_pass, micro_set
from vlm_quant.run.plan_checks import check_plan_before_loading
from vlm_quant.run.quality_pass import load_image, run_quality_pass
from vlm_quant.run.resume import config_key
from vlm_quant.run.stages import stage
from vlm_quant.tasks.base import Task, TaskData
from vlm_quant.tasks.captioning_data import ids_hash
from vlm_quant.tasks.registry import make_task
from vlm_quant.tasks.vqa import check_shots_supported
from vlm_quant.tracking import run_schema

log = logging.getLogger(__name__)

HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class RunSummary:
    """What the entry point prints at the end."""

    run_id: str
    metrics: dict[str, float]
    n_predictions: int
    n_skipped: int


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible; use device=auto or device=cpu.")
    return torch.device(name)


def llama_cpp_device(name: str) -> torch.device:
    """A GGUF plan runs on the CPU (the llama-cpp-python build vlm-quant installs is CPU-only): the whole
    run is on the CPU, so no GPU counter meters an idle GPU as the model's energy."""
    if name == "cuda":
        raise UserError(
            "the gguf-* presets run on llama.cpp's CPU build; use device=cpu (or auto) for them, "
            "and a torch preset for the GPU."
        )
    if distributed.rank_info().distributed:
        raise UserError("the gguf-* presets run in one process; launch them without torchrun/processes>1.")
    return torch.device("cpu")


def compute_dtype(plan: PrecisionPlan, device: torch.device) -> tuple[torch.dtype, str]:
    """The dtype weights are loaded and computed in, and why.

    CPUs without AVX512-FP16/AMX run float16/bfloat16 matmuls about 100x slower than float32
    (measured on the 2-core AMD EPYC CI machine: 0.7 vs 71 GFLOP/s), so on CPU the 16-bit roles run
    in float32. This is logged (params ``dtype`` and ``dtype_note``) so no one mistakes such a run
    for a 16-bit one.
    """
    wanted = HALF_DTYPES[plan.half_dtype_name]
    if plan.engine == LLAMA_CPP:  # the torch model is only the GGUF files' source and the fidelity reference
        return (
            torch.float32,
            "llama.cpp runs the GGUF files on the CPU (their types: realized_precision_<role>); "
            "the torch reference for fidelity loads in float32",
        )
    if device.type == "cpu" and "auto-round" in plan.backends().values():
        # AutoRound's reloaded QuantLinear kernels compute in 16-bit only (it would cast the model to
        # float16 itself); bfloat16 has fast CPU kernels where AVX512-BF16/AMX exist.
        return (
            torch.bfloat16,
            f"{plan.half_dtype_name} requested; bfloat16 on CPU (AutoRound's kernels are 16-bit)",
        )
    if device.type == "cpu":
        return torch.float32, f"{plan.half_dtype_name} requested; float32 on CPU (no fast 16-bit CPU kernels)"
    return wanted, f"{plan.half_dtype_name} as planned"


def image_splitting(
    cfg: ExperimentConfig, device: torch.device, family: FamilySpec, engine: str = "torch"
) -> bool | None:
    """Idefics-style tiling (SmolVLM): the processor's default on GPU; off on CPU ('auto'). Others: None.

    With tiling a 640x480 image becomes 13 tiles (832 image tokens) for SmolVLM; on 2 CPU cores that
    is ~40 s per image, so CPU runs use one tile (64 tokens) and say so in the params. A gguf-* plan
    tiles ('auto' -> on) wherever it runs: llama.cpp's multimodal library always tiles, and with tiling on
    both sides see the same 832 image tokens (measured: llama.cpp F16 against torch float32, KL 0.0001
    nats, top-1 1.0), so its fidelity and quality compare with the torch runs of a GPU study.
    """
    if not family.splits_images:
        return None  # only Idefics3 processors tile; others would warn about an unknown kwarg
    if cfg.image_splitting == "on":
        return True
    if cfg.image_splitting == "off":
        return False
    if engine == LLAMA_CPP:
        return True
    return None if device.type == "cuda" else False


def run_params(
    cfg: ExperimentConfig, plan: PrecisionPlan, data: TaskData, extra: dict[str, Any]
) -> dict[str, Any]:
    params = cfg.to_dict()
    params["requested_revision"] = params.pop("revision")  # `revision` is logged once resolved, after loading
    params.update(plan.to_params())
    params.update(data.params)
    params.update(
        {
            "ids_hash": ids_hash(data.ids),
            "n_samples": len(data.ids),
            "dataset": data.dataset,
            "split": data.split,
        }
    )
    params.update(extra)
    return params


@dataclass(frozen=True)
class PreparedRun:
    """Everything checked and resolved before a run is opened or a model is touched."""

    cfg: ExperimentConfig
    plan: PrecisionPlan
    device: torch.device
    dtype: torch.dtype
    dtype_note: str
    task: Task
    data: TaskData
    settings: GenerationSettings
    cost_settings: Any


def model_config(cfg: ExperimentConfig) -> Any:
    """The model's configuration alone (for random weights: bundled, a local folder's or the Hub's
    configuration files), without loading weights.

    A checkpoint built by its own code is refused here, before any code or weight is fetched, unless
    trust_remote_code is on and the code is pinned (`models.remote_code`)."""
    revision = cfg.revision or None
    if cfg.weights == "random":
        trust = cfg.trust_remote_code
        code = check_random_weights_code(cfg.model, trust_remote_code=trust, revision=revision)
        if code is not None:
            return config_with_code(cfg.model, bundled_config_dir(cfg.model) / "config.json", code.directory)
        source = str(find_config_source(cfg.model, revision=revision).directory)
    else:
        source = cfg.model
        local_dir = Path(source).expanduser() if Path(source).expanduser().is_dir() else None
        check_remote_code(
            cfg.model,
            read_raw_config(source, revision),
            trust_remote_code=cfg.trust_remote_code,
            revision=revision,
            local_dir=local_dir,
        )
    try:
        config = AutoConfig.from_pretrained(
            source,
            revision=None if cfg.weights == "random" else cfg.revision or None,
            trust_remote_code=cfg.trust_remote_code,
        )
    except OSError as error:  # no such repo / path, or the Hub is unreachable and nothing is cached
        raise UserError(model_not_found_message(cfg.model, error)) from error
    return config


def model_family(cfg: ExperimentConfig) -> FamilySpec:
    """The model's family from its config alone, without loading weights."""
    return family_for_config(model_config(cfg), trust_remote_code=cfg.trust_remote_code)


def prepare_experiment(cfg: ExperimentConfig) -> PreparedRun:
    """Validate the user's input and read the split; raises UserError before any run or download."""
    plan = resolve_plan(cfg.quant, cfg.precision)
    device = resolve_device(cfg.device) if plan.engine != LLAMA_CPP else llama_cpp_device(cfg.device)
    if plan.quantized_roles:
        from vlm_quant.quantize.backends import check_plan_runnable

        check_plan_runnable(plan, device, cfg.ort_provider)
    dtype, dtype_note = compute_dtype(plan, device)
    carbon_intensity_g_per_kwh(cfg.country_iso_code)  # an unknown country fails now, not after the run
    task = make_task(cfg.task, cfg.dataset)
    scoring.require_scorer(task, cfg.score)  # no Java for the caption metrics: say so before anything runs
    data = task.prepare(cfg)
    config = model_config(cfg)  # unreachable model: an error before any run exists
    family = family_for_config(config, trust_remote_code=cfg.trust_remote_code)  # unknown family: likewise
    if plan.prequantized:  # no quantization_config, or its package missing: an error before any download
        check_prequantized(config, model=cfg.model, weights=cfg.weights)
    check_shots_supported(family, cfg.shots)
    check_plan_before_loading(cfg, plan, config, family, data)  # on the meta-device model: no download
    splitting = image_splitting(cfg, device, family, plan.engine)
    settings = GenerationSettings(cfg.max_new_tokens, 0, splitting, cfg.engine)
    cost_settings = resolve_cost_settings(cfg, on_gpu=device.type == "cuda")
    return PreparedRun(cfg, plan, device, dtype, dtype_note, task, data, settings, cost_settings)


def run_experiment(prepared: PreparedRun, tracker: Any, *, progress: bool = True) -> RunSummary:
    """Evaluate one precision configuration and log everything into ``tracker``'s run."""
    cfg, plan, device, dtype, data = (
        prepared.cfg,
        prepared.plan,
        prepared.device,
        prepared.dtype,
        prepared.data,
    )
    settings, cost_settings = prepared.settings, prepared.cost_settings

    # 1. Record what is about to run, before anything expensive happens.
    tracker.set_tags(
        {
            run_schema.TAG_WEIGHTS: cfg.weights,
            run_schema.TAG_TASK: cfg.task,
            run_schema.TAG_CONFIG_HASH: config_key(cfg),  # the same for a run and its resumptions
            run_schema.TAG_KIND: "evaluate",
        }
    )
    tracker.log_params(
        run_params(
            cfg,
            plan,
            data,
            {
                "device": device.type,
                "dtype": str(dtype).removeprefix("torch."),
                "dtype_note": prepared.dtype_note,
                "image_splitting": {None: "processor default", True: "on", False: "off"}[
                    settings.image_splitting
                ],
                "decoding": "greedy",
                **cost_settings.to_params(),
            },
        )
    )
    tracker.log_text(cfg.to_yaml(), run_schema.ARTIFACT_CONFIG)
    tracker.log_json({"dataset": data.dataset, "split": data.split, "ids": data.ids}, run_schema.ARTIFACT_IDS)
    mlflow_views.log_split(tracker, cfg, data)  # the runs list's Dataset column (digest = ids_hash)
    tracker.log_json(environment_record(), run_schema.ARTIFACT_ENVIRONMENT)

    # 2. Load, quality pass, cost pass, all under the power sampler, energy meter and codecarbon.
    instruments = RunInstruments(
        device,
        power_hz=cfg.power_hz,
        idle_seconds=cfg.idle_seconds,
        country_iso_code=cfg.country_iso_code,
        pue=cfg.pue,
    )
    with instruments.logged_on_failure(tracker), instruments:  # FAILED/KILLED runs keep the power trace
        if prepared.plan.engine == LLAMA_CPP:  # GGUF files on llama.cpp: its own load, passes and files
            loaded_checkpoint = loaded_and_logged(prepared, tracker)
            outcome = llama_cpp_run.run_passes(prepared, loaded_checkpoint, tracker, instruments, progress)
            metrics, quality = outcome.metrics, outcome.quality
        else:
            loaded, metrics = load_model(prepared, tracker)
            prepared = choose_engine(prepared, loaded, tracker)
            with stage("quality pass"):
                quality, quality_metrics = quality_pass(prepared, loaded, tracker, instruments, progress)
            metrics.update(quality_metrics)
            # A seeded subset again at batch 1, outside the quality pass's time and energy window.
            metrics.update(batch_invariance.measure_and_log(prepared, loaded, quality, tracker))
            metrics.update(cost_pass(prepared, loaded, quality, instruments, tracker))
    metrics.update(instruments.log_to(tracker))
    tracker.set_tags(instruments.tags)
    tracker.log_params(instruments.params)
    metrics.update(sustainability_metrics(prepared, metrics, instruments, tracker, len(quality.predictions)))

    # 3. Size on disk of the checkpoint as loaded (an ORT role's ONNX file is part of the model; a GGUF
    #    plan's are its two files); optionally the run's logged model (loads back).
    if prepared.plan.engine == LLAMA_CPP:
        metrics.update(gguf_checkpoint(prepared, outcome.files, tracker))
    else:
        metrics.update(torch_checkpoint(prepared, loaded, tracker))
    metrics = distributed.combine_rank_metrics(metrics, tracker)  # 1 process: unchanged
    tracker.log_metrics(metrics)  # linked to the logged model and the evaluated split
    mlflow_views.describe(tracker, prepared, metrics)
    return RunSummary(
        tracker.run_id,
        {k: v for k, v in metrics.items() if v is not None},
        len(quality.predictions),
        len(quality.skipped),
    )


def torch_checkpoint(prepared: PreparedRun, loaded: Any, tracker: Any) -> dict[str, float | None]:
    """The quantized model saved (size on disk, ONNX Runtime graphs), and logged as the run's model."""
    cfg = prepared.cfg
    metrics: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory(prefix="vlmq-ckpt-") as tmp, stage("checkpoint"):
        recipe = mlflow_views.checkpoint_recipe(prepared, loaded)
        saved = save_checkpoint(loaded.model, loaded.processor, Path(tmp), recipe)
        onnx_mib = copy_onnx_files(loaded.model, Path(tmp))
        if (graphs := graphs_exported(loaded.model)) is not None:
            metrics[run_schema.METRIC_ORT_GRAPHS] = graphs
        metrics["size_on_disk_mib"] = None if saved.weights_mib is None else saved.weights_mib + onnx_mib
        tracker.log_params({"checkpoint_writer": saved.writer})
        if saved.reason:
            tracker.set_tags({"vlm_quant.size_on_disk_skipped": saved.reason})
        if cfg.log_model:
            mlflow_views.log_checkpoint_model(tracker, prepared, Path(tmp))
    return metrics


def gguf_checkpoint(prepared: PreparedRun, files: Any, tracker: Any) -> dict[str, float]:
    """A GGUF plan's model is its two files: their size, and (log_model) the run's logged model."""
    tracker.log_params({"checkpoint_writer": "llama.cpp (convert_hf_to_gguf.py + llama_model_quantize)"})
    if prepared.cfg.log_model:
        with tempfile.TemporaryDirectory(prefix="vlmq-gguf-") as tmp, stage("checkpoint (GGUF files)"):
            for path in (files.text, files.mmproj):
                link_or_copy(path, Path(tmp) / path.name)
            mlflow_views.log_checkpoint_model(tracker, prepared, Path(tmp))
    return {"size_on_disk_mib": files.size_mib()}


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link (no copy of a GB file) where the file system allows it, else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def loaded_and_logged(prepared: PreparedRun, tracker: Any) -> Any:
    """The unquantized checkpoint (for a GGUF plan: the source of its files and the fidelity reference),
    with its resolved revision and family logged."""
    loaded = load_unquantized(prepared)
    tracker.log_params(
        {
            "revision": resolved_revision(loaded, prepared.cfg),
            "model_family": loaded.family.name,
            **remote_code_params(loaded.remote_code, prepared.cfg.weights),
        }
    )
    return loaded


def resolved_revision(loaded: Any, cfg: ExperimentConfig) -> str:
    """The Hub commit hash when known; otherwise say where the weights came from."""
    if cfg.weights == "random":
        return "random weights (bundled config)"
    return loaded.revision or cfg.revision or f"local files ({loaded.source_dir or cfg.model})"


def remote_code_params(remote_code: Any, weights: str) -> dict[str, str]:
    """What a trust_remote_code run executed: the code files, and for a local directory (no revision)
    the SHA-256 of its Python files; nothing for a model built by transformers' own classes."""
    if remote_code is None:
        return {}
    params = {run_schema.PARAM_REMOTE_CODE_FILES: ",".join(remote_code.code_files)}
    if remote_code.code_sha256 is not None:
        params[run_schema.PARAM_REMOTE_CODE_SHA256] = remote_code.code_sha256
    if remote_code.revision is not None and weights == "random":  # pretrained: `revision` says it
        params[run_schema.PARAM_REMOTE_CODE_REVISION] = remote_code.revision
    return params


def load_unquantized(prepared: PreparedRun) -> Any:
    """The model as its checkpoint holds it, in the run's compute dtype (`models.loading.load_vlm`)."""
    cfg, device = prepared.cfg, prepared.device
    with stage("load"):
        loaded = load_vlm(
            cfg.model,
            weights=cfg.weights,
            revision=cfg.revision or None,
            dtype=prepared.dtype,
            device=device.type,
            trust_remote_code=cfg.trust_remote_code,
            seed=cfg.seed,
            image_backend=cfg.image_processor,
        )
    check_shots_supported(loaded.family, cfg.shots)
    return loaded


def load_model(prepared: PreparedRun, tracker: Any) -> tuple[Any, dict[str, float | None]]:
    """Load the model at the planned precision; log its resolved revision and family."""
    cfg, device = prepared.cfg, prepared.device
    loaded = load_unquantized(prepared)
    # The unquantized outputs on the micro-set are kept first, for the fidelity metrics; the FLOPs of one
    # generation are counted on the unquantized model too (the work is the same at every precision).
    reference = FidelityPass.before_quantizing(prepared, loaded)
    with stage("FLOPs (unquantized, one batch-1 generation)"):
        flop_metrics, flop_tags = sustainability.count_flops(prepared, loaded)
    tracker.set_tags(flop_tags)
    calibration_metrics: dict[str, float] = {}
    if prepared.plan.calibrated_roles:  # AutoRound: quantize, export, and evaluate the reloaded export
        loaded, calibration_metrics = quantize_calibrated(prepared, loaded, tracker)
    # Quantize the planned roles in place (exact module names), then audit what really loaded: a plan
    # that did not take effect is an error, never a silent baseline.
    with stage(f"quantize ({prepared.plan.preset})"):
        applied = apply_plan(
            loaded.model,
            loaded.family,
            prepared.plan,
            device=device,
            compute_dtype=prepared.dtype,
            int8_threshold=cfg.int8_threshold,
            double_quant=cfg.double_quant,
            ort=ort_settings(prepared, loaded),  # ONNX Runtime vision roles: example + calibration inputs
        )
    precision_map = audit_precision(loaded.model, loaded.family, prepared.plan)
    tracker.log_json(precision_map.to_dict(), run_schema.ARTIFACT_PRECISION_MAP)  # kept if verify fails
    verify_plan(prepared.plan, precision_map, dtype=prepared.dtype)
    published = (
        check_prequantized(loaded.model.config, model=cfg.model, weights=cfg.weights).to_params()
        if prepared.plan.prequantized
        else {}
    )
    tracker.log_params(
        {
            "revision": resolved_revision(loaded, cfg),
            "model_family": loaded.family.name,
            **remote_code_params(loaded.remote_code, cfg.weights),
            **applied.to_params(),
            **precision_map.role_params(),
            **published,
        }
    )
    fidelity_metrics = reference.after_quantizing(loaded, tracker) if reference else {}
    return loaded, {
        **fidelity_metrics,
        **flop_metrics,
        "load_time_s": loaded.load_time_s,
        "weights_footprint_mib": weights_footprint_mib(loaded.model),  # after quantization
        **applied.to_metrics(),
        **precision_map.footprint_mib_by_role(),
        **calibration_metrics,
    }


def choose_engine(prepared: PreparedRun, loaded: Any, tracker: Any) -> PreparedRun:
    """Probe the requested engine on the first sample; fall back to eager with the reason logged."""
    data, cfg = prepared.data, prepared.cfg
    probe_sample = data.samples[data.ids[0]]
    _, image, _ = load_image(data, probe_sample, cfg.max_image_side)
    if image is None:  # unreadable first image: the quality pass will report it; probe on a blank one
        image = Image.new("RGB", (64, 64))
    probe = prepared.task.request(data, probe_sample, image)
    settings, note = resolve_engine(loaded.model, loaded.processor, probe, prepared.settings, prepared.dtype)
    tracker.log_params({"engine_resolved": settings.engine, "engine_note": note})
    return dataclasses.replace(prepared, settings=settings)


def quality_pass(
    prepared: PreparedRun, loaded: Any, tracker: Any, instruments: RunInstruments, progress: bool
) -> tuple[Any, dict[str, float | None]]:
    """Every selected sample (EOS allowed) under an energy window; then the task's scores (score=later:
    the tags saying they are deferred)."""
    cfg, task, data, dtype = prepared.cfg, prepared.task, prepared.data, prepared.dtype
    memory = MemoryTracker(prepared.device)
    workers = pipeline.resolve_num_workers(cfg.num_workers)
    on_device = pipeline.processor_device(loaded.processor, prepared.device, workers)
    tracker.log_params(
        {
            "num_workers_resolved": workers,
            "image_processor_backend": pipeline.image_backend(loaded.processor),
            "image_processor_class": type(getattr(loaded.processor, "image_processor", None)).__name__,
            "prompt_format": prompt_format(loaded.processor),
            "image_processor_device": on_device or "cpu",
        }
    )
    instruments.meter.begin_window("quality_pass")
    quality = distributed.sharded_quality_pass(run_quality_pass, tracker, cfg.batch_size)(  # 1 process: as is
        loaded.model,
        loaded.processor,
        task,
        data,
        batch_size=cfg.batch_size,
        max_image_side=cfg.max_image_side,
        settings=prepared.settings,
        dtype=dtype,
        progress=progress,
        stream=PredictionStream.open(tracker),  # predictions/partial.jsonl; resumes from it when present
        model_name=cfg.model,
        num_workers=workers,
        processor_device=on_device,
        timer=instruments.timer,
    )
    window = instruments.meter.end_window("quality_pass")
    return quality, finish_quality_pass(prepared, quality, window, memory, instruments, tracker)


def cost_pass(
    prepared: PreparedRun, loaded: Any, quality: Any, instruments: RunInstruments, tracker: Any
) -> dict[str, float]:
    """Latency at batch 1 and throughput/energy per batch size on the fixed micro-set."""
    cfg, settings = prepared.cfg, prepared.cost_settings
    memory = MemoryTracker(prepared.device)  # peaks of the cost pass alone (batch sizes up to 32)
    micro = micro_set(prepared, quality, tracker)
    sizes = ", ".join(map(str, settings.batch_sizes))
    with stage(f"cost pass: latency at batch 1, throughput at batch {sizes}"):
        result = measure_cost(
            loaded.model,
            loaded.processor,
            micro,
            settings,
            prepared.settings,
            prepared.dtype,
            instruments.timer,
            meter=instruments.meter,
            eval_batch_size=cfg.batch_size,
        )
    if result.tags:  # batch sizes that ran out of memory, energy windows without energy
        tracker.set_tags(result.tags)
    if result.phase_windows:  # every batch-1 phase window: kind, calls, seconds, joules
        tracker.log_json(result.phase_windows, run_schema.ARTIFACT_PHASE_WINDOWS)
    metrics = dict(result.metrics)
    metrics.update({f"cost_pass_{k}": v for k, v in memory.read().as_metrics().items()})
    return metrics


def sustainability_metrics(
    prepared: PreparedRun, metrics: dict[str, Any], instruments: RunInstruments, tracker: Any, n_images: int
) -> dict[str, float]:
    """Efficiency, water, CO2e by place and scale derived from the run's measurements (`run.sustainability`);
    the place artifact and the tags saying what is absent are logged here."""
    derived = sustainability.derive(
        prepared.cfg,
        metrics,
        getattr(instruments.gpu, "name", None) if instruments.gpu.available else None,
        n_images,
    )
    tracker.set_tags(derived.tags)
    if derived.place is not None:
        tracker.log_json(derived.place, run_schema.ARTIFACT_CO2E_BY_PLACE)
    return derived.metrics
