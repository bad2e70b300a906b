"""GPTQ, AWQ and SmoothQuant + GPTQ (W8A8) on the language model, through llm-compressor.

llm-compressor's ``oneshot`` runs the recipe on the in-memory model, calibrated on the study's own
image-prompt pairs (the quality pass's processor outputs, one pair per batch), quantizing the decoder
layers one after another (its "sequential" pipeline). The result is written in the library's
compressed-tensors format (``pack-quantized`` int4/int8 for weight-only, ``int-quantized`` int8 for
W8A8), which transformers reads back through its compressed-tensors quantizer.

What runs after loading: transformers (5.23, no vLLM) keeps compressed-tensors layers packed only until
the first forward, when compressed-tensors decompresses the whole model to dense floating-point weights
(holding the quantized grid values) on every device. ``decompress`` does that explicitly right after
loading, timed (``decompress_s``), so the audit describes the model that is then evaluated
(``ct-w4a16-dense``: dense weights); ``recompress`` packs it again for the run's checkpoint, so the size
on disk and the logged model are the library's packed format (``ptq_export_mib``: the export's files).

The recipes' targets are the exact names of the language role's linears (our expansion, never a
class rule), and AWQ's / SmoothQuant's smoothing mappings (the library's own for the architecture) are
anchored to the language model's prefix, so a vision tower's ``q_proj`` is never smoothed with them.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

from vlm_quant.measure.memory import MemoryTracker

# Preset -> (weight bits, activation bits, methods): which modifiers make it.
SCHEMES: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "gptq-w4": (4, 16, ("GPTQ",)),
    "gptq-w8": (8, 16, ("GPTQ",)),
    "awq-w4": (4, 16, ("AWQ",)),
    "w8a8-sq": (8, 8, ("SmoothQuant", "GPTQ")),
}
# Knobs of each modifier logged as params (their values are the library's defaults: read, not copied).
KNOBS: dict[str, tuple[str, ...]] = {
    "GPTQ": ("block_size", "dampening_frac", "actorder"),
    "AWQ": ("duo_scaling", "n_grid"),
    "SmoothQuant": ("smoothing_strength",),
}


@dataclass(frozen=True)
class PtqExport:
    """An llm-compressor export on disk and what making it cost."""

    checkpoint_dir: Path
    quantize_s: float  # wall seconds of oneshot (calibration forwards + GPTQ/AWQ/smoothing), not saving
    memory: Any  # MemoryReading of the quantization window (peak RSS; peak VRAM on CUDA)
    export_mib: float  # weight files of the packed export (MiB = 2**20 bytes)
    params: dict[str, Any]

    def to_metrics(self) -> dict[str, float]:
        metrics = {"quantize_s": self.quantize_s, "ptq_export_mib": self.export_mib}
        metrics.update({f"quantize_{key}": value for key, value in self.memory.as_metrics().items()})
        return metrics


def build_recipe(precision: str, names: Sequence[str], prefix: str, group_size: int, model: nn.Module):
    """The llm-compressor modifiers of ``precision`` for the linears ``names`` under ``prefix``."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    bits, act_bits, methods = SCHEMES[precision]
    if act_bits == 16:  # weight-only: symmetric int groups, like ar-w4
        weights = QuantizationArgs(
            num_bits=bits, type="int", symmetric=True, strategy="group", group_size=group_size
        )
        scheme = QuantizationScheme(targets=list(names), weights=weights)
    else:  # W8A8 INT8: per-channel weights, dynamic per-token activations (the library's W8A8 scheme)
        weights = QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="channel")
        inputs = QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="token", dynamic=True)
        scheme = QuantizationScheme(targets=list(names), weights=weights, input_activations=inputs)
    groups = {"group_0": scheme}
    recipe = []
    if "SmoothQuant" in methods:
        from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier
        from llmcompressor.modifiers.transform.smoothquant.dynamic_mappings import (
            get_layer_mappings_from_model,
        )

        mappings = [
            [[_anchor(b, prefix) for b in m.balance_layers], _anchor(m.smooth_layers, prefix)]
            for m in get_layer_mappings_from_model(model)
        ]
        recipe.append(SmoothQuantModifier(mappings=mappings))
    if "AWQ" in methods:
        from llmcompressor.modifiers.transform.awq import AWQModifier
        from llmcompressor.modifiers.transform.awq.dynamic_mappings import get_layer_mappings_from_model
        from llmcompressor.modifiers.transform.awq.mappings import AWQMapping

        mappings = [
            AWQMapping(_anchor(m.smooth_layer, prefix), [_anchor(b, prefix) for b in m.balance_layers])
            for m in get_layer_mappings_from_model(model)
        ]
        # AWQ only rescales channels; the library's QuantizationModifier then rounds the scaled weights.
        recipe += [AWQModifier(mappings=mappings), QuantizationModifier(config_groups=groups)]
    else:
        recipe.append(GPTQModifier(config_groups=groups))
    return recipe


