"""MLproject entry point `score`: rescore a predictions file (captions)."""

import sys

from vlm_quant.cli import main

if __name__ == "__main__":
    main(["score", *sys.argv[1:]])
