"""Regenerate the documentation site's reference pages (docs/reference/*.md) and the README's generated
presets and tasks blocks from the code: ExperimentConfig, the run schema's glossary, PRESETS.

Run after adding or changing a parameter, a metric, a tag, an artifact or a preset:
`python tools/write_reference.py` (the models block comes with `python tools/write_supported_models.py`).
The suite fails when the committed pages drift (tests/docs/test_reference.py).
"""

from __future__ import annotations

from pathlib import Path

from vlm_quant.reference import readme
from vlm_quant.reference.pages import render_pages

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    for relative, text in render_pages().items():
        page = REPO / "docs" / relative
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(text)
        print(f"wrote {page}")
    front = REPO / "README.md"
    front.write_text(readme.fill_code_blocks(front.read_text()))
    print(f"refreshed the generated blocks of {front}")


if __name__ == "__main__":
    main()
