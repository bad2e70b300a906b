"""bitsandbytes: swap named ``nn.Linear`` modules for ``Linear8bitLt`` (LLM.int8()) or ``Linear4bit`` (NF4).

Each new layer is built from the original layer's weights, on the device those weights are on, and
quantized there with bitsandbytes' public functions (``int8_vectorwise_quant``, ``quantize_4bit``): the
same arithmetic ``Int8Params``/``Params4bit`` perform on ``.to(device)``, without bouncing a GPU
weight through host memory (``Int8Params.to`` only quantizes a weight that starts on the CPU).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)

QUANTIZERS = {"int8": "bitsandbytes.Linear8bitLt", "nf4": "bitsandbytes.Linear4bit"}


@dataclass(frozen=True)
class BnbSettings:
    """Knobs of the bitsandbytes layers (logged with the run)."""

    int8_threshold: float = 6.0  # LLM.int8() outlier threshold on activations; 0 disables decomposition
    compute_dtype: torch.dtype = torch.float16  # NF4: dtype the dequantized weight is multiplied in
    double_quant: bool = True  # NF4: quantize the absmax constants too (bnb "compress_statistics")


def quantize_modules(model: nn.Module, names: list[str], precision: str, settings: BnbSettings) -> None:
    """Replace each module in ``names`` (exact paths of ``nn.Linear`` modules) by its quantized twin."""
    build = {"int8": int8_linear, "nf4": nf4_linear}[precision]
    if precision == "int8":
        _quiet_int8_cast_warning()
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        old = getattr(parent, child)
        new = build(old, settings)
        new.train(old.training)
        _keep_accelerate_hook(old, new)
        setattr(parent, child, new)


def int8_linear(old: nn.Linear, settings: BnbSettings) -> nn.Module:
    """LLM.int8(): row-wise int8 weights + fp32 row scales (SCB); activation outliers above the
    threshold run in 16-bit."""
    import bitsandbytes as bnb

    weight = old.weight.detach()
    int8_rows, row_scales, _ = bnb.functional.int8_vectorwise_quant(weight.to(torch.float16))
    new = bnb.nn.Linear8bitLt(
        old.in_features,
        old.out_features,
        bias=old.bias is not None,
        has_fp16_weights=False,
        threshold=settings.int8_threshold,
        device="meta",
    )
    new.weight = bnb.nn.Int8Params(
        int8_rows, requires_grad=False, has_fp16_weights=False, CB=int8_rows, SCB=row_scales
    )
    _copy_bias(old, new)
    return new


def nf4_linear(old: nn.Linear, settings: BnbSettings) -> nn.Module:
    """NF4: 4-bit NormalFloat codes packed two per byte, one absmax per block of 64 weights."""
    import bitsandbytes as bnb

    weight = old.weight.detach().contiguous()
    packed, quant_state = bnb.functional.quantize_4bit(
        weight, compress_statistics=settings.double_quant, quant_type="nf4", quant_storage=torch.uint8
    )
    new = bnb.nn.Linear4bit(
        old.in_features,
        old.out_features,
        bias=old.bias is not None,
        compute_dtype=settings.compute_dtype,
        compress_statistics=settings.double_quant,
        quant_type="nf4",
        quant_storage=torch.uint8,
        device="meta",
    )
    new.weight = bnb.nn.Params4bit(
        packed,
        requires_grad=False,
        quant_state=quant_state,
        blocksize=quant_state.blocksize,
        compress_statistics=settings.double_quant,
        quant_type="nf4",
        quant_storage=torch.uint8,
        module=new,
        bnb_quantized=True,
    )
    new.quant_state = quant_state
    _copy_bias(old, new)
    return new


def nf4_blocksize(model: nn.Module, names: list[str]) -> int | None:
    """The block size bitsandbytes chose (64 on CUDA and CPU today), read back from a quantized layer."""
    for name in names:
        state = getattr(model.get_submodule(name).weight, "quant_state", None)
        if state is not None:
            return int(state.blocksize)
    return None


class _DropCastWarning(logging.Filter):
    """LLM.int8() always quantizes activations from float16, so with float32 (CPU) or bfloat16 inputs
    bitsandbytes logs "inputs will be cast ... to float16" on every forward of every layer: thousands
    of identical lines per caption. The cast is by design; we say it once, when quantizing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "will be cast from" not in str(record.msg)


_CAST_FILTER = _DropCastWarning()


def _quiet_int8_cast_warning() -> None:
    bnb_logger = logging.getLogger("bitsandbytes.autograd._functions")
    if _CAST_FILTER not in bnb_logger.filters:
        bnb_logger.addFilter(_CAST_FILTER)
        log.info(
            "LLM.int8(): activations are cast to float16 for their int8 quantization (bitsandbytes design)."
        )


def _keep_accelerate_hook(old: nn.Module, new: nn.Module) -> None:
    """A model dispatched over several devices (``device_map="auto"``) moves activations with
    accelerate hooks on its modules; the swapped-in layer must keep its predecessor's hook."""
    hook = getattr(old, "_hf_hook", None)
    if hook is not None:
        from accelerate.hooks import add_hook_to_module

        add_hook_to_module(new, hook)


def _copy_bias(old: nn.Linear, new: nn.Module) -> None:
    new.bias = None if old.bias is None else nn.Parameter(old.bias.detach(), requires_grad=False)
