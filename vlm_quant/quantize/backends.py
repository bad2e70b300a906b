"""Quantization backends: can this plan run here (checked before any download), and apply it in place.

Why we quantize in place after loading, rather than passing ``BitsAndBytesConfig``/``TorchAoConfig``
to ``from_pretrained``:

* Exact names, not rules. ``apply_plan`` expands each role to the exact ``nn.Linear`` paths
  (``linear_modules_by_role``) and hands the backend that list. A skip list or regex handed to
  transformers is interpreted by code we do not control: bitsandbytes' ``llm_int8_skip_modules`` is
  ignored for some VLM families (their vision towers were quantized anyway), and a ``TorchAoConfig``
  regex rule has silently quantized nothing. Here the backend sees names, and the audit
  (``audit.py``) checks every module afterwards.
* One path for every model. Pretrained and random weights, every family, every device go through
  ``load_vlm`` at 16-bit (float32 on CPU) and then through the same swap, so a difference between two
  runs is the precision, not the loading route.
* Per-role mixing. ``vision=int8,language=nf4`` or bitsandbytes on one role and torchao on another
  is just two swaps; transformers accepts one quantization config per model.

The cost: the model is briefly held at 16-bit before it shrinks, so peak load memory is the 16-bit
size (the weights are quantized layer by layer, so only one extra layer is alive at a time).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from packaging.version import Version
from torch import nn

from vlm_quant.errors import UserError
from vlm_quant.models.families import FamilySpec, linear_modules_by_role
from vlm_quant.quantize import bitsandbytes_backend, gguf_converter, onnxruntime_backend, torchao_backend
from vlm_quant.quantize.plan_fit import check_in_place_roles
from vlm_quant.quantize.presets import PRECISIONS, PrecisionPlan


@dataclass(frozen=True)
class Backend:
    """A quantization library: how to install it and from which version each device works."""

    name: str
    pip: str  # what to install
    min_version: str  # oldest version whose API we use (pyproject's floor)
    cpu_since: str | None  # oldest version whose layers run on CPU (None: every supported version)
    module: str = ""  # import name when it differs from ``name``
    install: str = ""  # the install command when it is not ``pip install '<pip>'`` (or the quant extra)


BACKENDS: dict[str, Backend] = {
    # CPU kernels (int8_vectorwise_quant, 4-bit quantize/dequantize, the LLM.int8() matmul) arrived
    # with the multi-backend release: 0.45.5 raises "All input tensors need to be on the same GPU" for
    # Linear8bitLt and an AssertionError for Linear4bit on CPU; 0.46.1, 0.47.0, 0.48.0 and 0.50.2 run
    # both (checked with torch 2.13 on x86-64).
    "bitsandbytes": Backend("bitsandbytes", "bitsandbytes>=0.48", "0.48.0", cpu_since="0.46.0"),
    # Int8WeightOnlyConfig and Int8DynamicActivationInt8WeightConfig run on CPU (float32) and CUDA in
    # torchao 0.18 (Int8Tensor); the probe below checks the installed version on the actual device.
    "torchao": Backend("torchao", "torchao>=0.13", "0.13.0", cpu_since=None),
    # AutoRound 0.16 quantizes on CPU and CUDA; its exported auto_round format reloads through
    # transformers' AutoRound quantizer with the torch_zp kernels on either device.
    "auto-round": Backend("auto-round", "auto-round>=0.16", "0.16.0", cpu_since=None, module="auto_round"),
    # GPTQ, AWQ, SmoothQuant through llm-compressor 0.14 (its metadata pins transformers<=5.17, so it is
    # installed with --no-deps: docs/ptq_methods.md); calibrates and exports on CPU and CUDA.
    "llm-compressor": Backend(
        "llm-compressor",
        "llmcompressor==0.14.0.1",
        "0.14.0",
        cpu_since=None,
        module="llmcompressor",
        install="pip install --no-deps 'llmcompressor==0.14.0.1' 'loguru>=0.7.2' (keeps transformers 5.23)",
    ),
    # The vision tower as an ONNX Runtime session (onnxruntime_backend.py); CPU EP in every build.
    "onnxruntime": Backend("onnxruntime", "onnxruntime>=1.20", "1.20.0", cpu_since=None),
    # GGUF files run by llama.cpp (llama-cpp-python's libllama + libmtmd), built from source by pip; the
    # converter script comes from the same release's sdist (docs/gguf.md).
    "llama.cpp": Backend(
        "llama.cpp",
        "llama-cpp-python==0.3.36",
        "0.3.36",
        cpu_since=None,
        module="llama_cpp",
        install=gguf_converter.INSTALL_HINT,
    ),
}
EXTRA = "pip install 'vlm-quant[quant]'"
_HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


# --- before loading -----------------------------------------------------------------------------


def check_plan_runnable(plan: PrecisionPlan, device: torch.device, ort_provider: str = "auto") -> None:
    """UserError (naming the fix) when ``plan`` cannot run on ``device`` with the installed libraries.

    Checks, in order: the device kind; each backend the plan needs is importable and recent enough;
    the backend runs on this device at this version; and then a probe: each planned precision is
    applied to a small ``nn.Linear`` on ``device`` through the very code ``apply_plan`` uses, and run
    once, so a missing CUDA binary, an unsupported GPU or a CPU path absent from this version fails
    here, in milliseconds, instead of after a multi-gigabyte download. Rules that need the model's
    structure (a tied ``lm_head``, group sizes, the family of an ONNX Runtime tower) are checked on the
    meta-device model by ``plan_fit.check_plan_fits``.
    """
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device {device.type!r} is not supported for quantized plans; use cpu or cuda.")
    for backend, roles in _roles_by_backend(plan).items():
        if backend == "onnxruntime":  # a whole-module swap, not a linear layer: checked on its own
            onnxruntime_backend.check_runnable(roles, ort_provider, device)
        version = installed_version(backend, roles)
        _check_version(backend, version, roles, device)
        if backend == "llama.cpp" and (missing := gguf_converter.converter_missing()):
            raise UserError(missing)
    probe_dtype = torch.float32 if device.type == "cpu" else _HALF_DTYPES[plan.half_dtype_name]
    for precision in sorted(set(plan.in_place_roles.values())):  # calibrated precisions: no layer probe
        if PRECISIONS[precision].backend != "onnxruntime":  # a session, not a layer: checked when exported
            probe(precision, device, probe_dtype)


def installed_version(backend: str, roles: dict[str, str]) -> str:
    """The version of an importable backend; UserError saying which pip package to install otherwise."""
    info = BACKENDS[backend]
    try:
        module = importlib.import_module(info.module or backend)
    except ImportError as error:
        install = info.install or f"pip install '{info.pip}' (or {EXTRA})"
        raise UserError(
            f"the plan {_describe(roles)} needs {backend}, which is not installed ({error}). "
            f"Install it: {install}, or choose a plan without it, "
            f"e.g. quant=fp16."
        ) from None
    return str(getattr(module, "__version__", "0"))


def _check_version(backend: str, version: str, roles: dict[str, str], device: torch.device) -> None:
    info = BACKENDS[backend]
    if Version(version) < Version(info.min_version):
        raise UserError(
            f"{backend} {version} is too old for {_describe(roles)}: vlm-quant needs {info.pip}. "
            f"Upgrade: pip install -U '{info.pip}'."
        )
    if device.type == "cpu" and info.cpu_since and Version(version) < Version(info.cpu_since):
        raise UserError(
            f"{backend} {version} runs {_describe(roles)} only on CUDA GPUs (its CPU kernels arrived in "
            f"{info.cpu_since}). Use device=cuda, or upgrade: pip install -U '{info.pip}'."
        )


def probe(precision: str, device: torch.device, dtype: torch.dtype) -> None:
    """Quantize and run a 64x128 linear layer at ``precision`` on ``device``; UserError if that fails."""
    try:
        reason = _probe_failure(precision, device, dtype)
    except Exception as error:  # noqa: BLE001 - any failure of the backend is the answer we want
        lines = str(error).strip().splitlines()
        reason = f"{type(error).__name__}: {lines[0] if lines else ''}"
    if reason:
        backend = PRECISIONS[precision].backend
        fix = "Use device=cuda (a CUDA GPU)" if device.type == "cpu" else "Check the backend's CUDA build"
        raise UserError(
            f"precision {precision} ({backend} {installed_version(backend, {})}) does not run on "
            f"{device.type} in {str(dtype).removeprefix('torch.')}: {reason}. {fix}, or plan another "
            f"precision for the roles that use {precision}."
        )


def _probe_failure(precision: str, device: torch.device, dtype: torch.dtype) -> str:
    """Empty when ``precision`` quantizes a small layer on ``device`` and runs it; the failure otherwise."""
    generator = torch.Generator().manual_seed(0)
    layer = nn.Linear(128, 64)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(64, 128, generator=generator) / 12)
    tiny = nn.Sequential(layer).to(device=device, dtype=dtype).eval()
    x = torch.randn(2, 128, generator=generator).to(device=device, dtype=dtype)
    _quantize(tiny, ["0"], precision, _settings(dtype, 6.0, True))
    with torch.no_grad():
        y = tiny(x)
    if type(tiny[0]) is nn.Linear and type(tiny[0].weight) is nn.Parameter:
        return "the layer was left unquantized"
    if y.shape != (2, 64) or not bool(torch.isfinite(y).all()):
        return f"the quantized layer returned a wrong or non-finite output of shape {tuple(y.shape)}"
    return ""


# --- after loading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedRole:
    """What ``apply_plan`` did to one quantized role."""

    role: str
    precision: str
    backend: str
    quantizer: str  # "bitsandbytes.Linear8bitLt", "bitsandbytes.Linear4bit", "torchao.Int8WeightOnlyConfig"
    module_names: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def module_count(self) -> int:
        return len(self.module_names)


@dataclass(frozen=True)
class AppliedPlan:
    """The quantized roles of a plan as applied, with the settings and versions that were used."""

    plan: PrecisionPlan
    roles: dict[str, AppliedRole]
    backend_versions: dict[str, str]
    quantize_time_s: float

    def to_params(self) -> dict[str, Any]:
        """Flat MLflow params: quantizer and linear count per quantized role, then backend settings."""
        params: dict[str, Any] = {}
        for role, applied in self.roles.items():
            params[f"quantizer_{role}"] = applied.quantizer
            params[f"quantized_linears_{role}"] = applied.module_count
            params.update(applied.settings)  # same value for every role of one precision
        params.update({f"{name}_version": version for name, version in self.backend_versions.items()})
        return params

    def to_metrics(self) -> dict[str, float]:
        return {"quantize_time_s": self.quantize_time_s}


def apply_plan(
    model: nn.Module,
    family: FamilySpec,
    plan: PrecisionPlan,
    *,
    device: torch.device | str,
    compute_dtype: torch.dtype,
    int8_threshold: float = 6.0,
    double_quant: bool = True,
    ort: onnxruntime_backend.OrtSettings | None = None,
) -> AppliedPlan:
    """Quantize, in place, the ``nn.Linear`` modules of every quantized role of ``plan``.

    Call it on the model as loaded (16-bit, or float32 on CPU) on ``device``: each layer is quantized
    where its weights are. Unquantized roles are left untouched. Raises UserError for a quantized role
    that owns no linear layer or a quantized ``lm_head`` tied to the token embeddings (``plan_fit``).
    ONNX Runtime precisions (vision only) replace the whole role module by a session and need ``ort``
    (the example and calibration inputs: ``vlm_quant/run/onnx_inputs.py`` builds them).
    """
    started = time.perf_counter()
    by_role = linear_modules_by_role(model, family)
    # Calibrated roles (AutoRound) were quantized before this call (quantize/calibrated.py); the audit
    # checks them like every other role.
    # Checked before the run opened on the meta-device model; again here, before touching any module.
    check_in_place_roles(plan, model, family, by_role)
    settings = _settings(compute_dtype, int8_threshold, double_quant)
    applied: dict[str, AppliedRole] = {}
    for role, precision in plan.in_place_roles.items():
        names = by_role[role]
        if PRECISIONS[precision].backend == "onnxruntime":
            device = torch.device(device)
            applied[role] = _apply_ort(model, family, role, precision, ort, device, compute_dtype)
            continue
        _quantize(model, names, precision, settings)
        applied[role] = AppliedRole(
            role,
            precision,
            PRECISIONS[precision].backend,
            _quantizer_name(precision),
            tuple(names),
            _role_settings(precision, settings, model, names),
        )
    _synchronize(device)
    versions = {b: installed_version(b, {}) for b in sorted({a.backend for a in applied.values()})}
    return AppliedPlan(plan, applied, versions, time.perf_counter() - started)


def _apply_ort(model, family, role, precision, ort, device, compute_dtype) -> AppliedRole:
    """Swap the role's module for an ONNX Runtime session (onnxruntime_backend.apply)."""
    if ort is None:
        raise ValueError(f"{role}={precision} needs OrtSettings (example inputs) passed as ort=")
    path = family.roles[role][0]
    nested = tuple(  # another role inside the tower (Qwen2-VL's merger) runs inside the graph
        prefix
        for other, prefixes in family.roles.items()
        if other != role
        for prefix in prefixes
        if prefix.startswith(path + ".")
    )
    settings = onnxruntime_backend.apply(model, path, precision, ort, device, compute_dtype, nested)
    quantizer = onnxruntime_backend.QUANTIZERS[precision]
    return AppliedRole(role, precision, "onnxruntime", quantizer, (path,), settings)


