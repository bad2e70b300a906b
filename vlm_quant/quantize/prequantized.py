"""quant=prequantized: a published quantized checkpoint, loaded by transformers' own quantizer as it is.

The checkpoint's ``config.json`` carries a ``quantization_config`` (compressed-tensors W8A8 / W4A16 /
FP8 from llm-compressor, GPTQ, AWQ, AutoRound, bitsandbytes, torchao ...); ``from_pretrained`` hands
it to the matching quantizer, which needs that method's package. Nothing is re-quantized: the audit
after loading says what each role really holds. Checked before any weight is downloaded: the config
must have a quantization_config and the package its method needs must import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from vlm_quant.errors import UserError

# quant_method -> (import name, pip requirement) of the package transformers' quantizer needs.
METHOD_PACKAGES: dict[str, tuple[str, str]] = {
    "compressed-tensors": ("compressed_tensors", "compressed-tensors"),
    "gptq": ("gptqmodel", "gptqmodel"),
    "awq": ("gptqmodel", "gptqmodel"),
    "auto-round": ("auto_round", "auto-round"),
    "bitsandbytes": ("bitsandbytes", "bitsandbytes"),
    "torchao": ("torchao", "torchao"),
    "fp8": ("torch", "torch"),
}


@dataclass(frozen=True)
class PrequantizedCheckpoint:
    """What the checkpoint's quantization_config says (logged as params)."""

    method: str
    details: dict[str, Any]

    def to_params(self) -> dict[str, Any]:
        return {
            "prequantized_method": self.method,
            **{f"prequantized_{k}": v for k, v in self.details.items()},
        }


def check_prequantized(config: Any, *, model: str, weights: str) -> PrequantizedCheckpoint:
    """The checkpoint's quantization method, or UserError naming what is missing."""
    if weights == "random":
        raise UserError(
            "quant=prequantized loads a published quantized checkpoint; weights=random has none. "
            "Use weights=pretrained with a quantized checkpoint id."
        )
    qconfig = getattr(config, "quantization_config", None)
    if qconfig is None:
        raise UserError(
            f"quant=prequantized needs a checkpoint whose config.json has a quantization_config; {model} "
            f"has none (it is not quantized). Quantize it here with another preset (e.g. quant=int8)."
        )
    qconfig = qconfig if isinstance(qconfig, dict) else qconfig.to_dict()
    method = str(qconfig.get("quant_method", "unknown"))
    module, pip = METHOD_PACKAGES.get(method, (None, None))
    if module is None:
        raise UserError(
            f"{model}'s quantization_config uses quant_method={method!r}, which vlm-quant does not know; "
            f"known: {', '.join(METHOD_PACKAGES)}."
        )
    try:
        importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"{model} is quantized with {method}, whose transformers quantizer needs the package "
            f"{pip!r}, which is not installed: pip install {pip}"
        ) from None
    keys = ("format", "bits", "group_size", "quantization_status", "weight_block_size")
    details = {k: _flat(qconfig[k]) for k in keys if qconfig.get(k) is not None}
    return PrequantizedCheckpoint(method, details)


def _flat(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) else str(value)
