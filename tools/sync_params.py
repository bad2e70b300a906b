"""Regenerate the README's parameter table from ExperimentConfig.

Run after adding a config field: `python tools/sync_params.py`. Tests fail when the two drift.
"""

from __future__ import annotations

import re
from pathlib import Path

from vlm_quant.config import field_help

REPO = Path(__file__).resolve().parents[1]


def readme_table() -> str:
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    rows += [
        f"| `{name}` | `{default!r}` | {text.replace('|', '/')} |"
        for name, (default, text) in field_help().items()
    ]
    return "\n".join(rows)


def main() -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    text = re.sub(r"\| parameter \| default \| meaning \|\n(\|.*\|\n?)+", readme_table() + "\n", text)
    readme.write_text(text)


if __name__ == "__main__":
    main()