def _anchor(pattern: str, prefix: str) -> str:
    """``re:.*q_proj$`` -> ``re:^model\\.language_model\\..*q_proj$``: those layers of the language model."""
    body = pattern.removeprefix("re:") if pattern.startswith("re:") else rf".*{re.escape(pattern)}$"
    return f"re:^{re.escape(prefix)}\\.{body.removeprefix('^')}"


def recipe_params(precision: str, recipe: list, group_size: int) -> dict[str, Any]:
    """MLflow params of the recipe: scheme, group size, and each modifier's knobs as it ran."""
    bits, act_bits, methods = SCHEMES[precision]
    params: dict[str, Any] = {
        "ptq_method": "+".join(methods),
        "ptq_scheme": f"W{bits}A{act_bits}",
        "ptq_group_size": group_size if act_bits == 16 else "per-channel",
    }
    for modifier in recipe:
        method = type(modifier).__name__.removesuffix("Modifier")
        for knob in KNOBS.get(method, ()):
            value = getattr(modifier, knob, None)
            params[f"{method.lower()}_{knob}"] = str(getattr(value, "value", value))
    return params


def llmcompressor_export(
    model: nn.Module,
    processor: Any,
    precision: str,
    names: Sequence[str],
    prefix: str,
    group_size: int,
    calibration_inputs: list[dict[str, torch.Tensor]],
    out_dir: Path,
    *,
    device: torch.device,
) -> PtqExport:
    """Quantize the linears ``names`` (the language role, under ``prefix``) and save the export.

    ``calibration_inputs`` are processor outputs, one image-prompt pair each, fed one per batch (their
    lengths differ). ``model`` is modified in place (fake-quantized, then compressed for saving):
    reload the export rather than evaluating ``model`` afterwards.
    """
    import llmcompressor
    from llmcompressor import oneshot
    from torch.utils.data import DataLoader

    recipe = build_recipe(precision, names, prefix, group_size, model)
    memory = MemoryTracker(device)
    started = time.perf_counter()
    with _no_pinning_without_cuda():
        oneshot(
            model=model,
            processor=processor,
            recipe=recipe,
            dataset=DataLoader(calibration_inputs, batch_size=None),  # batch_size=None: each dict as it is
            num_calibration_samples=len(calibration_inputs),
        )
    quantize_s = time.perf_counter() - started
    reading = memory.read()
    model.save_pretrained(out_dir, save_compressed=True)  # compressed-tensors: packed weights + config
    processor.save_pretrained(out_dir)
    export_mib = sum(p.stat().st_size for p in Path(out_dir).glob("*.safetensors")) / 2**20
    return PtqExport(
        checkpoint_dir=out_dir,
        quantize_s=quantize_s,
        memory=reading,
        export_mib=export_mib,
        params={
            **recipe_params(precision, recipe, group_size),
            "ptq_format": "compressed-tensors",
            "llmcompressor_version": llmcompressor.__version__,
        },
    )


@contextlib.contextmanager
def _no_pinning_without_cuda() -> Iterator[None]:
    """llm-compressor 0.14's AWQ pins its cached activations (``IntermediatesCache.pin_memory``) to speed
    up copies to a GPU, which raises "Found no NVIDIA driver" on a machine without CUDA; pinning buys
    nothing there, so it is skipped."""
    if torch.cuda.is_available():
        yield
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    with mock.patch.object(IntermediatesCache, "pin_memory", lambda *args, **kwargs: None):
        yield


def recompress(model: nn.Module) -> bool:
    """Compress a decompressed compressed-tensors model again (before saving it); False when ``model``
    has no compressed-tensors quantizer or no decompressed layer. The dense weights are replaced by the
    packed ones: call it only when the model is not used again (the run's checkpoint stage)."""
    compressor = getattr(getattr(model, "hf_quantizer", None), "compressor", None)
    decompressed = any(
        str(getattr(m, "quantization_status", "")).endswith("DECOMPRESSED") for m in model.modules()
    )
    if compressor is None or not decompressed:
        return False
    compressor.compress_model(model)
    return True


def decompress(model: nn.Module) -> float | None:
    """Decompress a compressed-tensors model loaded by transformers to the dense weights it runs with.

    Returns the seconds it took, or None when ``model`` holds no compressed layers (nothing to do).
    compressed-tensors would do the same on the first forward (a pre-hook it registers); doing it here
    puts the time outside every measured pass and lets the audit see what runs.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    compressor = getattr(quantizer, "compressor", None)
    if compressor is None or not hasattr(model, "ct_decompress_hook"):
        return None
    started = time.perf_counter()
    compressor.decompress_model(model)
    return time.perf_counter() - started
