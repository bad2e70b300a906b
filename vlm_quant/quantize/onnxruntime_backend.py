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

Generation, the projector and the language model are unchanged torch modules, except a projector nested
in the tower (Qwen2-VL's merger), which runs inside the tower's graph, float32 (``OrtNestedStage``). The
torch tower stays referenced by the stand-in, so an input shape not seen yet can be exported at first
use (its float32 weights stay in memory beside the session). Execution providers: CPU
here; ``CUDAExecutionProvider``/``TensorrtExecutionProvider`` with the ``onnxruntime-gpu`` package
(``ort_provider=cuda|tensorrt``); asking for them without it is a UserError naming the package.
"""

from __future__ import annotations

import inspect
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


class OrtNestedStage(nn.Module):
    """A module nested in the exported tower (Qwen2-VL's ``merger``, the projector role): it runs inside
    the ONNX graph; this stand-in is called with the stage's input and returns the graph's output for it,
    so hooks on the module path (the fidelity pass) see what they saw in torch."""

    def __init__(self, summary: dict[str, Any]) -> None:
        super().__init__()
        self.onnx_summary = summary
        self._output: torch.Tensor | None = None

    def forward(self, features: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
        assert self._output is not None, "only OrtVisionModule calls this stand-in"
        output, self._output = self._output, None
        return output


class OrtVisionModule(nn.Module):
    """ONNX Runtime sessions standing in for the vision tower: same call, same output structure.

    One session per input shape key (a graph holds one shape); a shape not seen yet is exported,
    quantized and opened at first use (``graphs_exported`` counts them). Holds no torch parameters;
    ``onnx_summary`` tells the audit what ran (first graph's file, bytes per dtype, execution provider).
    """

    def __init__(
        self,
        graphs: dict[str, Any],
        build: Any,
        signature: inspect.Signature,
        structure: onnx_export.OutputStructure,
        precision: str,
        dtype: torch.dtype,
        device: torch.device,
        config: Any,
        summary: dict[str, Any],
    ) -> None:
        super().__init__()
        self.graphs, self._build, self.signature, self.structure = graphs, build, signature, structure
        self.precision, self.out_dtype, self.out_device, self.config = precision, dtype, device, config
        self.onnx_summary = summary
        self.graphs_exported = len(graphs)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model reads from its tower (Qwen2-VL casts the pixels to it)."""
        return self.out_dtype

    @property
    def device(self) -> torch.device:
        return self.out_device

    @property
    def onnx_paths(self) -> list[Path]:
        return [path for _, path in self.graphs.values()]

    @property
    def onnx_path(self) -> Path:
        return self.onnx_paths[0]

    def session_for(self, inputs: onnx_export.VisionInputs) -> Any:
        key = inputs.shape_key()
        if key not in self.graphs:  # a new input shape: export (cached on disk) and open its graph
            self.graphs[key] = self._build(inputs)
            self.graphs_exported += 1
        return self.graphs[key][0]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        inputs = onnx_export.bind_inputs(self.signature, args, kwargs)
        per_image = [self._run(part) for part in inputs.per_image()]
        columns = [
            torch.cat([torch.from_numpy(row[i]) for row in per_image]) for i in range(len(per_image[0]))
        ]
        columns = [c.to(self.out_device, self.out_dtype if c.is_floating_point() else None) for c in columns]
        n = self.structure.n_outputs
        for index, tap in enumerate(self.structure.taps):  # nested stages: show their input and output
            stage = self.get_submodule(tap)
            stage._output = columns[n + 2 * index + 1]
            columns[n + 2 * index + 1] = stage(columns[n + 2 * index])
        return self.structure.rebuild(columns[:n])

    def _run(self, inputs: onnx_export.VisionInputs) -> list[np.ndarray]:
        session = self.session_for(inputs)
        feed = {name: _numpy(inputs.tensors[name]) for name in (i.name for i in session.get_inputs())}
        return session.run(None, feed)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().to("cpu")
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy()


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
    """onnxruntime CalibrationDataReader: the calibration images' one-image inputs that fit the graph
    (same shape key), each input the graph takes."""

    def __init__(self, feeds: list[onnx_export.VisionInputs], input_names: list[str]) -> None:
        self._feeds = iter([{name: _numpy(f.tensors[name]) for name in input_names} for f in feeds])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def calibration_feeds(settings: OrtSettings, shape_key: str) -> list[onnx_export.VisionInputs]:
    """The calibration images' one-image inputs whose shape key is ``shape_key`` (a graph holds one
    shape; images of another size cannot feed it)."""
    parts = [part for inputs in settings.calibration for part in inputs.per_image()]
    return [part for part in parts if part.shape_key() == shape_key]


def quantized_file(
    precision: str,
    fp32: Path,
    settings: OrtSettings,
    key: dict[str, Any],
    shape_key: str = "",
    keep_float: tuple[str, ...] = (),
) -> Path:
    """The ONNX file of ``precision`` made from the float32 export (cached by ``key``); the nodes of the
    module scopes ``keep_float`` (a nested projector) stay float32."""
    if precision == "ort-fp32":
        return fp32
    import onnx
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
    large = onnx_export.graph_bytes(fp32) >= onnx_export.SINGLE_FILE_LIMIT_BYTES
    excluded = [name for scope in keep_float for name in onnx_export.scope_nodes(fp32, scope)]
    common = dict(per_channel=True, nodes_to_exclude=excluded, use_external_data_format=large)
    if precision == "ort-int8":
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, **common)
    else:
        feeds = calibration_feeds(settings, shape_key)
        if not feeds:
            raise UserError(
                "ort-int8-static calibrates each exported graph on images of its input shape, and none of "
                f"the {len(settings.calibration)} calibration images has the shape {shape_key} (this "
                "tower's input size follows the image's). Use vision=ort-int8 (dynamic) for this model."
            )
        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[settings.calibration_method]
        graph_inputs = [i.name for i in onnx.load(str(fp32), load_external_data=False).graph.input]
        quantize_static(
            str(fp32),
            str(tmp),
            _Reader(feeds, graph_inputs),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            op_types_to_quantize=["MatMul", "Gemm", "Conv"],
            **common,
        )
    if large:  # one folder per key: the quantizer named the weights file after the temp file
        onnx.save(onnx.load(str(tmp)), str(path), save_as_external_data=True, location=path.name + ".data")
        for leftover in path.parent.glob(tmp.name + "*"):
            leftover.unlink()
    else:
        tmp.rename(path)
    onnx_export.write_key(path, key)
    return path


def apply(
    model: nn.Module,
    vision_path: str,
    precision: str,
    settings: OrtSettings,
    device: torch.device,
    dtype: torch.dtype,
    nested: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Export (cached), quantize (cached), open a session and swap it in for ``vision_path``.

    ``nested``: module paths of other roles inside the tower (Qwen2-VL's merger): they run inside the
    graph, kept float32, behind stand-ins at the same paths. Returns the role's settings as MLflow
    params (provider, exporter, graphs, export time). UserError with the exporter's reason when the
    tower cannot be exported.
    """
    import onnxruntime as ort

    started = time.perf_counter()
    vision = model.get_submodule(vision_path)
    taps = _called_modules(vision, tuple(path.removeprefix(vision_path + ".") for path in nested))
    example = settings.example.per_image()[0]
    structure = onnx_export.output_structure(vision, example, taps)
    provider = resolve_provider(settings.provider, device)
    base_key = {**settings.model_key, "opset": onnx_export.OPSET, "torch": torch.__version__, "taps": taps}
    exports: list[onnx_export.Exported] = []

    def build(inputs: onnx_export.VisionInputs) -> tuple[Any, Path]:
        shape = inputs.shape_key()
        fp32_key = {**base_key, "shape": shape, "precision": "ort-fp32"}
        try:
            fp32_path = onnx_export.cache_path(fp32_key)
            exported = onnx_export.export_vision(vision, inputs, fp32_path, fp32_key, taps)
        except onnx_export.ExportError as error:
            raise UserError(f"{vision_path}={precision} is not possible for this model: {error}") from None
        exports.append(exported)
        key = {**fp32_key, "precision": precision, "onnxruntime": ort.__version__}
        if precision == "ort-int8-static":
            key.update(
                calibration_ids=list(settings.calibration_ids), calibration_method=settings.calibration_method
            )
        path = quantized_file(precision, exported.path, settings, key, shape, taps)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), options, providers=[provider]), path

    first = build(example)
    session, path = first
    bytes_by_dtype, elements = onnx_bytes_by_dtype(path)
    summary = {
        "file": str(path),
        "file_bytes": onnx_export.graph_bytes(path),
        "bytes_by_dtype": bytes_by_dtype,
        "elements": elements,
        "execution_provider": session.get_providers()[0],
        "precision": precision,
        "opset": onnx_export.OPSET,
        "input_shape": example.shape_key(),
    }
    config = getattr(vision, "config", None)
    signature = inspect.signature(vision.forward)
    graphs = {example.shape_key(): first}
    stand_in = OrtVisionModule(graphs, build, signature, structure, precision, dtype, device, config, summary)
    for name, value in vars(vision).items():  # plain attributes the model reads (spatial_merge_size)
        if not name.startswith("_") and not hasattr(stand_in, name):
            if not isinstance(value, (torch.Tensor, nn.Module)):
                setattr(stand_in, name, value)
    for tap in taps:  # the nested role runs inside the graph, float32: the audit says so
        params = sum(p.numel() for p in vision.get_submodule(tap).parameters())
        inside = {
            **summary,
            "precision": "fp32",  # the audit's name of plain float32 (audit.PLAIN_NAMES)
            "elements": params,
            "file_bytes": 0,  # its weights are in the tower's file, counted there
            "bytes_by_dtype": {},
            "inside": vision_path,
        }
        _add_nested(stand_in, tap, OrtNestedStage(inside))
    _swap(model, vision_path, stand_in)
    exported = exports[0]
    params = {
        "ort_execution_provider": summary["execution_provider"],
        "ort_opset": onnx_export.OPSET,
        "ort_input_shape": summary["input_shape"],
        "ort_onnx_file_mib": round(summary["file_bytes"] / 2**20, 3),
        "ort_exporter": exported.exporter,
        "ort_graph_inputs": ",".join(i.name for i in session.get_inputs()),
        "ort_prepare_s": round(time.perf_counter() - started, 3),
    }
    if exported.failures:
        params["ort_exporter_failures"] = "; ".join(f"{k}: {v}" for k, v in exported.failures.items())[:480]
    if taps:
        params["ort_graph_includes"] = ",".join(nested)
    if precision == "ort-int8-static":
        params.update(
            ort_calibration_method=settings.calibration_method,
            ort_calibration_images=len(settings.calibration_ids),
            ort_calibration_ids=",".join(map(str, settings.calibration_ids)),
        )
    return params


def _called_modules(vision: nn.Module, paths: tuple[str, ...]) -> tuple[str, ...]:
    """``paths`` with each container (a ``ModuleList`` such as Qwen3-VL's ``deepstack_merger_list``, never
    called itself, so a hook on it never fires) replaced by its children, which the tower calls."""
    called: list[str] = []
    for path in paths:
        module = vision.get_submodule(path)
        if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            called += [f"{path}.{name}" for name, _ in module.named_children()]
        else:
            called.append(path)
    return tuple(called)


def _add_nested(parent: nn.Module, path: str, module: nn.Module) -> None:
    """Register ``module`` at the dotted ``path`` under ``parent``, creating empty containers between."""
    *heads, name = path.split(".")
    for head in heads:
        if not hasattr(parent, head):
            parent.add_module(head, nn.Module())
        parent = getattr(parent, head)
    parent.add_module(name, module)


def _swap(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, name, module)


def ort_modules(model: nn.Module) -> dict[str, OrtVisionModule]:
    """Every ORT stand-in of ``model`` by module path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, OrtVisionModule)}


def onnx_files_mib(model: nn.Module) -> float:
    """Size on disk of the ONNX files the model runs, every graph (MiB); 0.0 when it runs none."""
    paths = [p for m in ort_modules(model).values() for p in m.onnx_paths]
    return sum(onnx_export.graph_bytes(p) for p in paths) / 2**20


def graphs_exported(model: nn.Module) -> int | None:
    """How many graphs (input shapes) the model's ONNX Runtime roles opened; None when it has none."""
    modules = ort_modules(model).values()
    return sum(m.graphs_exported for m in modules) if modules else None
