"""One evaluate run of a GGUF plan on the llama.cpp engine, from the loaded checkpoint to the cost pass.
Reads top to bottom; `run.runner` calls it where a torch plan loads, quantizes and runs its passes.

1. The checkpoint as loaded by transformers (pretrained or random weights) gives the fidelity reference
   (the unquantized model's greedy continuations and log-probabilities on the fidelity set) and is then
   released, so the passes' peak RSS is llama.cpp's.
2. Its GGUF files: converted by llama.cpp's converter, quantized by llama.cpp's quantizer, cached
   (`quantize.gguf_files`), audited (GGML type per role, read back from the files) and verified.
3. The engine loads them (``load_time_s``); fidelity: the same teacher-forced continuations through
   llama.cpp's logits (KL, top-1; the role cosines are absent: llama.cpp exposes no per-role outputs).
4. Quality pass, then cost pass, on the engine (`run.llama_cpp_passes`), under the run's instruments.
"""

from __future__ import annotations

import dataclasses
import gc
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlm_quant.engines.generate import prompt_format
from vlm_quant.engines.llama_cpp import LlamaCppEngine
from vlm_quant.measure.memory import MemoryTracker
from vlm_quant.quantize import fidelity, gguf_converter, gguf_files
from vlm_quant.quantize.presets import ROLES
from vlm_quant.run import llama_cpp_passes
from vlm_quant.run.batch_invariance import absent_reason
from vlm_quant.run.fidelity_pass import FidelityPass
from vlm_quant.run.llama_cpp_passes import EnginePrompts
from vlm_quant.run.partial_predictions import PredictionStream
from vlm_quant.run.pass_results import finish_quality_pass, micro_set
from vlm_quant.run.quality_pass import load_image
from vlm_quant.run.sample_inputs import sample_inputs
from vlm_quant.run.stages import stage
from vlm_quant.tracking import run_schema

ARTIFACT_GGUF_AUDIT = "precision/gguf_tensor_types.json"
TAG_FIDELITY_ROLES_ABSENT = "vlm_quant.fidelity_roles_absent_reason"
TAG_CONVERT_ABSENT = "vlm_quant.gguf_convert_absent_reason"
TAG_QUANTIZE_ABSENT = "vlm_quant.quantize_time_absent_reason"
ROLE_COSINES_ABSENT = (
    "llama.cpp exposes no per-role outputs (vision tower, projector): only next-token logits are compared"
)


@dataclass(frozen=True)
class LlamaCppOutcome:
    """What the runner needs after the passes: metrics so far, the quality pass, the GGUF files."""

    metrics: dict[str, float | None]
    quality: Any
    files: gguf_files.GgufFiles


