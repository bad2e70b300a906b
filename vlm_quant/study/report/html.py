"""``report.html``: the whole report on one self-contained page (figures embedded as base64 PNG).

The page needs no network and no sibling files, so it can be attached to an MLflow run or mailed
as is. It renders the same tables the Markdown/LaTeX files hold; it computes nothing itself.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vlm_quant.study.report.appendix import Appendix
from vlm_quant.study.report.plots import PlotOutcome
from vlm_quant.study.report.qualitative import MD_ROWS, Qualitative
from vlm_quant.study.report.tables import Tables

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border-top: 1px solid #ccc; border-bottom: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #8a5300; }
"""


@dataclass(frozen=True)
class HtmlInputs:
    """What the page shows; each part was already written to its own files by its module."""

    title: str
    summary: Sequence[str]  # one line each: selector, baseline, bootstrap settings
    tables: Tables
    plots: Sequence[PlotOutcome]
    qualitative: Qualitative | None
    appendix: Appendix
    notes: Sequence[str]  # skipped plots, missing images, missing predictions
    sections: Sequence[tuple[str, pd.DataFrame]] = ()  # further (title, table) after Cost


def write_html(inputs: HtmlInputs, out_dir: Path) -> Path:
    """Write ``report.html`` under ``out_dir`` and return its path."""
    parts = [f"<h1>{_esc(inputs.title)}</h1>", _list(inputs.summary)]
    if inputs.notes:
        parts += ["<h2>Notes</h2>", _list(inputs.notes, css="note")]
    parts += ["<h2>Quality</h2>", _table(inputs.tables.quality)]
    parts += [f"<p>{_esc(line)}</p>" for line in inputs.tables.quality_legend]
    if inputs.tables.cost_refused is not None:
        parts += ["<h2>Cost</h2>", f"<p class='note'>{_esc(inputs.tables.cost_refused)}</p>"]
    else:
        parts += ["<h2>Cost</h2>", _table(inputs.tables.cost)]
        parts += [f"<p>{_esc(line)}</p>" for line in inputs.tables.cost_legend]
    for title, table in inputs.sections:
        parts += [f"<h2>{_esc(title)}</h2>", _table(table)]
    parts.append("<h2>Figures</h2>")
    for plot in inputs.plots:
        if plot.skipped:
            parts.append(f"<p class='note'>{_esc(plot.name)}: skipped ({_esc(plot.skipped)})</p>")
        else:
            parts += [f"<h3>{_esc(plot.name)}</h3>", _image(plot.paths[0])]
    if inputs.qualitative is not None:
        parts += ["<h2>Qualitative examples</h2>", *_qualitative(inputs.qualitative)]
    parts.append("<h2>Appendix: reproducibility</h2>")
    if inputs.appendix.warnings:
        parts.append(_list(inputs.appendix.warnings, css="note"))
    for title, table in inputs.appendix.sections:
        parts += [f"<h3>{_esc(title)}</h3>", _table(table)]
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(inputs.title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _qualitative(qualitative: Qualitative) -> list[str]:
    parts = []
    if qualitative.note:
        parts.append(f"<p class='note'>{_esc(qualitative.note)}</p>")
    figure = [p for p in qualitative.paths if p.suffix == ".png"]
    if figure:
        parts.append(_image(figure[0]))
    top = qualitative.ranked.head(MD_ROWS).drop(columns=["image_file"])
    parts += [f"<h3>Top {len(top)} disagreements</h3>", _table(top)]
    return parts


def _table(table: pd.DataFrame) -> str:
    return table.to_html(index=False, escape=True, na_rep="n/a", border=0)


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{_esc(path.stem)}' src='data:image/png;base64,{data}'>"


def _list(items: Sequence[str], css: str | None = None) -> str:
    cls = f" class='{css}'" if css else ""
    return f"<ul{cls}>" + "".join(f"<li>{_esc(item)}</li>" for item in items) + "</ul>"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)
