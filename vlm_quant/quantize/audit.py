"""What really loaded: the storage type, parameter count and bytes of every module that owns parameters.

The rule for a role's *realized precision*: it is the storage type of the weights of the role's
``nn.Linear`` modules (bitsandbytes and torchao layers included), since those are what a plan
quantizes. When all of them agree, that one name (``int8``, ``nf4``, ``int8wo``, ``w8a8``, ``fp16``,
``bf16``, ``fp32``); when they do not, every type with its count, e.g. ``int8 (22/24 linears) + fp32
(2/24 linears)``. Parameters outside linear layers (norms, embeddings, convolutional patch embeddings,
position embeddings) are never quantized by a plan and are reported apart, per role.

Bytes are counted as stored: bitsandbytes int8 weights (1 byte per weight) plus their fp32 row scales
(``SCB``, in the weight before the first forward and in the layer's matmul state after it); NF4
weights packed two per byte plus the quantization state (absmax, quantization map, and under double
quantization the nested absmax and map); torchao tensor subclasses through their inner tensors
(``qdata``, ``scale``, ...); plain tensors as ``numel * element_size``. A tied weight counts once, under
the first module that owns it (the token embeddings for a tied ``lm_head``). Parameter counts are
logical (the number of weights the layer computes with), not the number of packed bytes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from vlm_quant.models.families import ROLES, FamilySpec, is_linear_layer, module_roles
from vlm_quant.quantize.presets import HALF_PRECISIONS, PRECISIONS, PrecisionPlan
from vlm_quant.quantize.ptq_layers import ptq_logical_params, ptq_precision, ptq_tensors, ptq_weight_type

MIB = 2**20
PLAIN_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.float64: "fp64"}


class PlanNotRealizedError(RuntimeError):
    """The model as loaded does not hold the precision the plan asked for (a backend ignored a skip
    list, a filter matched nothing, a role was quantized that should not be...)."""


@dataclass(frozen=True)
class StoredTensor:
    """One tensor that holds part of a parameter's bytes."""

    name: str  # e.g. "weight", "weight.SCB", "weight.quant_state.absmax", "weight.qdata", "bias"
    dtype: str
    shape: tuple[int, ...]
    bytes: int


@dataclass(frozen=True)
class ModuleRecord:
    """One module that directly owns parameters, as it is stored now."""

    name: str
    role: str
    module_type: str  # class name: "Linear", "Linear8bitLt", "Linear4bit", "LayerNorm", ...
    is_linear: bool
    weight_type: str  # "torch.float32", "bitsandbytes.Int8Params(int8)", "bitsandbytes.Params4bit(nf4)", ...
    precision: str  # the short name: fp32, fp16, bf16, int8, nf4, fp4, int8wo, w8a8, or the type name
    params: int  # logical parameter count of the tensors counted here
    bytes: int  # bytes as stored, scales and quantization state included
    tensors: tuple[StoredTensor, ...] = ()
    tied_to: tuple[str, ...] = field(default_factory=tuple)  # "lm_head.weight -> model.embed_tokens.weight"


@dataclass(frozen=True)
class RoleSummary:
    role: str
    realized: str  # realized precision of the role's linear weights (module docstring's rule)
    linear_precisions: dict[str, int]  # precision -> number of linear modules
    linear_params: int
    linear_bytes: int
    other: str  # storage of the non-linear parameters, e.g. "fp32" or "none"
    other_params: int
    other_bytes: int

    @property
    def params(self) -> int:
        return self.linear_params + self.other_params

    @property
    def bytes(self) -> int:
        return self.linear_bytes + self.other_bytes

    @property
    def n_linears(self) -> int:
        return sum(self.linear_precisions.values())


