"""Save a model as loaded (at its precision) and measure its size on disk, honestly.

How each storage serialises (transformers 5.23, bitsandbytes 0.50, torchao 0.18):

* plain tensors and bitsandbytes layers: ``save_pretrained`` (safetensors). bitsandbytes' own
  ``_save_to_state_dict`` writes the int8 weight with its fp32 row scales (``SCB``) and a format byte,
  and for NF4 the packed uint8 weight with ``absmax``, ``quant_map`` (+ ``nested_*`` under double
  quantization) and a packed ``quant_state`` blob: int8 layers take ~1/2 of their fp16 size, NF4 ~1/4.
* compressed-tensors layers (llm-compressor exports, published checkpoints) run decompressed (dense
  floats; ``quantize/llmcompressor_backend.py``): they are compressed again with the checkpoint's own
  compressor before ``save_pretrained``, so the files hold the packed format the library wrote.
* torchao tensor subclasses (``Int8Tensor``): ``save_pretrained`` fails on them without a torchao
  ``hf_quantizer`` (safetensors: "Attempted to access the data pointer on an invalid python storage"),
  so we flatten them with torchao's ``flatten_tensor_state_dict`` (the format transformers' torchao
  integration writes: ``<module>._weight_qdata``, ``._weight_scale``, ... plus JSON metadata) into
  ``model.safetensors``; if that is unavailable, ``torch.save`` of the state dict (``model.pt``).

Then we check the result: the bytes of the tensors in the weight files must match the bytes the model
holds in memory (same tensors, deduplicated). If they do not (a serialiser that dequantized, dropped
or duplicated weights), or nothing could be written, ``weights_mib`` is None and ``reason`` says why:
never a wrong number. Quantized checkpoints also get ``quantization_manifest.json`` (which module holds
which quantized type): their ``config.json`` carries no ``quantization_config``, because the plan was
applied in place, so ``from_pretrained`` alone cannot rebuild them. ``recipe`` (when given) goes to
``vlm_quant_model.json``: the base model, revision, seed and plan that `logged_model.load_logged_model`
re-applies to rebuild the model at this precision, then checks against these weight files.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
MANIFEST = "quantization_manifest.json"
RECIPE = "vlm_quant_model.json"  # how to rebuild this checkpoint (see logged_model.py)
# Allowed difference between tensor bytes on disk and in the state dict. Both hold the same tensors
# (bitsandbytes' scales, quant_state blobs and format bytes are state-dict entries), and every preset
# on every tiny family matches to the byte; the slack only covers a serialiser that leaves out a few
# small entries (``_keys_to_ignore_on_save``). A dequantized or duplicated matrix is far beyond it.
TOLERANCE = 0.01
TOLERANCE_BYTES = 4096


@dataclass(frozen=True)
class SavedCheckpoint:
    """Where the checkpoint went and how big its weight files are (MiB = 2**20 bytes).

    ``weights_mib`` is None when the size would not be the model's size at its precision; ``reason``
    then says why. ``bytes_by_dtype`` are the tensor bytes in the weight files per stored dtype.
    """

    path: Path
    weights_mib: float | None
    total_mib: float
    reason: str | None = None
    writer: str = "save_pretrained"
    bytes_by_dtype: dict[str, int] = field(default_factory=dict)


def directory_mib(path: Path, suffixes: tuple[str, ...] | None = None) -> float:
    files = [p for p in path.rglob("*") if p.is_file() and (suffixes is None or p.suffix in suffixes)]
    return sum(p.stat().st_size for p in files) / 2**20


def save_checkpoint(
    model: Any, processor: Any, out_dir: Path, recipe: dict[str, Any] | None = None
) -> SavedCheckpoint:
    """Write model + processor into ``out_dir``; the size counts the weight files only."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if recipe is not None:
        (out_dir / RECIPE).write_text(json.dumps(recipe, indent=2, default=str))
    processor.save_pretrained(out_dir)
    try:
        writer = _write_weights(model, out_dir)
    except Exception as error:  # noqa: BLE001 - any serialiser failure is reported, not raised
        reason = f"the model could not be serialised at its precision: {type(error).__name__}: {error}"
        return SavedCheckpoint(out_dir, None, directory_mib(out_dir), reason, "none")
    _write_manifest(model, out_dir)
    on_disk = _tensor_bytes_on_disk(out_dir)
    in_memory = _tensor_bytes_in_memory(model)
    total_on_disk = sum(on_disk.values())
    reason = None
    if abs(total_on_disk - in_memory) > max(TOLERANCE * in_memory, TOLERANCE_BYTES):
        reason = (
            f"the weight files hold {total_on_disk / 2**20:.2f} MiB of tensors but the model holds "
            f"{in_memory / 2**20:.2f} MiB as stored in memory: {writer} did not keep the loaded precision"
        )
    weights_mib = None if reason else directory_mib(out_dir, WEIGHT_SUFFIXES)
    return SavedCheckpoint(out_dir, weights_mib, directory_mib(out_dir), reason, writer, on_disk)


