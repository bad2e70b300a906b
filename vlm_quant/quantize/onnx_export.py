"""Export a VLM's vision tower to ONNX at the processor's real input signature, one graph per input shape,
cached on disk.

What the tower receives is caught by a forward pre-hook on the vision module while the model runs one real
request: every tensor argument (positional or keyword, named by the module's signature: Idefics3's
``pixel_values`` + ``patch_attention_mask``, Qwen2-VL's ``hidden_states`` + ``grid_thw``, CLIP's
``pixel_values``) and the non-tensor options the model passes (LLaVA asks CLIP for
``output_hidden_states``). The exported graph is a wrapper that calls the tower with those inputs and
flattens whatever it returns (a ``ModelOutput``, a tuple, a tensor; ``torch.utils._pytree``) into a tuple
of tensors; ``OrtVisionModule`` rebuilds the same structure after ONNX Runtime ran, so the model consumes
it unchanged.

Images are run one at a time (batch 1): a batch is split per image where the tower attends within an image
only (a leading batch dimension), and a Qwen-style flat patch sequence is split by the rows of its
``grid_thw``. Exporters, in order: ``torch.onnx.export(dynamo=True)`` (``torch.export`` + onnxscript),
then, when the tower's data-dependent code defeats ``torch.export`` (Qwen2-VL's ``cu_seqlens`` split with
``.tolist()``), the TorchScript tracer with the small integer inputs (``grid_thw``) baked in as
constants. Either way a graph holds one input shape, so the shape key is part of the cache key and a
new shape is exported at first use (the number of graphs is logged).

A projector nested in the tower (Qwen2-VL's ``merger``) is part of the graph: the wrapper also returns its
input and output so the run can show them to the fidelity hooks, and its nodes are named by their module
path, so quantization can leave them float32 (the projector role keeps its precision, inside ORT).

Exports are cached under ``$VLMQ_ONNX_CACHE`` (default ``$XDG_CACHE_HOME/vlm-quant/onnx``, beside the
random weights) by a key of the model (id, revision or weights source), the input shape key, the opset,
the precision and, for static quantization, the calibration ids and method. Graphs under protobuf's
2 GB limit are one self-contained ``.onnx`` file; larger ones (Qwen2-VL's 675M-parameter tower is
2.7 GB in float32) keep their weights in ``vision.onnx.data`` beside it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import nn

from vlm_quant.models.random_weights import default_cache_root

OPSET = 18
SINGLE_FILE_LIMIT_BYTES = 1_900_000_000  # protobuf refuses messages over 2 GiB: larger graphs keep .data
_BAKED_MAX_ELEMENTS = 64  # integer inputs this small (grid_thw) are shape descriptors: part of the key


class _Caught(Exception):
    """Raised by the capture hook to stop the forward pass once the vision inputs are known."""


class ExportError(RuntimeError):
    """No exporter could turn the tower into an ONNX graph; the message holds each exporter's reason."""


