"""Copy llama.cpp's HF -> GGUF converter out of the llama-cpp-python sdist into the vlm-quant cache.

Usage: ``python tools/install_gguf_converter.py [TARGET]`` (default: see
``vlm_quant.quantize.gguf_converter.converter_dir``). Needs PyPI, not a build.
"""

import sys
from pathlib import Path

from vlm_quant.quantize.gguf_converter import install_converter

if __name__ == "__main__":
    print(install_converter(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
