"""Regenerate docs/supported_models.md, and the README's models block, from a survey of the installed
transformers' image-text-to-text types.

Run after changing the role vocabulary (vlm_quant/models/roles.py), the family exceptions or the pinned
transformers: `python tools/write_supported_models.py`. The test suite fails when the page drifts.
"""

from __future__ import annotations

from pathlib import Path

import transformers

from vlm_quant.models.coverage import render_markdown, survey
from vlm_quant.reference import readme

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "supported_models.md"


def main() -> None:
    PAGE.parent.mkdir(exist_ok=True)
    rows = survey()
    PAGE.write_text(render_markdown(rows, transformers.__version__))
    print(f"wrote {PAGE}")
    supported = [row.model_type for row in rows if row.supported]
    front = REPO / "README.md"
    block = readme.models_block(supported, len(rows), transformers.__version__)
    front.write_text(readme.fill(front.read_text(), "models", block))
    print(f"refreshed the models block of {front}")


if __name__ == "__main__":
    main()
