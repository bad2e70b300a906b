"""What a reader sees on each page of a PDF: the size of every piece of text, and how full each page is.

Read with poppler's ``pdftohtml -xml``, which writes each run of text with its position and a font
whose ``size`` is the font size after every transformation (the text matrix times the current
matrix): a table shrunk by ``\\resizebox`` to 40% reports 40% of its 9 pt. pdftohtml rounds sizes and
positions to whole units, so it is run at zoom 3 (a third of a point) and scaled back by the ratio of
its page width to the PDF's (``pdfinfo``). ``pdffonts`` lists the fonts but not their sizes, and the
heights of ``pdftotext -bbox`` words are the font's ascent + descent, a different fraction of the
size for every font.

Sizes are those of the document's own text (Latin Modern, ``LM*`` fonts); the plots' text (matplotlib's
DejaVu) is left to the figure checks. Sub- and superscripts (a dagger, the 2 of CO2) are set in
the script size by design: smaller text within a space of larger text on its line is one of them.
"""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass

ZOOM = 3
SCRIPT_GAP_PT = 4.0  # a space at 10 pt is 3.3 pt


@dataclass(frozen=True)
class TextRun:
    page: int  # 1-based
    top: float  # pt from the page's top edge
    left: float
    bottom: float
    right: float
    size: float  # font size in pt
    font: str
    text: str


@dataclass(frozen=True)
class Page:
    number: int
    width: float  # pt
    height: float
    runs: tuple[TextRun, ...]


def pdf_pages(pdf) -> list[Page]:
    """Every page of ``pdf`` with its text runs, in points."""
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    width_pt = float(re.search(r"Page size:\s+([\d.]+) x", info).group(1))
    xml = subprocess.run(
        ["pdftohtml", "-xml", "-i", "-stdout", "-q", "-zoom", str(ZOOM), str(pdf)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    root = ET.fromstring(re.sub(r"<!DOCTYPE[^>]*>", "", xml))
    fonts = {}
    pages = []
    for page in root.iter("page"):
        scale = float(page.get("width")) / width_pt
        for spec in page.iter("fontspec"):
            fonts[spec.get("id")] = (float(spec.get("size")) / scale, spec.get("family"))
        runs = []
        for text in page.iter("text"):
            top, left = float(text.get("top")) / scale, float(text.get("left")) / scale
            height, width = float(text.get("height")) / scale, float(text.get("width")) / scale
            size, family = fonts[text.get("font")]
            runs.append(
                TextRun(
                    int(page.get("number")),
                    top,
                    left,
                    top + height,
                    left + width,
                    size,
                    family,
                    "".join(text.itertext()),
                )
            )
        pages.append(Page(int(page.get("number")), width_pt, float(page.get("height")) / scale, tuple(runs)))
    return pages


def is_script(run: TextRun, page: Page) -> bool:
    """A sub- or superscript: smaller text on a larger run's line, within a space of it (E_image,
    CO2, a dagger). The text of a shrunk table has no larger text beside it."""
    return any(
        other.size > run.size * 1.15
        and other.top < run.bottom
        and run.top < other.bottom
        and (abs(other.right - run.left) < SCRIPT_GAP_PT or abs(run.right - other.left) < SCRIPT_GAP_PT)
        for other in page.runs
    )


def document_text(page: Page) -> list[TextRun]:
    """The page's text set by LaTeX itself (Latin Modern), scripts left out."""
    return [r for r in page.runs if "+LM" in r.font and r.text.strip() and not is_script(r, page)]


def column_fill(page: Page, margin_pt: float, footer_pt: float = 20.0) -> tuple[float, float]:
    """How far down the text block each column's text reaches, as a fraction of the block's height
    (left column, right column). A page-wide run counts for both columns; the page number in the
    footer (below the text block) is not content."""
    top, bottom = margin_pt, page.height - margin_pt
    middle = page.width / 2
    lowest = [top, top]
    for run in page.runs:
        if run.top > bottom + footer_pt / 2 or not run.text.strip():
            continue
        for side in (0, 1):
            in_column = run.left < middle if side == 0 else run.right > middle
            if in_column:
                lowest[side] = max(lowest[side], min(run.bottom, bottom))
    height = bottom - top
    return ((lowest[0] - top) / height, (lowest[1] - top) / height)
