"""MLproject entry point `paper` (see `vlm-quant paper --help`)."""

import sys

from vlm_quant.cli import main

if __name__ == "__main__":
    main(["paper", *sys.argv[1:]])
