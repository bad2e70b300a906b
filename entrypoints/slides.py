"""MLproject entry point `slides` (see `vlm-quant slides --help`)."""

import sys

from vlm_quant.cli import main

if __name__ == "__main__":
    main(["slides", *sys.argv[1:]])
