"""The two GGUF files a llama.cpp run needs, built from the checkpoint the run loaded, cached, and audited.

``text`` (the language model + lm_head) and ``mmproj`` (vision tower + projector) are converted at F16 by
llama.cpp's own converter (`gguf_converter`), then quantized by llama.cpp's quantizer (`gguf.quantize`) to
the plan's precisions: ``language`` decides the text file (``lm_head`` follows it: one file type),
``vision`` decides the mmproj (``projector`` follows it: one file).

Cache: ``$VLMQ_GGUF_CACHE`` or ``$XDG_CACHE_HOME/vlm-quant/gguf``; one entry
``<checkpoint>-<digest>-llama.cpp<version>/`` holds the F16 files and each quantized file once made, so a
sweep converts a checkpoint once. The digest covers the checkpoint's directory and its weight files' names,
sizes and modification times (a re-downloaded or rebuilt checkpoint gets a new entry); files are written
under a temporary name and renamed, under a file lock, so concurrent runs of a sweep never read half a file.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from vlm_quant.errors import UserError
from vlm_quant.quantize import gguf, gguf_converter

F16 = "gguf-f16"
TEXT_ROLES = ("language", "lm_head")  # roles stored in the text GGUF
MMPROJ_ROLES = ("vision", "projector")  # roles stored in the mmproj GGUF
# GGML types that are not quantized: a quantized role holding one of these (beyond the small tensors
# the converter forces to F32) means the plan did not take effect.
FLOAT_TYPES = ("F32", "F16", "BF16", "F64")


# model_type -> what llama.cpp 0.3.36 does with it: these convert (text + mmproj) and run an image in
# libmtmd (docs/gguf_families.md, measured by tools/write_gguf_families.py on the tiny test models and the
# real Qwen2-VL-2B, Qwen2.5-VL-3B and SmolVLM-256M architectures).
RUNS_ON_LLAMA_CPP = ("idefics3", "smolvlm", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "gemma3")
REFUSED_BY_CONVERTER = {
    "llava": "its mmproj: ValueError: Unsupported model type: clip_vision_model (the converter takes Pixtral "
    "and Mistral-3 towers only)",
    "internvl": "Model InternVLForConditionalGeneration is not supported (the converter knows OpenGVLab's "
    "remote-code layout only)",
    "llava_onevision": "Model LlavaOnevisionForConditionalGeneration is not supported",
    "idefics2": "Model Idefics2ForConditionalGeneration is not supported",
    "paligemma": "Model PaliGemmaForConditionalGeneration is not supported",
}


def check_family(model_type: str) -> None:
    """UserError, before anything loads, for a family llama.cpp's converter refuses (its own reason) or that
    was never converted and run here; the list and the reasons: docs/gguf_families.md."""
    if model_type in RUNS_ON_LLAMA_CPP:
        return
    reason = REFUSED_BY_CONVERTER.get(model_type, "not converted and run with llama.cpp here yet")
    raise UserError(
        f"the gguf-* presets cannot run model_type {model_type!r}: llama.cpp's converter says {reason}. "
        f"Families that run: {', '.join(RUNS_ON_LLAMA_CPP)} (docs/gguf_families.md)."
    )


@dataclass(frozen=True)
class GgufFiles:
    """The text and mmproj GGUF of one plan, and how they were obtained."""

    text: Path
    mmproj: Path
    convert_s: float | None  # seconds llama.cpp's converter ran in this call; None: the F16 files were cached
    quantize_s: float | None  # seconds llama.cpp's quantizer ran in this call; None: nothing was quantized

    @property
    def from_cache(self) -> bool:
        """Neither file was made by this call."""
        return self.convert_s is None and self.quantize_s is None

    def size_mib(self) -> float:
        return gguf.size_on_disk_mib(self.text, self.mmproj)


def cache_root() -> Path:
    """``$VLMQ_GGUF_CACHE``, else ``$XDG_CACHE_HOME/vlm-quant/gguf`` (``~/.cache/vlm-quant/gguf``)."""
    if os.environ.get("VLMQ_GGUF_CACHE"):
        return Path(os.environ["VLMQ_GGUF_CACHE"])
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "vlm-quant" / "gguf"


def entry_name(checkpoint: Path) -> str:
    """The cache entry of ``checkpoint``: its name, a digest of its path and weight files (name, size,
    mtime), and llama-cpp-python's version (the converter and quantizer that wrote the files)."""
    checkpoint = checkpoint.resolve()
    digest = hashlib.sha256(str(checkpoint).encode())
    for weights in sorted(checkpoint.glob("*.safetensors")) + sorted(checkpoint.glob("*.bin")):
        stat = weights.stat()
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    version = gguf_converter.LLAMA_CPP_PYTHON_VERSION
    return f"{checkpoint.name}-{digest.hexdigest()[:12]}-llama.cpp{version}"


