"""MLproject entry point `sweep` (see `vlm-quant sweep --help`)."""

import sys

from vlm_quant.cli import main

if __name__ == "__main__":
    main(["sweep", *sys.argv[1:]])
