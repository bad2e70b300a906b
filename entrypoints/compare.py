"""MLproject entry point `compare` (see `vlm-quant compare --help`)."""

import sys

from vlm_quant.cli import main

if __name__ == "__main__":
    main(["compare", *sys.argv[1:]])