def run_passes(prepared: Any, loaded: Any, tracker: Any, instruments: Any, progress: bool) -> LlamaCppOutcome:
    """Steps 1-4 of the module docstring for ``loaded`` (the unquantized checkpoint)."""
    cfg, plan = prepared.cfg, prepared.plan
    reference = FidelityPass.before_quantizing(prepared, loaded)
    processor_tokens = processor_image_tokens(prepared, loaded)
    tracker.set_tags(
        {
            run_schema.TAG_FLOPS_ABSENT: "the FLOP counter counts torch's generate(); llama.cpp runs its own "
            "kernels on its own image tokens (gguf_image_tokens), which it does not count"
        }
    )
    with stage(f"GGUF files ({plan.roles['language']} text, {plan.roles['vision']} mmproj)") as line:
        files = build_gguf_files(loaded, plan.roles)
        line["note"] = "from the cache" if files.from_cache else "converted + quantized by llama.cpp"
    found = gguf_files.audit(files)
    tracker.log_json(
        {role: dataclasses.asdict(types) for role, types in found.items()} | {"files": file_record(files)},
        ARTIFACT_GGUF_AUDIT,
    )
    gguf_files.verify(plan.roles, found)
    processor = loaded.processor
    loaded.model = None  # the torch model's memory goes back before llama.cpp loads (peak RSS is llama.cpp's)
    gc.collect()

    threads = torch.get_num_threads()
    image_max_tokens = tile_tokens(processor) if prepared.settings.image_splitting is False else 0
    started = time.perf_counter()
    engine = LlamaCppEngine(files.text, files.mmproj, threads=threads, image_max_tokens=image_max_tokens)
    load_time_s = time.perf_counter() - started
    try:
        prompts = EnginePrompts(engine, processor)
        metrics: dict[str, float | None] = {
            "load_time_s": load_time_s,
            "weights_footprint_mib": sum(t.bytes for t in found.values()) / 2**20,
            **{f"weights_mib_{role}": found[role].bytes / 2**20 for role in ROLES},
        }
        metrics.update(build_metrics(files, tracker))
        if reference is not None:
            metrics.update(llama_fidelity(prepared, reference, prompts, tracker))
        gguf_tokens = engine_image_tokens(prepared, prompts)
        tracker.log_params(
            {
                **realized_params(found),
                "engine_resolved": "llama.cpp",
                "engine_note": f"llama.cpp (llama-cpp-python {gguf_converter.LLAMA_CPP_PYTHON_VERSION}, "
                f"libmtmd), {threads} CPU threads, greedy; images preprocessed by libmtmd",
                "llama_cpp_threads": threads,
                "llama_cpp_image_max_tokens": image_max_tokens or "libmtmd default",
                "gguf_image_tokens": gguf_tokens,
                "processor_image_tokens": processor_tokens,
                "gguf_from_cache": files.from_cache,
                "prompt_format": prompt_format(processor),
                "image_processor_class": "libmtmd (llama.cpp)",
                "num_workers_resolved": 0,
            }
        )
        tracker.set_tags({run_schema.TAG_BATCH_INVARIANCE_ABSENT: absent_reason(1, cfg.invariance_samples)})
        with stage("quality pass"):
            quality, quality_metrics = quality_pass(prepared, prompts, tracker, instruments, progress)
        metrics.update(quality_metrics)
        metrics.update(cost_pass(prepared, prompts, quality, instruments, tracker))
    finally:
        engine.close()
    return LlamaCppOutcome(metrics, quality, files)


def build_gguf_files(loaded: Any, roles: dict[str, str]) -> gguf_files.GgufFiles:
    """The plan's files from the directory the checkpoint was read from (or a saved copy of the model)."""
    if loaded.source_dir and Path(loaded.source_dir, "config.json").is_file():
        return gguf_files.build_files(Path(loaded.source_dir), roles["language"], roles["vision"])
    with tempfile.TemporaryDirectory(prefix="vlmq-gguf-src-") as tmp:
        loaded.model.save_pretrained(tmp)
        loaded.processor.save_pretrained(tmp)
        return gguf_files.build_files(Path(tmp), roles["language"], roles["vision"])


def build_metrics(files: gguf_files.GgufFiles, tracker: Any) -> dict[str, float]:
    """``gguf_convert_s`` (llama.cpp's converter) and ``quantize_time_s`` (its quantizer) of this run; what
    came from the cache is absent, with the tag saying so."""
    metrics, cached = {}, {}
    if files.convert_s is not None:
        metrics["gguf_convert_s"] = files.convert_s
    else:
        cached[TAG_CONVERT_ABSENT] = f"the F16 GGUF files came from the cache ({files.text.parent})"
    if files.quantize_s is not None:
        metrics["quantize_time_s"] = files.quantize_s
    else:
        cached[TAG_QUANTIZE_ABSENT] = "no file was quantized by this run (cached, or an F16 plan)"
    tracker.set_tags(cached)
    return metrics


def file_record(files: gguf_files.GgufFiles) -> dict[str, Any]:
    return {
        "text": str(files.text),
        "mmproj": str(files.mmproj),
        "size_on_disk_mib": files.size_mib(),
        "from_cache": files.from_cache,
    }


def realized_params(found: dict[str, gguf_files.RoleTypes]) -> dict[str, str]:
    """``realized_precision_<role>`` (the GGML types of its matrices, e.g. ``gguf-q8_0``) and
    ``realized_other_<role>`` (its other tensors), the audit's params every run logs."""
    params = {}
    for role in ROLES:
        params[f"realized_precision_{role}"] = found[role].realized()
        other = found[role].other
        params[f"realized_other_{role}"] = (
            ", ".join(f"{t.lower()} x{n}" for t, n in sorted(other.items())) or "none"
        )
    return params