@dataclass(frozen=True)
class PrecisionMap:
    """Every parameter-owning module of a model, as stored, grouped by role."""

    family: str
    modules: dict[str, ModuleRecord]

    def roles(self) -> dict[str, RoleSummary]:
        return {role: self._summary(role) for role in ROLES}

    def role_params(self) -> dict[str, str]:
        """MLflow params of what was realized: ``realized_precision_<role>`` (the linear weights) and
        ``realized_other_<role>`` (norms, embeddings, convolutions of that role)."""
        params: dict[str, str] = {}
        for role, summary in self.roles().items():
            params[f"realized_precision_{role}"] = summary.realized
            params[f"realized_other_{role}"] = summary.other
        return params

    def footprint_mib_by_role(self) -> dict[str, float]:
        """Metrics ``weights_mib_<role>``: bytes of each role's parameters as stored, in MiB."""
        return {f"weights_mib_{role}": summary.bytes / MIB for role, summary in self.roles().items()}

    def total_bytes(self) -> int:
        return sum(record.bytes for record in self.modules.values())

    def to_dict(self) -> dict[str, Any]:
        """The ``precision/precision_map.json`` artifact: per role, then per module."""
        roles = {}
        for role, summary in self.roles().items():
            roles[role] = {
                **asdict(summary),
                "params": summary.params,
                "bytes": summary.bytes,
                "mib": summary.bytes / MIB,
                "n_linears": summary.n_linears,
            }
        data = {
            "family": self.family,
            "rule": "realized = storage type of the role's nn.Linear weights; other = all other parameters",
            "total": {
                "params": sum(r.params for r in self.modules.values()),
                "bytes": self.total_bytes(),
                "mib": self.total_bytes() / MIB,
            },
            "roles": roles,
            "modules": {name: asdict(record) for name, record in self.modules.items()},
        }
        return json.loads(json.dumps(data))  # tuples become lists: exactly what the artifact holds

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def _summary(self, role: str) -> RoleSummary:
        records = [r for r in self.modules.values() if r.role == role]
        linears = [r for r in records if r.is_linear]
        others = [r for r in records if not r.is_linear]
        counts = Counter(r.precision for r in linears)
        return RoleSummary(
            role=role,
            realized=_describe_mix(counts, "linears"),
            linear_precisions=dict(sorted(counts.items())),
            linear_params=sum(r.params for r in linears),
            linear_bytes=sum(r.bytes for r in linears),
            other=_describe_mix(Counter(r.precision for r in others if r.params), "modules"),
            other_params=sum(r.params for r in others),
            other_bytes=sum(r.bytes for r in others),
        )


def _describe_mix(counts: Counter, unit: str) -> str:
    if not counts:
        return "none"
    if len(counts) == 1:
        return next(iter(counts))
    total = sum(counts.values())
    return " + ".join(f"{name} ({n}/{total} {unit})" for name, n in counts.most_common())


# --- inspection ---------------------------------------------------------------------------------


def audit_precision(model: nn.Module, family: FamilySpec, plan: PrecisionPlan | None = None) -> PrecisionMap:
    """Inspect every parameter-owning module of ``model`` (``plan`` is accepted for symmetry with
    ``verify_plan`` and not needed: the map describes the model, not the intent)."""
    roles = module_roles(model, family)
    owner = _first_owner_of_each_tensor(model)
    modules: dict[str, ModuleRecord] = {}
    for name, module in model.named_modules():
        if name not in roles:
            continue
        modules[name] = _record(name, roles[name], module, owner)
    modules.update(_onnx_records(model, family))
    return PrecisionMap(family.name, modules)


def _onnx_records(model: nn.Module, family: FamilySpec) -> dict[str, ModuleRecord]:
    """A record per ONNX Runtime stand-in (it holds no torch parameters): what ran and its file's bytes.

    It counts as the role's one "linear" (``is_linear``), so the role's realized precision is the ORT
    precision, and its bytes are the ONNX file's initializers per dtype (what is loaded and stored). A
    role nested in the exported tower (Qwen2-VL's merger, the projector) is a stand-in that runs inside
    the tower's graph, kept float32: its record says so, and its bytes are counted in the tower's file.
    """
    from vlm_quant.models.families import role_of

    records = {}
    for name, module in model.named_modules():
        summary = getattr(module, "onnx_summary", None)
        if summary is None:
            continue
        by_dtype = summary["bytes_by_dtype"].items()
        tensors = tuple(StoredTensor(f"onnx.initializers.{dtype}", dtype, (), n) for dtype, n in by_dtype)
        records[name] = ModuleRecord(
            name=name,
            role=role_of(name, family.layout) or "vision",
            module_type=type(module).__name__,
            is_linear=True,
            weight_type=f"onnxruntime.InferenceSession({summary['execution_provider']})"
            + (f": float32 nodes inside {summary['inside']}'s graph" if "inside" in summary else ""),
            precision=summary["precision"],
            params=int(summary["elements"]),
            bytes=int(summary["file_bytes"]),
            tensors=tensors,
        )
    return records


