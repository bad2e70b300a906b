"""Regenerate the MLproject `evaluate` parameters and the README's parameter table from ExperimentConfig.

Run after adding a config field: `python tools/sync_params.py`. Tests fail when the two drift.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from vlm_quant.config import ExperimentConfig, field_help

REPO = Path(__file__).resolve().parents[1]


def readme_table() -> str:
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | `{default!r}` | {text.replace('|', '/')} |" for name, (default, text) in field_help().items()]
    return "\n".join(rows)


def evaluate_block() -> str:
    lines = ["  evaluate:", "    parameters:", '      config: {type: string, default: ""}']
    lines += [f'      {f.name}: {{type: string, default: ""}}' for f in fields(ExperimentConfig)]
    lines += ["    command: >-", "      python entrypoints/evaluate.py --no-progress --config {config}"]
    lines += [f"      --{f.name.replace('_', '-')} {{{f.name}}}" for f in fields(ExperimentConfig)]
    return "\n".join(lines) + "\n"


def main() -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    text = re.sub(r"\| parameter \| default \| meaning \|\n(\|.*\|\n?)+", readme_table() + "\n", text)
    readme.write_text(text)
    project = REPO / "MLproject"
    text = project.read_text()
    text = re.sub(r"  evaluate:\n(    .*\n|      .*\n)+", evaluate_block(), text)
    project.write_text(text)


if __name__ == "__main__":
    main()
