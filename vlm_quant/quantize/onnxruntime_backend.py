"""ONNX Runtime for the vision role: the tower exported to ONNX, kept float32 or quantized to INT8,
run by an ``InferenceSession`` that replaces the torch module behind the same call signature.

Precisions (role ``vision`` only):

* ``ort-fp32``: the exported float32 graph as is (the ONNX Runtime baseline: graph optimisations, no
  quantization);
* ``ort-int8``: dynamic quantization (``quantize_dynamic``): int8 weights with one scale per output
  channel, activations quantized per call from their observed range (``DynamicQuantizeLinear`` +
  ``MatMulInteger``);
* ``ort-int8-static``: static QDQ (``quantize_static``, ``QuantFormat.QDQ``, S8S8: int8 activations and
  int8 weights, per channel), activation ranges calibrated on a seeded set of images disjoint from the
  evaluated ids (method and count logged). Only MatMul/Gemm/Conv are quantized: LayerNorm and Softmax
  stay float32 (quantizing them costs accuracy and buys nothing on the CPU EP).

Generation, the projector and the language model are unchanged torch modules. Execution providers: CPU
here; ``CUDAExecutionProvider``/``TensorrtExecutionProvider`` with the ``onnxruntime-gpu`` package
(``ort_provider=cuda|tensorrt``); asking for them without it is a UserError naming the package.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vlm_quant.errors import UserError
from vlm_quant.quantize import onnx_export

PRECISIONS = ("ort-fp32", "ort-int8", "ort-int8-static")
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
QUANTIZERS = {
    "ort-fp32": "onnxruntime (float32, no quantization)",
    "ort-int8": "onnxruntime.quantization.quantize_dynamic",
    "ort-int8-static": "onnxruntime.quantization.quantize_static(QDQ, S8S8)",
}


@dataclass(frozen=True)
class OrtSettings:
    """Everything the ORT backend needs beyond the model: example and calibration inputs, cache key."""

    example: onnx_export.VisionInputs  # the processor's real input, as the vision module receives it
    calibration: tuple[onnx_export.VisionInputs, ...] = ()
    calibration_ids: tuple[Any, ...] = ()
    calibration_method: str = "minmax"
    provider: str = "auto"  # auto / cpu / cuda / tensorrt
    model_key: dict[str, Any] = field(default_factory=dict)  # model id, revision or weights source


def resolve_provider(requested: str, device: torch.device) -> str:
    """The execution provider name to use; UserError when the requested one is not installed."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested == "auto":
        wanted = "cuda" if device.type == "cuda" and PROVIDERS["cuda"] in available else "cpu"
    else:
        wanted = requested
    name = PROVIDERS[wanted]
    if name not in available:
        raise UserError(
            f"ort_provider={requested} needs ONNX Runtime's {name}, which this onnxruntime build lacks "
            f"(available: {', '.join(available)}). Install the GPU build (pip uninstall onnxruntime && "
            f"pip install onnxruntime-gpu), or use ort_provider=cpu."
        )
    return name


def check_runnable(roles: dict[str, str], provider: str, device: torch.device) -> None:
    """UserError unless every ort-* precision is on the vision role and onnxruntime + onnx import."""
    wrong = {r: p for r, p in roles.items() if r != "vision"}
    if wrong:
        raise UserError(
            f"ONNX Runtime precisions apply to the vision role only (got {wrong}); "
            "e.g. -P precision=vision=ort-int8."
        )
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise UserError(
            f"the plan vision={roles['vision']} needs onnxruntime and onnx ({error}). "
            "Install them: pip install 'vlm-quant[onnx]'."
        ) from None
    resolve_provider(provider, device)


