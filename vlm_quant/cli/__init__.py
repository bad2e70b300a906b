"""The `vlm-quant` command line: the click group (`commands.main`) and its commands."""

from vlm_quant.cli.commands import main

__all__ = ["main"]