def tile_tokens(processor: Any) -> int:
    """Image tokens of one tile in the processor (Idefics3/SmolVLM: ``image_seq_len``, 64); 0 if unknown."""
    return int(getattr(processor, "image_seq_len", 0) or 0)


def processor_image_tokens(prepared: Any, loaded: Any) -> int | str:
    """How many image tokens the processor makes for the first readable evaluated image."""
    token_id = getattr(loaded.processor, "image_token_id", None)
    for sample_id in prepared.data.ids[:5]:
        inputs = sample_inputs(prepared, loaded, sample_id)
        if inputs is not None and token_id is not None:
            return int((inputs["input_ids"] == token_id).sum())
    return "unknown"


def engine_image_tokens(prepared: Any, prompts: EnginePrompts) -> int | str:
    """How many image tokens libmtmd makes for the first readable evaluated image (no generation)."""
    data = prepared.data
    for sample_id in data.ids[:5]:
        sample = data.samples[sample_id]
        _, image, _ = load_image(data, sample, prepared.cfg.max_image_side)
        if image is not None:
            request = prepared.task.request(data, sample, image)
            return prompts.engine.image_tokens(prompts.prompt(request), image)
    return "unknown"


def llama_fidelity(prepared: Any, reference: FidelityPass, prompts: EnginePrompts, tracker: Any) -> dict:
    """KL and top-1 agreement of llama.cpp's next-token distributions with the unquantized torch model's
    on the fidelity set's teacher-forced continuations."""
    data, cfg = prepared.data, prepared.cfg
    outputs = []
    with stage("fidelity (llama.cpp logits)"):
        for sample_id, sequence in zip(reference.ids, reference.sequences):
            sample = data.samples[sample_id]
            _, image, _ = load_image(data, sample, cfg.max_image_side)
            request = prepared.task.request(data, sample, image)
            log_probs = prompts.engine.continuation_log_probs(
                prompts.prompt(request), image, sequence.continuation
            )
            outputs.append(fidelity.Outputs({}, torch.from_numpy(log_probs)))
    tracker.set_tags({TAG_FIDELITY_ROLES_ABSENT: ROLE_COSINES_ABSENT})
    return reference.log_comparison(outputs, tracker, logits_only=True)


def quality_pass(
    prepared: Any, prompts: EnginePrompts, tracker: Any, instruments: Any, progress: bool
) -> tuple[Any, dict[str, float | None]]:
    """Every selected sample through the engine under the quality pass's energy window, then the shared
    bookkeeping and scores (`run.pass_results.finish_quality_pass`)."""
    cfg = prepared.cfg
    memory = MemoryTracker(prepared.device)
    instruments.meter.begin_window("quality_pass")
    quality = llama_cpp_passes.run_quality_pass(
        prompts,
        prepared.task,
        prepared.data,
        max_new_tokens=cfg.max_new_tokens,
        max_image_side=cfg.max_image_side,
        timer=instruments.timer,
        stream=PredictionStream.open(tracker),
        progress=progress,
    )
    window = instruments.meter.end_window("quality_pass")
    return quality, finish_quality_pass(prepared, quality, window, memory, instruments, tracker)


def cost_pass(prepared: Any, prompts: EnginePrompts, quality: Any, instruments: Any, tracker: Any) -> dict:
    """Latency and throughput at batch 1 on the micro-set (`run.llama_cpp_passes.measure_cost`)."""
    memory = MemoryTracker(prepared.device)
    micro = micro_set(prepared, quality, tracker)
    with stage("cost pass: latency and throughput at batch 1 (llama.cpp)"):
        result = llama_cpp_passes.measure_cost(
            prompts, micro, prepared.cost_settings, instruments.timer, instruments.meter
        )
    tracker.set_tags(result.tags)
    metrics = dict(result.metrics)
    metrics.update({f"cost_pass_{k}": v for k, v in memory.read().as_metrics().items()})
    return metrics