@dataclass(frozen=True)
class VisionInputs:
    """What the vision module receives for the images of one request.

    ``tensors``: every tensor argument by parameter name, in call order; ``options``: the non-tensor
    keyword arguments (``output_hidden_states``, ``return_dict``...), passed unchanged to the tower.
    """

    tensors: dict[str, torch.Tensor]
    options: dict[str, Any] = field(default_factory=dict)

    def grid_name(self) -> str | None:
        """The ``*grid_thw`` input of a Qwen-style tower (a flat patch sequence), if any."""
        return next((k for k in self.tensors if k.endswith("grid_thw")), None)

    def per_image(self) -> list[VisionInputs]:
        """One VisionInputs per image (or tile): batch-1 slices, or grid rows of a flat patch sequence;
        the whole input when neither split is possible (it then runs as one graph)."""
        grid = self.grid_name()
        tensors = {k: v.detach().cpu() for k, v in self.tensors.items()}
        if grid is not None:
            rows = tensors[grid]
            sizes = [int(r.prod()) for r in rows]
            total = sum(sizes)
            starts = [sum(sizes[:i]) for i in range(len(sizes))]
            return [
                VisionInputs(
                    {
                        k: rows[i : i + 1]
                        if k == grid
                        else (v[s : s + n] if v.dim() and v.shape[0] == total else v)
                        for k, v in tensors.items()
                    },
                    self.options,
                )
                for i, (s, n) in enumerate(zip(starts, sizes))
            ]
        leading = {v.shape[0] for v in tensors.values() if v.dim()}
        if len(leading) != 1:
            return [VisionInputs(tensors, self.options)]
        n = leading.pop()
        return [
            VisionInputs({k: v[i : i + 1] if v.dim() else v for k, v in tensors.items()}, self.options)
            for i in range(n)
        ]

    def baked(self) -> dict[str, torch.Tensor]:
        """Small integer inputs (``grid_thw``): TorchScript bakes them in, so they key the graph."""
        return {
            k: v
            for k, v in self.tensors.items()
            if not v.is_floating_point() and v.dtype != torch.bool and v.numel() <= _BAKED_MAX_ELEMENTS
        }

    def shape_key(self) -> str:
        """Shapes and dtypes of every tensor, values of the baked ones, and the options."""
        baked = self.baked()
        parts = [
            f"{k}={list(v.shape)}:{str(v.dtype).removeprefix('torch.')}"
            + (f"={v.tolist()}" if k in baked else "")
            for k, v in self.tensors.items()
        ]
        parts += [f"{k}={v!r}" for k, v in sorted(self.options.items())]
        return ",".join(parts)


@torch.inference_mode()
def capture_vision_inputs(model: nn.Module, vision_path: str, model_inputs: dict[str, Any]) -> VisionInputs:
    """Every input the vision module receives when the model runs ``model_inputs`` (one request)."""
    caught: dict[str, VisionInputs] = {}
    vision = model.get_submodule(vision_path)

    def hook(module, args, kwargs):
        caught["inputs"] = bind_inputs(module, args, kwargs)
        raise _Caught

    handle = vision.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(**model_inputs, use_cache=False)
    except _Caught:
        pass
    finally:
        handle.remove()
    if "inputs" not in caught:
        raise RuntimeError(f"the model never called its vision module {vision_path!r} on this request")
    return caught["inputs"]


def bind_inputs(module: nn.Module | inspect.Signature, args: tuple, kwargs: dict[str, Any]) -> VisionInputs:
    """``args``/``kwargs`` of a call to ``module`` (or a call of this signature) as named tensors and
    non-tensor options."""
    signature = module if isinstance(module, inspect.Signature) else inspect.signature(module.forward)
    bound = signature.bind(*args, **kwargs)
    named: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            raise ExportError(f"the vision tower takes *{name}: its inputs have no names to export")
        else:
            named[name] = value
    tensors = {k: v for k, v in named.items() if isinstance(v, torch.Tensor)}
    options = {k: v for k, v in named.items() if not isinstance(v, torch.Tensor) and v is not None}
    return VisionInputs(tensors, options)


@dataclass
class OutputStructure:
    """How the tower's output flattens: the pytree spec, which leaves are tensors (the graph's outputs)
    and the constant non-tensor leaves (``None`` hidden states), so the output can be rebuilt."""

    spec: Any
    tensor_leaves: list[bool]
    constants: list[Any]
    taps: tuple[str, ...] = ()  # nested projectors whose (input, output) follow the tower's outputs

    def rebuild(self, tensors: list[torch.Tensor]) -> Any:
        values = iter(tensors)
        constants = iter(self.constants)
        leaves = [next(values) if is_tensor else next(constants) for is_tensor in self.tensor_leaves]
        return pytree.tree_unflatten(leaves, self.spec)

    @property
    def n_outputs(self) -> int:
        return sum(self.tensor_leaves)