# --- writing ------------------------------------------------------------------------------------


def _write_weights(model: Any, out_dir: Path) -> str:
    """Write the weights; returns the writer used."""
    from vlm_quant.quantize.llmcompressor_backend import recompress

    if recompress(model):  # decompressed compressed-tensors layers: saved packed, as the library wrote them
        model.save_pretrained(out_dir)
        return "compressed-tensors compress_model+save_pretrained"
    if not _has_tensor_subclasses(model):
        model.save_pretrained(out_dir)
        return "save_pretrained"
    _save_configs(model, out_dir)
    state = _deduplicated_state_dict(model)
    try:
        from safetensors.torch import save_file
        from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

        tensors, metadata = flatten_tensor_state_dict(state)
        tensors = {name: tensor.contiguous() for name, tensor in tensors.items()}
        save_file(tensors, str(out_dir / "model.safetensors"), metadata=metadata)
        return "torchao.flatten_tensor_state_dict+safetensors"
    except Exception:  # noqa: BLE001 - older torchao or an unsupported subclass: fall back to pickle
        (out_dir / "model.safetensors").unlink(missing_ok=True)
        torch.save(state, out_dir / "model.pt")
        return "torch.save"


def _save_configs(model: Any, out_dir: Path) -> None:
    model.config.save_pretrained(out_dir)
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        generation_config.save_pretrained(out_dir)


def _deduplicated_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """state_dict without second names of the same tensor (a tied lm_head), which safetensors refuses."""
    seen: set[int] = set()
    state = {}
    for name, tensor in model.state_dict(keep_vars=True).items():  # keep_vars: tied = same object
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        state[name] = tensor.detach()
    return state


def _has_tensor_subclasses(model: Any) -> bool:
    return any(_is_subclass(p) for p in model.parameters())


def _is_subclass(tensor: torch.Tensor) -> bool:
    return hasattr(tensor, "__tensor_flatten__") and type(tensor).__name__ not in ("Parameter", "Tensor")


def _write_manifest(model: Any, out_dir: Path) -> None:
    from vlm_quant.quantize.audit import storage_type

    quantized = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor):
            full, short = storage_type(weight, module)
            if not full.startswith("torch."):
                quantized[name] = {"type": full, "precision": short, "module": type(module).__name__}
    if quantized:
        note = (
            "quantized in place by vlm-quant after loading at 16 bits; config.json has no "
            "quantization_config, so rebuild these modules before loading the weights"
        )
        (out_dir / MANIFEST).write_text(json.dumps({"note": note, "modules": quantized}, indent=2))


# --- measuring ----------------------------------------------------------------------------------


def _tensor_bytes_in_memory(model: Any) -> int:
    """Bytes of the state dict's tensors as stored (subclasses through their inner tensors)."""
    total = 0
    for tensor in _deduplicated_state_dict(model).values():
        total += _stored_bytes(tensor)
    return total


def _stored_bytes(tensor: torch.Tensor) -> int:
    if _is_subclass(tensor):
        names, _ = tensor.__tensor_flatten__()
        return sum(_stored_bytes(getattr(tensor, n)) for n in names if getattr(tensor, n, None) is not None)
    return int(tensor.numel() * tensor.element_size())


def _tensor_bytes_on_disk(out_dir: Path) -> dict[str, int]:
    """Tensor bytes per dtype in the weight files: safetensors headers, or the loaded pickle."""
    by_dtype: dict[str, int] = {}
    for path in sorted(out_dir.rglob("*")):
        if path.suffix == ".safetensors":
            for dtype, size in _safetensors_sizes(path):
                by_dtype[dtype] = by_dtype.get(dtype, 0) + size
        elif path.suffix in (".bin", ".pt", ".pth"):
            state = torch.load(path, map_location="cpu", weights_only=False)
            for tensor in state.values():
                key = (
                    str(tensor.dtype).removeprefix("torch.")
                    if not _is_subclass(tensor)
                    else type(tensor).__name__
                )
                by_dtype[key] = by_dtype.get(key, 0) + _stored_bytes(tensor)
    return by_dtype


def _safetensors_sizes(path: Path) -> list[tuple[str, int]]:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return [
        (v["dtype"], v["data_offsets"][1] - v["data_offsets"][0])
        for k, v in header.items()
        if k != "__metadata__"
    ]
