"""GGUF quantization with llama.cpp's own quantizer, and the audit of what a GGUF file really holds.

Presets: ``gguf-q8_0`` and ``gguf-q4_k_m`` for the text model, ``f16`` or ``q8_0`` for the mmproj
(vision tower + projector). llama.cpp's ``llama_model_quantize`` (the library behind ``llama-quantize``)
does the work, with its own per-tensor rules: Q4_K_M keeps some tensors at Q6_K, and a tensor whose rows
are not a multiple of the 256-value K-quant block falls back to a legacy type (Q5_0, Q8_0 ...). So the
audit reads the tensor types back from the file (the ``gguf`` package) instead of trusting the preset.
"""

from __future__ import annotations

import ctypes
from collections import Counter
from pathlib import Path

from vlm_quant.errors import UserError

# Preset -> llama.cpp file type (the LLAMA_FTYPE_MOSTLY_* name in llama_cpp).
GGUF_FTYPES = {"gguf-q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "gguf-q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
MMPROJ_PRECISIONS = ("f16", "gguf-q8_0")
INSTALL_LLAMA_CPP = 'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install "vlm-quant[gguf]"'


def llama_cpp_missing() -> str | None:
    """Why llama-cpp-python cannot be used here (with the install command), or None."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        return f"llama-cpp-python is not installed ({exc}); install it with: {INSTALL_LLAMA_CPP}"
    return None


def quantize(source: Path, target: Path, preset: str, *, threads: int = 0) -> Path:
    """``target``: ``source`` (an f16/f32 GGUF) quantized to ``preset`` by llama.cpp's quantizer.

    ``threads``: 0 lets llama.cpp use every core.
    """
    if preset not in GGUF_FTYPES:
        raise UserError(f"unknown GGUF preset {preset!r}; choose one of {sorted(GGUF_FTYPES)}")
    if missing := llama_cpp_missing():
        raise UserError(missing)
    import llama_cpp

    from vlm_quant.engines.llama_cpp import quiet_llama_cpp_logs

    quiet_llama_cpp_logs()  # its per-tensor lines go to the run's log, not the terminal
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, GGUF_FTYPES[preset])
    params.nthread = threads
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if status != 0 or not target.is_file():
        raise RuntimeError(f"llama.cpp's quantizer returned {status} for {source} -> {preset}")
    return target


def tensor_role(name: str) -> str:
    """The role of a GGUF tensor from llama.cpp's tensor names: ``v.*`` vision tower, ``mm.*`` projector
    (mmproj files), ``token_embd`` embedding, ``output`` lm_head, the rest (``blk.*``, ``output_norm``)
    the language model."""
    if name.startswith("v."):
        return "vision"
    if name.startswith("mm."):
        return "projector"
    if name.startswith("token_embd."):
        return "embedding"
    if name.startswith("output."):
        return "lm_head"
    return "language"


def tensor_types_per_role(path: Path) -> dict[str, dict[str, int]]:
    """Per role, how many tensors of ``path`` are stored in each GGML type (``{"language": {"Q8_0": 14,
    "F32": 5}}``), read from the file with the ``gguf`` package."""
    from gguf import GGUFReader

    counts: dict[str, Counter] = {}
    for tensor in GGUFReader(path).tensors:
        counts.setdefault(tensor_role(tensor.name), Counter())[tensor.tensor_type.name] += 1
    return {role: dict(sorted(types.items())) for role, types in sorted(counts.items())}


def matrix_types_per_role(path: Path) -> dict[str, dict[str, int]]:
    """Like `tensor_types_per_role`, for the 2-D weight matrices only (what quantization is about: norms
    and biases stay F32 in every GGUF)."""
    from gguf import GGUFReader

    counts: dict[str, Counter] = {}
    for tensor in GGUFReader(path).tensors:
        if len(tensor.shape) >= 2 and tensor.name.endswith(".weight"):
            counts.setdefault(tensor_role(tensor.name), Counter())[tensor.tensor_type.name] += 1
    return {role: dict(sorted(types.items())) for role, types in sorted(counts.items())}


def size_on_disk_mib(*paths: Path) -> float:
    """Total size of the GGUF files, in MiB."""
    return sum(path.stat().st_size for path in paths) / 2**20
