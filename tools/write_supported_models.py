"""Regenerate docs/supported_models.md from a survey of the installed transformers' image-text-to-text types.

Run after changing the role vocabulary (vlm_quant/models/roles.py), the family exceptions or the pinned
transformers: `python tools/write_supported_models.py`. The test suite fails when the page drifts.
"""

from __future__ import annotations

from pathlib import Path

import transformers

from vlm_quant.models.coverage import render_markdown, survey

PAGE = Path(__file__).resolve().parents[1] / "docs" / "supported_models.md"


def main() -> None:
    PAGE.parent.mkdir(exist_ok=True)
    PAGE.write_text(render_markdown(survey(), transformers.__version__))
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