class OrtVisionModule(nn.Module):
    """An ONNX Runtime session standing in for the vision tower: same call, same output type.

    Holds no torch parameters; ``onnx_summary`` tells the audit what ran (file, bytes per dtype,
    execution provider).
    """

    def __init__(
        self,
        session: Any,
        path: Path,
        precision: str,
        dtype: torch.dtype,
        device: torch.device,
        config: Any,
        summary: dict[str, Any],
    ) -> None:
        super().__init__()
        self.session, self.onnx_path, self.precision = session, Path(path), precision
        self.out_dtype, self.out_device, self.config = dtype, device, config
        self.onnx_summary = summary
        self.input_names = [i.name for i in session.get_inputs()]

    def forward(self, pixel_values: torch.Tensor, patch_attention_mask: torch.Tensor | None = None, **_: Any):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        if patch_attention_mask is None:
            patch = self.config.patch_size
            n, _, h, w = pixel_values.shape
            patch_attention_mask = torch.ones((n, h // patch, w // patch), dtype=torch.bool)
        pixels = pixel_values.detach().to("cpu", torch.float32).numpy()
        mask = patch_attention_mask.detach().to("cpu", torch.bool).numpy()
        rows = [
            self.session.run(
                None, {"pixel_values": pixels[i : i + 1], "patch_attention_mask": mask[i : i + 1]}
            )[0]
            for i in range(pixels.shape[0])
        ]
        hidden = torch.from_numpy(np.concatenate(rows, axis=0)).to(self.out_device, self.out_dtype)
        return BaseModelOutputWithPooling(last_hidden_state=hidden)


def onnx_bytes_by_dtype(path: Path) -> tuple[dict[str, int], int]:
    """(bytes of the graph's initializers per element type, their total element count)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    by_dtype: Counter = Counter()
    elements = 0
    for tensor in model.graph.initializer:
        numel = int(np.prod(tensor.dims)) if tensor.dims else 1
        np_dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
        by_dtype[str(np.dtype(np_dtype))] += numel * np.dtype(np_dtype).itemsize
        elements += numel
    return dict(sorted(by_dtype.items())), elements


class _Reader:
    """onnxruntime CalibrationDataReader over the calibration images' batch-1 inputs."""

    def __init__(self, calibration: tuple[onnx_export.VisionInputs, ...]) -> None:
        feeds = [row for inputs in calibration for row in inputs.per_image()]
        self._feeds = iter(
            [
                {
                    "pixel_values": f["pixel_values"].float().numpy(),
                    "patch_attention_mask": f["patch_attention_mask"].bool().numpy(),
                }
                for f in feeds
            ]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantized_file(precision: str, fp32: Path, settings: OrtSettings, key: dict[str, Any]) -> Path:
    """The ONNX file of ``precision`` made from the float32 export (cached by ``key``)."""
    if precision == "ort-fp32":
        return fp32
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    path = onnx_export.cache_path(key)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.onnx")  # concurrent runs never share a temp file
    if precision == "ort-int8":
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    else:
        if not settings.calibration:
            raise UserError("ort-int8-static needs calibration images (ort_calibration_samples >= 1).")
        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[settings.calibration_method]
        quantize_static(
            str(fp32),
            str(tmp),
            _Reader(settings.calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=method,
            op_types_to_quantize=["MatMul", "Gemm", "Conv"],
        )
    tmp.rename(path)
    onnx_export._write_key(path, key)
    return path


def apply(
    model: nn.Module,
    vision_path: str,
    precision: str,
    settings: OrtSettings,
    device: torch.device,
    dtype: torch.dtype,
) -> dict[str, Any]:
    """Export (cached), quantize (cached), open a session and swap it in for ``vision_path``.

    Returns the role's settings as MLflow params (file, provider, calibration, export time).
    """
    import onnxruntime as ort

    started = time.perf_counter()
    vision = model.get_submodule(vision_path)
    shape = settings.example.shape_key()
    base_key = {**settings.model_key, "shape": shape, "opset": onnx_export.OPSET, "torch": torch.__version__}
    fp32 = onnx_export.export_vision(
        vision,
        settings.example.per_image()[0],
        onnx_export.cache_path({**base_key, "precision": "ort-fp32"}),
        {**base_key, "precision": "ort-fp32"},
    )
    key = {**base_key, "precision": precision, "onnxruntime": ort.__version__}
    if precision == "ort-int8-static":
        key.update(
            calibration_ids=list(settings.calibration_ids), calibration_method=settings.calibration_method
        )
    path = quantized_file(precision, fp32, settings, key)
    provider = resolve_provider(settings.provider, device)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=[provider])
    bytes_by_dtype, elements = onnx_bytes_by_dtype(path)
    summary = {
        "file": str(path),
        "file_bytes": path.stat().st_size,
        "bytes_by_dtype": bytes_by_dtype,
        "elements": elements,
        "execution_provider": session.get_providers()[0],
        "precision": precision,
        "opset": onnx_export.OPSET,
        "input_shape": shape,
    }
    config = getattr(vision, "config", None)
    _swap(model, vision_path, OrtVisionModule(session, path, precision, dtype, device, config, summary))
    params = {
        "ort_execution_provider": summary["execution_provider"],
        "ort_opset": onnx_export.OPSET,
        "ort_input_shape": shape,
        "ort_onnx_file_mib": round(summary["file_bytes"] / 2**20, 3),
        "ort_prepare_s": round(time.perf_counter() - started, 3),
    }
    if precision == "ort-int8-static":
        params.update(
            ort_calibration_method=settings.calibration_method,
            ort_calibration_images=len(settings.calibration_ids),
            ort_calibration_ids=",".join(map(str, settings.calibration_ids)),
        )
    return params


def _swap(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, name, module)


def ort_modules(model: nn.Module) -> dict[str, OrtVisionModule]:
    """Every ORT stand-in of ``model`` by module path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, OrtVisionModule)}


def onnx_files_mib(model: nn.Module) -> float:
    """Size on disk of the ONNX files the model runs (MiB); 0.0 when it runs none."""
    return sum(m.onnx_path.stat().st_size for m in ort_modules(model).values()) / 2**20
