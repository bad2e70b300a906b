"""Precision presets and per-role plans: data, not branches.

A plan gives every role of the model (vision / projector / language / lm_head) one precision.
Presets are rows of `PRESETS`; `-P precision="vision=int8,language=nf4"` overrides roles of a
preset. Adding a preset is adding one entry here (and, for a new precision, one row of
`PRECISIONS` naming its backend). Everything is checked before any model is downloaded or loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlm_quant.errors import UserError

ROLES = ("vision", "projector", "language", "lm_head")


@dataclass(frozen=True)
class Precision:
    """One way of storing a role's weights."""

    name: str
    backend: str  # "torch", "bitsandbytes", "torchao", "auto-round", "llm-compressor", "onnxruntime",
    # "llama.cpp"
    bits: int
    description: str
    roles: tuple[str, ...] = ROLES  # the roles this precision can be applied to
    calibrated: bool = False  # needs calibration inputs (and replaces the model: see quantize/calibrated.py)
    realized: str = ""  # what the audit finds when it is not ``name`` (a library's own layer format)
    roles_reason: str = ""  # why ``roles`` is all it applies to (said when a plan asks for another role)

    @property
    def audited_as(self) -> str:
        return self.realized or self.name


LLAMA_CPP = "llama.cpp"
LLAMA_CPP_TEXT_ROLES = ("language", "lm_head")  # one text GGUF, one file type
LLAMA_CPP_MMPROJ_ROLES = ("vision", "projector")  # one mmproj GGUF

# llm-compressor quantizes decoder layers one after another on their captured inputs (its sequential
# pipeline, AWQ's and SmoothQuant's smoothing mappings are written for decoder layers); its VLM recipes
# all keep the vision tower and projector unquantized, and it has no mapping for a vision tower.
LLMCOMPRESSOR_LANGUAGE_ONLY = (
    "llm-compressor calibrates decoder layers one after another (its VLM recipes keep the vision tower "
    "and projector unquantized; AWQ and SmoothQuant have no mappings for them)"
)

PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp16", "torch", 16, "float16 weights and compute"),
        Precision("bf16", "torch", 16, "bfloat16 weights and compute"),
        Precision(
            "int8",
            "bitsandbytes",
            8,
            "bitsandbytes LLM.int8(): int8 weights, fp16 outliers above the threshold",
        ),
        Precision("nf4", "bitsandbytes", 4, "bitsandbytes 4-bit NormalFloat weights, 16-bit compute"),
        Precision(
            "int8wo", "torchao", 8, "torchao int8 weight-only (per-channel scales), 16-bit activations"
        ),
        Precision("w8a8", "torchao", 8, "torchao int8 dynamic activations + int8 weights"),
        # AutoRound (SignRound) quantizes the language model's decoder blocks as a whole, calibrated on
        # the study's own image-prompt pairs; it has no per-layer entry point for the other roles.
        Precision(
            "ar-w4",
            "auto-round",
            4,
            "AutoRound (SignRound) 4-bit weights, group-wise, calibrated",
            roles=("language",),
            calibrated=True,
        ),
        Precision(
            "ar-w8",
            "auto-round",
            8,
            "AutoRound (SignRound) 8-bit weights, group-wise, calibrated",
            roles=("language",),
            calibrated=True,
        ),
        # llm-compressor (compressed-tensors checkpoints) on the language model's decoder layers, calibrated
        # like AutoRound. transformers decompresses compressed-tensors layers to dense weights on the first
        # forward on every device (quantize/llmcompressor_backend.py): the audit names them "-dense".
        *(
            Precision(
                name,
                "llm-compressor",
                bits,
                description,
                roles=("language",),
                calibrated=True,
                realized=realized,
                roles_reason=LLMCOMPRESSOR_LANGUAGE_ONLY,
            )
            for name, bits, realized, description in (
                ("gptq-w4", 4, "ct-w4a16-dense", "GPTQ 4-bit weights, group-wise, calibrated"),
                ("gptq-w8", 8, "ct-w8a16-dense", "GPTQ 8-bit weights, group-wise, calibrated"),
                ("awq-w4", 4, "ct-w4a16-dense", "AWQ 4-bit weights, group-wise, calibrated"),
                (
                    "w8a8-sq",
                    8,
                    "ct-w8a8-dense",
                    "SmoothQuant + GPTQ: int8 weights per channel, int8 dynamic per-token activations "
                    "(llm-compressor)",
                ),
            )
        ),
        Precision("ort-fp32", "onnxruntime", 32, "vision tower in ONNX Runtime, float32"),
        Precision("ort-int8", "onnxruntime", 8, "ONNX Runtime INT8 dynamic: int8 weights per channel"),
        Precision("ort-int8-static", "onnxruntime", 8, "ONNX Runtime INT8 static QDQ (S8S8), calibrated"),
        # GGUF files run by llama.cpp (engines/llama_cpp.py): the whole model leaves torch, so a plan with
        # one llama.cpp role has only llama.cpp roles (`resolve_plan`).
        Precision("gguf-f16", "llama.cpp", 16, "GGUF F16 (llama.cpp's converter), run by llama.cpp"),
        Precision("gguf-q8_0", "llama.cpp", 8, "GGUF Q8_0 (llama.cpp's quantizer): 8-bit blocks of 32"),
        Precision(
            "gguf-q4_k_m",
            "llama.cpp",
            4,
            "GGUF Q4_K_M (llama.cpp's quantizer): 4-bit K-quants, some tensors Q6_K, its own rules",
            roles=LLAMA_CPP_TEXT_ROLES,
            roles_reason="the mmproj (vision tower + projector) is quantized to Q8_0 or kept F16 here",
        ),
    )
}
# quant=prequantized: a published checkpoint whose config carries a quantization_config, loaded as it is
# (never re-quantized); what each role holds is known only from the audit after loading.
PREQUANTIZED = "prequantized"
HALF_PRECISIONS = ("fp16", "bf16")