def _first_owner_of_each_tensor(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> "module.param" of its first owner (named_parameters drops later duplicates)."""
    return {id(p): name for name, p in model.named_parameters()}


def _record(name: str, role: str, module: nn.Module, owner: dict[int, str]) -> ModuleRecord:
    if ptq_precision(module) is not None:
        return _ptq_record(name, role, module)
    tensors: list[StoredTensor] = []
    tied: list[str] = []
    params = 0
    for pname, param in module.named_parameters(recurse=False):
        full = f"{name}.{pname}" if name else pname
        if owner.get(id(param)) != full:
            tied.append(f"{full} -> {owner.get(id(param), '?')}")
            continue
        params += logical_numel(param)
        tensors.extend(stored_tensors(pname, param, module))
    weight = getattr(module, "weight", None)
    weight_type, precision = (
        storage_type(weight, module) if isinstance(weight, torch.Tensor) else _first_type(module)
    )
    return ModuleRecord(
        name=name,
        role=role,
        module_type=type(module).__name__,
        is_linear=is_linear_layer(module),
        weight_type=weight_type,
        precision=precision,
        params=params,
        bytes=sum(t.bytes for t in tensors),
        tensors=tuple(tensors),
        tied_to=tuple(tied),
    )


def _ptq_record(name: str, role: str, module: nn.Module) -> ModuleRecord:
    """A layer written by a PTQ library (AutoRound, GPTQ, AWQ, compressed-tensors): see ptq_layers."""
    tensors = tuple(_plain_record(tname, tensor) for tname, tensor in ptq_tensors(module))
    return ModuleRecord(
        name=name,
        role=role,
        module_type=type(module).__name__,
        is_linear=True,
        weight_type=ptq_weight_type(module),
        precision=str(ptq_precision(module)),
        params=ptq_logical_params(module),
        bytes=sum(t.bytes for t in tensors),
        tensors=tensors,
    )


def _first_type(module: nn.Module) -> tuple[str, str]:
    param = next(module.parameters(recurse=False), None)
    return storage_type(param, module) if param is not None else ("none", "none")


def storage_type(tensor: torch.Tensor, module: nn.Module | None = None) -> tuple[str, str]:
    """(full type name, short precision name) of how ``tensor`` is stored."""
    cls = type(tensor).__name__
    if cls == "Int8Params":
        kind = "int8" if tensor.dtype == torch.int8 else _plain(tensor.dtype)  # not yet quantized: fp16
        return f"bitsandbytes.Int8Params({kind})", kind
    if cls == "Params4bit":
        state = getattr(tensor, "quant_state", None)
        kind = getattr(state, "quant_type", None) or ("unquantized " + _plain(tensor.dtype))
        return f"bitsandbytes.Params4bit({kind})", kind
    if hasattr(tensor, "__tensor_flatten__"):  # a torchao tensor subclass
        return f"{type(tensor).__module__.split('.')[0]}.{cls}", _torchao_precision(tensor)
    return f"torch.{str(tensor.dtype).removeprefix('torch.')}", _plain(tensor.dtype)


def _torchao_precision(tensor: torch.Tensor) -> str:
    """int8wo / w8a8 for torchao's Int8Tensor (and the older AffineQuantizedTensor), else the class."""
    cls = type(tensor).__name__
    inner = [getattr(tensor, n, None) for n in tensor.__tensor_flatten__()[0]]
    int8 = any(isinstance(t, torch.Tensor) and t.dtype == torch.int8 for t in inner)
    if not int8:
        return f"torchao.{cls}"
    dynamic = getattr(tensor, "act_quant_kwargs", None) is not None or "LinearActivation" in cls
    return "w8a8" if dynamic else "int8wo"


def _plain(dtype: torch.dtype) -> str:
    return PLAIN_NAMES.get(dtype, str(dtype).removeprefix("torch."))


def logical_numel(param: torch.Tensor) -> int:
    """Number of weights the tensor stands for (4-bit weights are packed two per byte)."""
    state = getattr(param, "quant_state", None)
    if type(param).__name__ == "Params4bit" and state is not None and getattr(state, "shape", None):
        return int(torch.Size(state.shape).numel())
    return int(param.numel())


def stored_tensors(pname: str, param: torch.Tensor, module: nn.Module) -> list[StoredTensor]:
    """The plain tensors holding ``param``'s bytes, with their names, dtypes and sizes."""
    if hasattr(param, "__tensor_flatten__"):
        inner_names, _ = param.__tensor_flatten__()
        optional = list(getattr(param, "optional_tensor_data_names", []) or [])
        out = []
        for inner in dict.fromkeys([*inner_names, *optional]):
            value = getattr(param, inner, None)
            if isinstance(value, torch.Tensor):
                out.extend(stored_tensors(f"{pname}.{inner}", value, module))
        return out
    out = [_plain_record(pname, param)]
    if type(param).__name__ == "Int8Params":
        scb = (
            param.SCB
            if getattr(param, "SCB", None) is not None
            else getattr(getattr(module, "state", None), "SCB", None)
        )
        if isinstance(scb, torch.Tensor):
            out.append(_plain_record(f"{pname}.SCB", scb))
    out.extend(_quant_state_records(f"{pname}.quant_state", getattr(param, "quant_state", None)))
    return out


def _quant_state_records(prefix: str, state: Any) -> list[StoredTensor]:
    """Tensors of a bitsandbytes QuantState (absmax, code, offset), recursing into state2."""
    if state is None:
        return []
    out: list[StoredTensor] = []
    for key in ("absmax", "code", "offset"):
        value = getattr(state, key, None)
        if isinstance(value, torch.Tensor):
            out.append(_plain_record(f"{prefix}.{key}", value))
    if getattr(state, "state2", None) is not None:
        out.extend(_quant_state_records(f"{prefix}.state2", state.state2))
    return out


def _plain_record(name: str, tensor: torch.Tensor) -> StoredTensor:
    data = tensor.data if isinstance(tensor, nn.Parameter) else tensor
    return StoredTensor(
        name,
        str(data.dtype).removeprefix("torch."),
        tuple(data.shape),
        int(data.numel() * data.element_size()),
    )


# --- verification -------------------------------------------------------------------------------


def verify_plan(
    plan: PrecisionPlan, precision_map: PrecisionMap, *, dtype: torch.dtype | None = None
) -> None:
    """PlanNotRealizedError listing every role whose linear weights are not at the planned precision.

    A quantized role must have at least one linear layer and all of them at the planned precision. An
    unquantized role must have no quantized layer, and, when ``dtype`` (the dtype the model was loaded
    in: float16/bfloat16 on GPU, float32 on CPU) is given, all of its linears in that dtype. Non-linear
    parameters must stay plain floating-point tensors.
    """
    problems = []
    summaries = precision_map.roles()
    if plan.prequantized:
        _verify_prequantized(precision_map)
        return
    loaded_as = _plain(dtype) if dtype is not None else None
    for role, planned in plan.roles.items():
        summary = summaries[role]
        counts, n = summary.linear_precisions, summary.n_linears
        if planned not in HALF_PRECISIONS:
            done = counts.get(PRECISIONS[planned].audited_as, 0)
            if n == 0 or done != n:
                problems.append(
                    f"role {role}: planned {planned}, realized {summary.realized}: "
                    f"{done} of {n} linears quantized"
                )
            continue
        quantized = {p: c for p, c in counts.items() if p not in PLAIN_NAMES.values()}
        if quantized:
            problems.append(
                f"role {role}: planned {planned} (not quantized), realized {summary.realized}: "
                f"{sum(quantized.values())} of {n} linears quantized"
            )
        elif loaded_as is not None and set(counts) - {loaded_as}:
            problems.append(
                f"role {role}: planned {planned} loaded as {loaded_as}, realized {summary.realized}"
            )
    stray = [
        r.name
        for r in precision_map.modules.values()
        if not r.is_linear and r.params and r.precision not in PLAIN_NAMES.values()
    ]
    if stray:
        problems.append(f"non-linear modules quantized, which no plan asks for: {', '.join(stray[:5])}")
    if problems:
        raise PlanNotRealizedError(
            f"the precision plan {plan.preset!r}{' + ' + plan.override if plan.override else ''} did not "
            f"take effect: " + "; ".join(problems)
        )


def _verify_prequantized(precision_map: PrecisionMap) -> None:
    """A published quantized checkpoint must hold quantized linears somewhere: otherwise its
    quantization_config did not take effect and the run would measure a 16-bit model."""
    quantized = [
        r.name
        for r in precision_map.modules.values()
        if r.is_linear and r.precision not in PLAIN_NAMES.values()
    ]
    if not quantized:
        raise PlanNotRealizedError(
            "quant=prequantized: the checkpoint loaded without a single quantized linear layer; its "
            "quantization_config did not take effect (is the library it needs installed?)."
        )
