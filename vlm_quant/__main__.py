"""`python -m vlm_quant ...` is the same as the `vlm-quant` console script."""

from vlm_quant.cli import main

main()
