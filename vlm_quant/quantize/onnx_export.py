"""Export a VLM's vision tower to ONNX at the processor's real input shape, cached on disk.

The tower is exported with ``torch.onnx.export(dynamo=True)`` (``torch.export`` + onnxscript) for one
image (batch 1) at the shape the processor really produces: the inputs are caught by a forward
pre-hook on the vision module while the model runs one real request, so the exported graph sees
exactly the pixel tensor and patch mask generation will feed it. Images of a batch (or the tiles of a
split image) are run one after another by the ORT module; the tower attends within an image only, so
that is exact.

Exports are cached under ``$VLMQ_ONNX_CACHE`` (default ``$XDG_CACHE_HOME/vlm-quant/onnx``, beside the
random weights) by a key of the model (id, revision or weights source), the input shape, the opset, the
precision and, for static quantization, the calibration ids and method: a second run of the same
configuration reuses the file.
Files are single ``.onnx`` files (weights inline; the SmolVLM tower is ~350 MB, under protobuf's 2 GB).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlm_quant.models.random_weights import default_cache_root

OPSET = 18
SUPPORTED_FAMILIES = ("idefics3",)  # vision tower called with (pixel_values, patch_attention_mask)


class _Caught(Exception):
    """Raised by the capture hook to stop the forward pass once the vision inputs are known."""


@dataclass(frozen=True)
class VisionInputs:
    """The vision module's inputs for the images of one request: (images, ...) tensors, by name."""

    tensors: dict[str, torch.Tensor]

    def per_image(self) -> list[dict[str, torch.Tensor]]:
        """Batch-1 slices, one per image (or tile), as the exported graph takes them."""
        n = next(iter(self.tensors.values())).shape[0]
        return [{k: v[i : i + 1].detach().cpu() for k, v in self.tensors.items()} for i in range(n)]

    def shape_key(self) -> str:
        return ",".join(
            f"{k}={list(v.shape[1:])}:{str(v.dtype).removeprefix('torch.')}" for k, v in self.tensors.items()
        )


@torch.inference_mode()
def capture_vision_inputs(model: nn.Module, vision_path: str, model_inputs: dict[str, Any]) -> VisionInputs:
    """The keyword inputs the vision module receives when the model runs ``model_inputs`` (one request)."""
    caught: dict[str, torch.Tensor] = {}

    def hook(module, args, kwargs):
        names = ("pixel_values", "patch_attention_mask")
        for name, value in zip(names, args):
            caught[name] = value
        caught.update({k: v for k, v in kwargs.items() if k in names and isinstance(v, torch.Tensor)})
        raise _Caught

    handle = model.get_submodule(vision_path).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(**model_inputs, use_cache=False)
    except _Caught:
        pass
    finally:
        handle.remove()
    if "pixel_values" not in caught:
        raise RuntimeError(f"the model never called its vision module {vision_path!r} on this request")
    return VisionInputs(caught)


class _ExportWrapper(nn.Module):
    """The vision tower as a function of named tensors returning its last hidden state."""

    def __init__(self, vision: nn.Module) -> None:
        super().__init__()
        self.vision = vision

    def forward(self, pixel_values: torch.Tensor, patch_attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.vision(pixel_values=pixel_values, patch_attention_mask=patch_attention_mask)
        return out.last_hidden_state


def cache_root() -> Path:
    return Path(os.environ.get("VLMQ_ONNX_CACHE") or default_cache_root().parent / "onnx")


def cache_path(parts: dict[str, Any]) -> Path:
    """``<cache>/<sha>/vision.onnx`` for the key ``parts`` (also written beside it as key.json)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    return cache_root() / digest / "vision.onnx"


def _write_key(path: Path, parts: dict[str, Any]) -> None:
    (path.parent / "key.json").write_text(json.dumps(parts, sort_keys=True, indent=2, default=str))


def export_vision(
    vision: nn.Module, example: dict[str, torch.Tensor], path: Path, key: dict[str, Any]
) -> Path:
    """Export ``vision`` (float32, CPU copy not needed: export traces on its device) for ``example``.

    Returns ``path``; when it already exists (same cache key) nothing is exported again.
    """
    if path.is_file():
        return path
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _ExportWrapper(vision).eval()
    tmp = path.with_suffix(f".{os.getpid()}.tmp.onnx")  # concurrent runs never share a temp file
    dtype = next(vision.parameters()).dtype
    device = next(vision.parameters()).device
    args = tuple(
        example[name].to(device=device, dtype=dtype if example[name].is_floating_point() else None)
        for name in ("pixel_values", "patch_attention_mask")
    )
    if dtype != torch.float32:  # ONNX Runtime's CPU kernels and quantizer want a float32 graph
        wrapper = wrapper.float()
        args = (args[0].float(), args[1])
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            args,
            dynamo=True,
            opset_version=OPSET,
            input_names=["pixel_values", "patch_attention_mask"],
            output_names=["last_hidden_state"],
            verbose=False,
        )
    program.save(str(tmp), external_data=True)
    # One self-contained file: the quantizer and the size on disk then see exactly one file.
    onnx.save(onnx.load(str(tmp)), str(path))
    tmp.unlink()
    Path(str(tmp) + ".data").unlink(missing_ok=True)
    _write_key(path, key)
    if dtype != torch.float32:
        vision.to(dtype)
    return path
