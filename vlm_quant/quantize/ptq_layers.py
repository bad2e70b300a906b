"""Layers written by post-training-quantization libraries, as the audit sees them.

Two storage shapes reach us through ``from_pretrained``:

* GPTQ-style packed linears (AutoRound's and gptqmodel's ``QuantLinear``, AWQ's ``WQLinear``): no
  ``weight`` parameter; int32 ``qweight`` holding ``32 / bits`` weights per element, ``qzeros`` and
  ``scales`` per group, all registered as buffers.
* compressed-tensors linears (llm-compressor's W8A8, W4A16, FP8 checkpoints): an ``nn.Linear`` whose
  ``quantization_scheme`` says the weight and activation formats, with ``weight_packed`` (packed int)
  or an int8/fp8 ``weight`` plus ``weight_scale`` parameters.

``ptq_precision`` names what a layer holds (``ar-w4``, ``gptq-w4``, ``awq-w4``, ``ct-w4a16``,
``ct-w8a8``, ``ct-fp8``); ``ptq_tensors`` lists the tensors holding its bytes, buffers included.
A compressed-tensors layer that was decompressed (transformers does so on the first forward, and
``llmcompressor_backend.decompress`` right after loading) holds a dense floating-point ``weight``
carrying the quantized values: its name ends in ``-dense`` (``ct-w4a16-dense``), because that dense
matrix is what the matmul reads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vlm_quant.models.families import is_packed_linear

_PACKED_BUFFERS = ("qweight", "qzeros", "scales", "g_idx", "bias")


def ptq_precision(module: nn.Module) -> str | None:
    """The short precision name of a PTQ library's layer, None for any other module."""
    if is_packed_linear(module):
        library = type(module).__module__.split(".")[0]
        prefix = "ar" if library.startswith("auto_round") else "awq" if "awq" in library else "gptq"
        return f"{prefix}-w{_bits(module)}"
    scheme = getattr(module, "quantization_scheme", None)
    weights = getattr(scheme, "weights", None)
    if isinstance(module, nn.Linear) and weights is not None:
        if str(getattr(weights, "type", "int")).endswith("float"):
            return f"ct-fp{weights.num_bits}"
        activations = getattr(scheme, "input_activations", None)
        name = f"ct-w{weights.num_bits}a{activations.num_bits if activations is not None else 16}"
        return f"{name}-dense" if _is_dense(module) else name
    return None


def ptq_weight_type(module: nn.Module) -> str:
    """The full storage type, e.g. ``auto_round_extension.QuantLinear(int32 packed, 4-bit, group 128)``."""
    if is_packed_linear(module):
        group = getattr(module, "group_size", None)
        return (
            f"{type(module).__module__.split('.')[0]}.{type(module).__name__}"
            f"(int32 packed, {_bits(module)}-bit, group {group})"
        )
    packed = "weight_packed" if hasattr(module, "weight_packed") else "weight"
    dtype = str(getattr(module, packed).dtype).removeprefix("torch.")
    if _is_dense(module):
        bits = module.quantization_scheme.weights.num_bits
        return f"compressed_tensors.{type(module).__name__}(weight: {dtype}, dense, decompressed int{bits})"
    return f"compressed_tensors.{type(module).__name__}({packed}: {dtype})"


def _is_dense(module: nn.Module) -> bool:
    """A compressed-tensors layer whose weight is a dense floating-point matrix again (decompressed)."""
    weight = getattr(module, "weight", None)
    status = str(getattr(module, "quantization_status", ""))
    return isinstance(weight, torch.Tensor) and weight.is_floating_point() and status.endswith("DECOMPRESSED")


def ptq_logical_params(module: nn.Module) -> int:
    """Weights the layer computes with (in x out, plus bias), not the packed element count."""
    in_features = getattr(module, "in_features", None) or getattr(module, "infeatures", None)
    out_features = getattr(module, "out_features", None) or getattr(module, "outfeatures", None)
    shape = getattr(module, "weight_shape", None)
    if isinstance(shape, torch.Tensor) and shape.numel() == 2:
        out_features, in_features = (int(v) for v in shape.tolist())
    bias = getattr(module, "bias", None)
    n_bias = int(bias.numel()) if isinstance(bias, torch.Tensor) else 0
    return int(in_features) * int(out_features) + n_bias


def ptq_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of every tensor holding the layer's bytes: parameters and the packed buffers."""
    tensors: dict[str, Any] = dict(module.named_parameters(recurse=False))
    for name in _PACKED_BUFFERS:
        value = getattr(module, name, None)
        if isinstance(value, torch.Tensor) and name not in tensors:
            tensors[name] = value
    return list(tensors.items())


def _bits(module: nn.Module) -> int:
    bits = getattr(module, "bits", None) or getattr(module, "w_bit", None)
    if bits is None:  # infer from packing: int32 rows hold 32 / bits weights
        bits = 32 * module.qweight.shape[0] // int(getattr(module, "in_features", module.qweight.shape[0]))
    return int(bits)
