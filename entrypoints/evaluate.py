"""MLproject entry point `evaluate`: one precision configuration, one MLflow run."""

import sys

from vlm_quant.cli import main

if __name__ == "__main__":
    main(["evaluate", *sys.argv[1:]])