class ExportWrapper(nn.Module):
    """The vision tower as a function of its input tensors returning a flat tuple of tensors: the tower's
    output leaves, then (input, output) of each tapped nested projector. Baked tensors and options are
    passed to the tower unchanged."""

    def __init__(
        self,
        vision: nn.Module,
        input_names: list[str],
        baked: dict[str, torch.Tensor],
        options: dict[str, Any],
        taps: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.vision = vision
        self.input_names, self.baked_inputs, self.options, self.taps = input_names, baked, options, taps
        self.structure: OutputStructure | None = None

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tapped: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        handles = [
            self.vision.get_submodule(tap).register_forward_hook(_tap_hook(tap, tapped)) for tap in self.taps
        ]
        try:
            out = self.vision(**dict(zip(self.input_names, tensors)), **self.baked_inputs, **self.options)
        finally:
            for handle in handles:
                handle.remove()
        leaves, spec = pytree.tree_flatten(out)
        is_tensor = [isinstance(leaf, torch.Tensor) for leaf in leaves]
        self.structure = OutputStructure(
            spec, is_tensor, [leaf for leaf, t in zip(leaves, is_tensor) if not t], self.taps
        )
        extra = [t for tap in self.taps for t in tapped[tap]]
        return tuple(leaf for leaf, t in zip(leaves, is_tensor) if t) + tuple(extra)


def _tap_hook(name: str, tapped: dict[str, tuple[torch.Tensor, torch.Tensor]]):
    def hook(module, args, output):
        result = output if isinstance(output, torch.Tensor) else pytree.tree_leaves(output)[0]
        tapped[name] = (args[0], result)

    return hook


def output_structure(vision: nn.Module, example: VisionInputs, taps: tuple[str, ...] = ()) -> OutputStructure:
    """The flattened output structure of ``vision`` on ``example`` (one torch forward pass)."""
    wrapper = ExportWrapper(vision, list(example.tensors), {}, example.options, taps)
    device = next(vision.parameters()).device
    with torch.no_grad():
        wrapper(*(t.to(device) for t in example.tensors.values()))
    assert wrapper.structure is not None
    return wrapper.structure


def cache_root() -> Path:
    return Path(os.environ.get("VLMQ_ONNX_CACHE") or default_cache_root().parent / "onnx")


def cache_path(parts: dict[str, Any]) -> Path:
    """``<cache>/<sha>/vision.onnx`` for the key ``parts`` (also written beside it as key.json)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    return cache_root() / digest / "vision.onnx"


def write_key(path: Path, parts: dict[str, Any]) -> None:
    (path.parent / "key.json").write_text(json.dumps(parts, sort_keys=True, indent=2, default=str))


def graph_files(path: Path) -> list[Path]:
    """The graph file and, for a graph over 2 GB, its external weights file."""
    data = Path(str(path) + ".data")
    return [path, data] if data.is_file() else [path]


def graph_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in graph_files(path))


@dataclass(frozen=True)
class Exported:
    """One exported float32 graph: its file, which exporter made it, why the others failed, its time."""

    path: Path
    exporter: str  # "dynamo" / "torchscript" / "cached"
    seconds: float
    failures: dict[str, str] = field(default_factory=dict)


def export_vision(
    vision: nn.Module,
    example: VisionInputs,
    path: Path,
    key: dict[str, Any],
    taps: tuple[str, ...] = (),
    exporters: tuple[str, ...] = ("dynamo", "torchscript"),
) -> Exported:
    """Export ``vision`` for the one-image input ``example`` into ``path`` (float32 graph).

    Nothing is exported when ``path`` already exists (same cache key). ExportError with each exporter's
    reason when none succeeds.
    """
    if path.is_file():
        return Exported(path, "cached", 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = next(vision.parameters()).dtype
    if dtype != torch.float32:  # ONNX Runtime's CPU kernels and quantizer want a float32 graph
        vision.float()
    failures: dict[str, str] = {}
    started = time.perf_counter()
    try:
        for exporter in exporters:
            try:
                _export_with(exporter, vision, example, path, taps)
                write_key(path, {**key, "exporter": exporter})
                return Exported(path, exporter, time.perf_counter() - started, failures)
            except Exception as error:  # every exporter failure is reported, none is fatal alone
                failures[exporter] = first_line(error)
    finally:
        if dtype != torch.float32:
            vision.to(dtype)
    raise ExportError(
        f"{type(vision).__name__} could not be exported to ONNX: "
        + "; ".join(f"{name}: {reason}" for name, reason in failures.items())
    )


def first_line(error: BaseException) -> str:
    """The exporter's reason in one line (torch.export's messages run to pages: its exception summary)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # torch.onnx colours its messages
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "## Exception summary" in lines:
        lines = lines[lines.index("## Exception summary") + 1 :]
    text = next((line for line in lines if "data-dependent" in line.lower()), lines[0] if lines else "")
    return f"{type(error).__name__}: {text[:300]}"


