"""llama.cpp's own Hugging Face -> GGUF converter: where it lives, how it is installed, how it is run.

The llama-cpp-python wheel ships the C libraries (quantizer, libmtmd) but not ``convert_hf_to_gguf.py``;
the converter, its ``conversion`` package and the matching ``gguf-py`` are in the same release's sdist
(``vendor/llama.cpp``). `install_converter` copies those three paths out of the sdist (``pip download``,
no build) into ``$VLMQ_GGUF_CONVERTER`` (default ``$XDG_CACHE_HOME/vlm-quant/llama.cpp-<version>``), so
the converter always matches the compiled library.

`convert` runs it in a child process (``vlm_quant.quantize.gguf_convert_child``), once for the text model
and once with ``--mmproj`` for the vision tower + projector; a family the converter does not know is
refused with the converter's own last error line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from vlm_quant.errors import UserError

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
# The paths of the sdist's vendor/llama.cpp that the converter needs.
CONVERTER_PATHS = ("convert_hf_to_gguf.py", "conversion", "gguf-py")
INSTALL_HINT = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install "vlm-quant[gguf]" && python tools/install_gguf_converter.py'
)


def converter_dir() -> Path:
    """``$VLMQ_GGUF_CONVERTER``, else ``$XDG_CACHE_HOME/vlm-quant/llama.cpp-<version>`` (~/.cache)."""
    if os.environ.get("VLMQ_GGUF_CONVERTER"):
        return Path(os.environ["VLMQ_GGUF_CONVERTER"])
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "vlm-quant" / f"llama.cpp-{LLAMA_CPP_PYTHON_VERSION}"


def converter_missing() -> str | None:
    """Why the converter cannot run here (with the install command), or None when it can."""
    script = converter_dir() / "convert_hf_to_gguf.py"
    if not script.is_file():
        return f"llama.cpp's converter not found at {script}; install it with: {INSTALL_HINT}"
    return None


def install_converter(target: Path | None = None) -> Path:
    """Copy the converter out of the llama-cpp-python sdist of `LLAMA_CPP_PYTHON_VERSION` into ``target``."""
    target = target or converter_dir()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                tmp,
                f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
            ],
            check=True,
        )
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as archive:
            root = archive.getnames()[0].split("/")[0]
            wanted = [f"{root}/vendor/llama.cpp/{path}" for path in CONVERTER_PATHS]
            members = [m for m in archive.getmembers() if any(m.name.startswith(w) for w in wanted)]
            archive.extractall(tmp, members=members, filter="data")
        target.mkdir(parents=True, exist_ok=True)
        for path in CONVERTER_PATHS:
            source = Path(tmp) / root / "vendor" / "llama.cpp" / path
            destination = target / path
            if destination.exists():
                shutil.rmtree(destination) if destination.is_dir() else destination.unlink()
            shutil.copytree(source, destination) if source.is_dir() else shutil.copy2(source, destination)
    return target


def convert(checkpoint: Path, out_file: Path, *, mmproj: bool, outtype: str = "f16") -> Path:
    """``out_file``: the text model (``mmproj=False``) or the vision tower + projector of ``checkpoint``
    as GGUF at ``outtype`` (f32, f16, bf16 or q8_0), written by llama.cpp's converter."""
    if missing := converter_missing():
        raise UserError(missing)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "vlm_quant.quantize.gguf_convert_child",
        str(converter_dir()),
        str(checkpoint),
        str(out_file),
        outtype,
        "mmproj" if mmproj else "text",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out_file.is_file():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
        part = "vision tower + projector (mmproj)" if mmproj else "text model"
        raise UserError(f"llama.cpp's converter cannot convert the {part} of {checkpoint}: {reason}")
    return out_file
