"""The reference pages and the README's presets/tasks blocks are the code's output, committed up to date.

Regenerate: `python tools/write_reference.py` (or `VLMQ_WRITE_DOCS=1 python -m pytest tests/docs`).
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import pytest

from vlm_quant.config import ExperimentConfig
from vlm_quant.quantize.presets import PRESETS
from vlm_quant.reference import parameters, readme
from vlm_quant.reference.markdown import cell
from vlm_quant.reference.pages import render_pages
from vlm_quant.tracking import glossary

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
REGENERATE = "python tools/write_reference.py"


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    rendered = render_pages()
    if os.environ.get("VLMQ_WRITE_DOCS"):
        for relative, text in rendered.items():
            (DOCS / relative).parent.mkdir(parents=True, exist_ok=True)
            (DOCS / relative).write_text(text)
        (REPO / "README.md").write_text(readme.fill_code_blocks((REPO / "README.md").read_text()))
    return rendered


def test_the_committed_reference_pages_are_the_codes_output(pages):
    for relative, text in pages.items():
        page = DOCS / relative
        assert page.is_file() and page.read_text() == text, f"docs/{relative} is stale: run `{REGENERATE}`"


def test_the_readmes_presets_and_tasks_are_the_codes_output(pages):
    text = (REPO / "README.md").read_text()
    assert readme.fill_code_blocks(text) == text, (
        f"README.md's generated blocks are stale: run `{REGENERATE}`"
    )
    assert all(f"| `{name}` |" in text for name in PRESETS)


def test_every_parameter_has_a_described_row_with_type_and_default(pages):
    page = pages["reference/parameters.md"]
    placed = [f.name for _, members in parameters.sections() for f in members]
    assert sorted(placed) == sorted(f.name for f in fields(ExperimentConfig))  # each in one section
    assert "## Cost pass" in page and "| `cost_samples` |" in page.split("## Cost pass")[1]
    for f in fields(ExperimentConfig):
        assert len(f.metadata["help"].strip()) >= 10, f"parameter {f.name} has no description (config.py)"
        row = next(line for line in page.splitlines() if line.startswith(f"| `{f.name}` |"))
        assert f"| {f.type} | `{f.default!r}` |" in row and cell(f.metadata["help"]) in row


def test_every_glossary_entry_is_on_its_page_with_its_unit(pages):
    for terms, relative in (
        (glossary.METRICS, "reference/metrics.md"),
        (glossary.TAGS, "reference/tags_and_artifacts.md"),
        (glossary.ARTIFACTS, "reference/tags_and_artifacts.md"),
    ):
        rows = pages[relative].splitlines()
        for term in terms:
            (row,) = [line for line in rows if line.startswith(f"| `{term.names[0]}`")]
            assert f"| {cell(term.unit)} | {cell(term.meaning)} |" in row


def test_a_cell_cannot_break_its_table_or_hide_text_as_html():
    assert cell("a | b") == "a \\| b"  # a bare pipe would start a new column
    assert cell("'<model> · <quant>' and `<stat>`") == "'&lt;model> · &lt;quant>' and `<stat>`"


def test_a_readme_without_the_markers_is_an_error_naming_the_block():
    with pytest.raises(ValueError, match="'presets'"):
        readme.fill("# no markers\n", "presets", "body")
    filled = readme.fill("<!-- begin generated: x -->\nold\n<!-- end generated: x -->\n", "x", "new")
    assert filled == "<!-- begin generated: x -->\nnew\n<!-- end generated: x -->\n"