def build_files(checkpoint: Path, text_precision: str, mmproj_precision: str) -> GgufFiles:
    """The plan's two GGUF files for ``checkpoint`` (a transformers checkpoint directory), from the cache
    or made now."""
    entry = cache_root() / entry_name(checkpoint)
    entry.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    with FileLock(str(entry / ".lock")):
        text = _file(entry, "text", text_precision, checkpoint, seconds)
        mmproj = _file(entry, "mmproj", mmproj_precision, checkpoint, seconds)
    return GgufFiles(text, mmproj, seconds.get("convert"), seconds.get("quantize"))


def _file(entry: Path, part: str, precision: str, checkpoint: Path, seconds: dict[str, float]) -> Path:
    """``<part>-<precision>.gguf`` in ``entry``, converting the F16 file first when it is missing;
    ``seconds`` accumulates the converter's and the quantizer's time."""
    target = entry / f"{part}-{precision}.gguf"
    if target.is_file():
        return target
    f16 = entry / f"{part}-{F16}.gguf"
    if not f16.is_file():
        started = time.perf_counter()
        partial = f16.with_suffix(".partial")
        gguf_converter.convert(checkpoint, partial, mmproj=part == "mmproj", outtype="f16")
        partial.rename(f16)
        seconds["convert"] = seconds.get("convert", 0.0) + time.perf_counter() - started
    if precision != F16:
        started = time.perf_counter()
        partial = target.with_suffix(".partial")
        gguf.quantize(f16, partial, precision)
        partial.rename(target)
        seconds["quantize"] = seconds.get("quantize", 0.0) + time.perf_counter() - started
    return target


@dataclass(frozen=True)
class RoleTypes:
    """The GGML types of one role's weight matrices in a GGUF file, as read back (``{"Q8_0": 72}``), the
    types of its other tensors (norms, biases, embeddings of a vision tower), and the bytes of all of
    them as stored."""

    role: str
    types: dict[str, int]
    other: dict[str, int]
    bytes: int

    @property
    def n_matrices(self) -> int:
        return sum(self.types.values())

    def realized(self) -> str:
        """``gguf-q8_0``, or for a mix ``gguf-q5_0 (166/210 matrices) + gguf-q4_k (16/210 matrices)``
        (most frequent first); ``none`` when the file holds no matrix of the role (a tied lm_head)."""
        if not self.types:
            return "none"
        ordered = sorted(self.types.items(), key=lambda item: (-item[1], item[0]))
        if len(ordered) == 1:
            return f"gguf-{ordered[0][0].lower()}"
        return " + ".join(f"gguf-{name.lower()} ({n}/{self.n_matrices} matrices)" for name, n in ordered)


def audit(files: GgufFiles) -> dict[str, RoleTypes]:
    """Per role (vision, projector, language, lm_head; the token embedding is part of ``language``), the
    GGML types of its tensors, read from the two files with the ``gguf`` package: the ``.weight`` matrices
    of its linear layers (what the torch audit's ``realized_precision_<role>`` covers) and the rest (norms,
    biases, the token / patch / position embeddings)."""
    from gguf import GGUFReader

    roles = (*MMPROJ_ROLES, *TEXT_ROLES)
    matrices: dict[str, Counter] = {role: Counter() for role in roles}
    others: dict[str, Counter] = {role: Counter() for role in roles}
    stored: Counter = Counter()
    for path in (files.text, files.mmproj):
        for tensor in GGUFReader(path).tensors:
            role = gguf.tensor_role(tensor.name)
            role = "language" if role == "embedding" else role
            # As the torch audit's linear weights: embeddings (token, patch, position) count as "other".
            name = tensor.name
            is_matrix = len(tensor.shape) >= 2 and name.endswith(".weight") and "embd" not in name
            (matrices if is_matrix else others)[role][tensor.tensor_type.name] += 1
            stored[role] += int(tensor.n_bytes)
    return {role: RoleTypes(role, dict(matrices[role]), dict(others[role]), stored[role]) for role in roles}


def verify(plan_roles: dict[str, str], found: dict[str, RoleTypes]) -> None:
    """UserError when a role the plan quantizes holds no quantized matrix, or an F16 one (F32 tensors
    the converter forces, e.g. a vision tower's position embedding, are allowed): a plan that did not
    take effect is an error, never a silent F16 run."""
    for role, precision in plan_roles.items():
        if precision == F16 or not found[role].types:
            continue
        types = found[role].types
        quantized = {t: n for t, n in types.items() if t not in FLOAT_TYPES}
        if not quantized or any(t in types for t in ("F16", "BF16")):
            raise UserError(
                f"the GGUF audit found {role} stored as {found[role].realized()}, not {precision}: "
                "llama.cpp's quantizer did not apply the plan to this role."
            )