def _export_with(
    exporter: str, vision: nn.Module, example: VisionInputs, path: Path, taps: tuple[str, ...]
) -> None:
    device = next(vision.parameters()).device
    baked = example.baked() if exporter == "torchscript" else {}
    names = [k for k in example.tensors if k not in baked]
    wrapper = ExportWrapper(vision, names, {k: v.to(device) for k, v in baked.items()}, example.options, taps)
    args = tuple(
        example.tensors[k].to(device, torch.float32 if example.tensors[k].is_floating_point() else None)
        for k in names
    )
    scratch = path.parent / f"tmp-{os.getpid()}"  # concurrent runs never share a temp folder
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = scratch / "vision.onnx"
    try:
        with torch.inference_mode(False), torch.no_grad():
            wrapper.eval()
            if exporter == "dynamo":
                program = torch.onnx.export(
                    wrapper, args, dynamo=True, opset_version=OPSET, input_names=names, verbose=False
                )
                program.save(str(tmp), external_data=True)
            else:
                torch.onnx.export(
                    wrapper, args, str(tmp), dynamo=False, opset_version=OPSET, input_names=names
                )
        _finish(tmp, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _finish(tmp: Path, path: Path) -> None:
    """Move the temp export into place: one self-contained file when it fits, else graph + .data."""
    import onnx

    model = onnx.load(str(tmp))
    weights = sum(len(t.raw_data) for t in model.graph.initializer)
    if weights < SINGLE_FILE_LIMIT_BYTES:
        onnx.save(model, str(path))
    else:
        onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data")


def scope_nodes(path: Path, scope: str) -> list[str]:
    """Names of the graph's nodes that come from module ``scope`` of the wrapped tower (``merger``):
    TorchScript names them ``/vision/merger/...``, torch.export records ``vision.merger`` in metadata."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    prefix, dotted = f"/vision/{scope.replace('.', '/')}/", f"'vision.{scope}'"
    names = []
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")
        if node.name.startswith(prefix) or dotted in scopes:
            names.append(node.name)
    return names


def dynamic_shape_outcome(vision: nn.Module, example: VisionInputs) -> str:
    """What ``torch.onnx.export(dynamo=True)`` makes of the tower with every dimension of its float
    inputs marked ``Dim.AUTO``: one graph for every input size, a graph specialized to this one, or the
    exporter's reason for failing (a measurement for docs/onnx_vision_towers.md; runs use one graph per
    shape either way)."""
    names = list(example.tensors)
    wrapper = ExportWrapper(vision, names, {}, example.options).eval()
    args = tuple(example.tensors.values())
    dims = tuple(  # one entry: the wrapper's *tensors
        {d: torch.export.Dim.AUTO for d in range(t.dim())} if t.is_floating_point() else None for t in args
    )
    try:
        with torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                wrapper, args, dynamo=True, opset_version=OPSET, input_names=names, dynamic_shapes=(dims,)
            )
    except Exception as error:  # the reason is the measurement
        return f"fails ({first_line(error)})"
    symbolic = {
        graph_input.name: [d.dim_param for d in graph_input.type.tensor_type.shape.dim if d.dim_param]
        for graph_input in program.model_proto.graph.input
    }
    dynamic = {name: len(found) for name, found in symbolic.items() if found}
    if not dynamic:
        return "specialized (every dimension static)"
    return "dynamic (" + ", ".join(f"{name}: {n} dims" for name, n in dynamic.items()) + ")"