def _quantize(model: nn.Module, names: list[str], precision: str, settings: bitsandbytes_backend.BnbSettings):
    backend = PRECISIONS[precision].backend
    if backend == "bitsandbytes":
        bitsandbytes_backend.quantize_modules(model, names, precision, settings)
    elif backend == "torchao":
        visited = torchao_backend.quantize_modules(model, names, precision)
        missed = sorted(set(names) - set(visited))
        if missed:
            raise RuntimeError(
                f"torchao quantize_ did not visit {len(missed)} of {len(names)} requested modules "
                f"(e.g. {missed[:3]}); the module names no longer match the model."
            )
    else:
        raise ValueError(f"precision {precision!r} has no quantization backend ({backend!r})")


def _settings(compute_dtype: torch.dtype, int8_threshold: float, double_quant: bool):
    return bitsandbytes_backend.BnbSettings(int8_threshold, compute_dtype, double_quant)


def _quantizer_name(precision: str) -> str:
    if PRECISIONS[precision].backend == "onnxruntime":
        return onnxruntime_backend.QUANTIZERS[precision]
    if PRECISIONS[precision].backend == "bitsandbytes":
        return bitsandbytes_backend.QUANTIZERS[precision]
    return f"torchao.{torchao_backend.CONFIGS[precision]}"


def _role_settings(precision: str, settings, model: nn.Module, names: list[str]) -> dict[str, Any]:
    """The knobs of a precision as MLflow params (keys shared by every role using that precision)."""
    if precision == "int8":
        return {"int8_threshold": float(settings.int8_threshold)}
    if precision == "nf4":
        return {
            "nf4_compute_dtype": str(settings.compute_dtype).removeprefix("torch."),
            "nf4_double_quant": bool(settings.double_quant),
            "nf4_blocksize": bitsandbytes_backend.nf4_blocksize(model, names),
        }
    return {f"torchao_config_{precision}": torchao_backend.CONFIGS[precision]}


def _roles_by_backend(plan: PrecisionPlan) -> dict[str, dict[str, str]]:
    grouped: dict[str, dict[str, str]] = {}
    for role, precision in plan.quantized_roles.items():
        grouped.setdefault(PRECISIONS[precision].backend, {})[role] = precision
    return grouped


def _describe(roles: dict[str, str]) -> str:
    return ", ".join(f"{role}={precision}" for role, precision in roles.items()) or "this plan"


def _synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