@dataclass(frozen=True)
class Preset:
    name: str
    roles: dict[str, str]  # role -> precision name
    description: str


def _preset(name: str, description: str, base: str = "fp16", **roles: str) -> Preset:
    plan = {role: base for role in ROLES}
    plan.update(roles)
    return Preset(name, plan, description)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _preset("fp16", "everything float16 (baseline)"),
        _preset("bf16", "everything bfloat16 (baseline)", base="bf16"),
        _preset("int8", "LLM.int8() on the language model's linears; rest fp16", language="int8"),
        _preset("int8-vision", "vision tower's linears in LLM.int8(); rest fp16", vision="int8"),
        _preset(
            "int8-all",
            "language model and vision tower in LLM.int8(); rest fp16",
            vision="int8",
            language="int8",
        ),
        _preset("nf4", "bitsandbytes NF4 4-bit language model; rest fp16", language="nf4"),
        _preset(
            "int8-ao",
            "torchao int8 weight-only language model (fast 8-bit path); rest fp16",
            language="int8wo",
        ),
        _preset(
            "w8a8-ao",
            "torchao int8 dynamic activation + int8 weight language model; rest fp16",
            language="w8a8",
        ),
        _preset(
            "ar-w4",
            "AutoRound 4-bit language model, calibrated on the split's own images; rest fp16",
            language="ar-w4",
        ),
        _preset(
            "ar-w8",
            "AutoRound 8-bit language model, calibrated on the split's own images; rest fp16",
            language="ar-w8",
        ),
        *(
            _preset(name, f"{description} (llm-compressor), calibrated; rest fp16", language=name)
            for name, description in (
                ("gptq-w4", "GPTQ W4A16 language model"),
                ("awq-w4", "AWQ W4A16 language model"),
                ("gptq-w8", "GPTQ W8A16 language model"),
                ("w8a8-sq", "SmoothQuant + GPTQ W8A8 INT8 language model"),
            )
        ),
        _preset(
            PREQUANTIZED,
            "a published quantized checkpoint (compressed-tensors, GPTQ, AWQ, AutoRound) "
            "loaded as it is; its quantization_config decides every role",
        ),
        _preset("int8-vision-ort", "vision tower in ONNX Runtime INT8 dynamic; rest fp16", vision="ort-int8"),
        _preset(
            "int8-vision-ort-static",
            "vision tower in ONNX Runtime, INT8 static QDQ (calibrated); rest fp16",
            vision="ort-int8-static",
        ),
        # llama.cpp (GGUF): the language model at the preset's type, the mmproj F16 unless
        # precision=vision=gguf-q8_0 (docs/gguf.md).
        *(
            _preset(name, description, base="gguf-f16", language=name, lm_head=name)
            for name, description in (
                ("gguf-f16", "GGUF F16 run by llama.cpp (the llama.cpp baseline)"),
                ("gguf-q8_0", "llama.cpp: GGUF Q8_0 language model; mmproj F16"),
                ("gguf-q4_k_m", "llama.cpp: GGUF Q4_K_M language model (llama.cpp's mix); mmproj F16"),
            )
        ),
        # What measured fastest per role on the idle 2-core AVX512-VNNI CPU (benchmarks/cpu_edge.py; README
        # "CPU runs"): the ONNX Runtime INT8 dynamic tower (1.81x the torch float32 tower, cosine 0.9992)
        # and the torchao int8 weight-only language model (decode 2.0x float32: decode is memory-bound).
        _preset(
            "cpu-fast",
            "CPU: ONNX Runtime INT8 vision tower + torchao int8 weight-only language model",
            vision="ort-int8",
            language="int8wo",
        ),
    )
}


@dataclass(frozen=True)
class PrecisionPlan:
    """The resolved plan: a precision per role, the 16-bit dtype of the unquantized roles."""

    preset: str
    roles: dict[str, str]
    override: str = ""

    @property
    def half_dtype_name(self) -> str:
        """The dtype name ('fp16' or 'bf16') of every role that is not quantized."""
        halves = {p for p in self.roles.values() if p in HALF_PRECISIONS}
        return halves.pop() if halves else "fp16"

    @property
    def quantized_roles(self) -> dict[str, str]:
        return {role: p for role, p in self.roles.items() if p not in HALF_PRECISIONS}

    @property
    def engine(self) -> str:
        """``llama.cpp`` for a GGUF plan (every role is llama.cpp's), else ``torch``."""
        return LLAMA_CPP if LLAMA_CPP in self.backends().values() else "torch"

    @property
    def prequantized(self) -> bool:
        """The checkpoint arrives quantized: nothing is applied, the audit says what each role holds."""
        return self.preset == PREQUANTIZED

    @property
    def calibrated_roles(self) -> dict[str, str]:
        """Roles whose precision needs calibration inputs (AutoRound, llm-compressor)."""
        return {role: p for role, p in self.quantized_roles.items() if PRECISIONS[p].calibrated}

    @property
    def in_place_roles(self) -> dict[str, str]:
        """Roles quantized in place after loading (bitsandbytes, torchao, ONNX Runtime; not GGUF files)."""
        return {
            role: p
            for role, p in self.quantized_roles.items()
            if not PRECISIONS[p].calibrated and PRECISIONS[p].backend != LLAMA_CPP
        }

    def backends(self) -> dict[str, str]:
        """role -> library that stores it ('torch', 'bitsandbytes', 'torchao')."""
        return {role: PRECISIONS[p].backend for role, p in self.roles.items()}

    def to_params(self) -> dict[str, str]:
        if self.prequantized:  # what each role holds is the audit's answer (realized_precision_<role>)
            return {
                **{f"precision_{r}": "checkpoint" for r in ROLES},
                **{f"backend_{r}": "checkpoint" for r in ROLES},
            }
        params = {f"precision_{role}": p for role, p in self.roles.items()}
        params.update({f"backend_{role}": b for role, b in self.backends().items()})
        return params


def parse_override(text: str) -> dict[str, str]:
    """'vision=int8,language=nf4' -> {'vision': 'int8', 'language': 'nf4'}, validated."""
    roles: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        role, sep, precision = (s.strip() for s in item.partition("="))
        if not sep:
            raise UserError(f"precision override {item!r} must look like role=precision, e.g. 'vision=int8'.")
        if role not in ROLES:
            raise UserError(f"unknown role {role!r} in precision override; roles: {', '.join(ROLES)}.")
        if precision not in PRECISIONS:
            raise UserError(
                f"unknown precision {precision!r} for role {role}; choose one of {', '.join(PRECISIONS)}."
            )
        if role in roles:
            raise UserError(f"role {role!r} is given twice in the precision override.")
        if role not in PRECISIONS[precision].roles:
            reason = PRECISIONS[precision].roles_reason
            raise UserError(
                f"precision {precision} applies only to role(s) {', '.join(PRECISIONS[precision].roles)}, "
                f"not to {role}{': ' + reason if reason else ''}."
            )
        roles[role] = precision
    return roles


def resolve_plan(quant: str, override: str = "") -> PrecisionPlan:
    """The plan of preset ``quant`` with ``override`` applied; errors name the valid choices."""
    if quant not in PRESETS:
        raise UserError(f"unknown quant preset {quant!r}; choose one of {', '.join(PRESETS)}.")
    roles = dict(PRESETS[quant].roles)
    if quant == PREQUANTIZED and override:
        raise UserError(
            "quant=prequantized loads a checkpoint as it was published; it cannot take a precision "
            "override (the checkpoint's quantization_config decides every role)."
        )
    overrides = parse_override(override)
    roles.update(overrides)
    roles = _llama_cpp_roles(roles, overrides)
    plan = PrecisionPlan(quant, roles, override)
    halves = {p for p in roles.values() if p in HALF_PRECISIONS}
    if len(halves) > 1:
        raise UserError(
            f"the plan mixes fp16 and bf16 roles ({roles}); unquantized roles share one 16-bit dtype."
        )
    return plan


def _llama_cpp_roles(roles: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """A GGUF plan's roles: all llama.cpp's (llama.cpp runs the whole model), ``lm_head`` at the
    language model's type and ``projector`` at the vision tower's unless set (each pair shares one
    file and one file type); UserError for a mix with torch roles or a pair set apart."""
    gguf_roles = [role for role, p in roles.items() if PRECISIONS[p].backend == LLAMA_CPP]
    if not gguf_roles:
        return roles
    others = {role: p for role, p in roles.items() if PRECISIONS[p].backend != LLAMA_CPP}
    if others:
        raise UserError(
            f"llama.cpp runs the whole model from GGUF files, so every role needs a gguf-* precision; "
            f"{', '.join(f'{r}={p}' for r, p in others.items())} would run in torch. "
            "Use e.g. quant=gguf-q8_0 with precision=vision=gguf-q8_0."
        )
    resolved = dict(roles)
    for lead, follower in (("language", "lm_head"), ("vision", "projector")):
        if follower not in overrides:
            resolved[follower] = resolved[lead]
        if resolved[follower] != resolved[lead]:
            raise UserError(
                f"{lead} and {follower} are one GGUF file with one file type in llama.cpp; "
                f"{lead}={resolved[lead]} and {follower}={resolved[follower]} cannot differ."
            )
    return resolved
