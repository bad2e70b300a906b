"""Splitting a wide table into readable parts: configurations as rows, columns grouped by topic.

A table with 14 columns only fits a page when it is scaled to about 3 pt. Instead each part repeats
the first (configuration) column and takes the columns of one topic (time, memory & size, energy,
...), at most ``MAX_NUMERIC_COLUMNS`` of them, packed so the part's estimated width stays within a
budget (a paper column, or the page). The estimate counts characters: a table cell of 9 pt Latin
Modern digits is about 4.5 pt per character, plus the column's separation (2 x \\tabcolsep = 12 pt);
it needs no TeX, and the paper's guard (`document.FIT`) absorbs the rest by scaling at most to 8 pt.

Headers ``Name (unit)`` are set on two lines (`stacked_header`), which keeps numeric columns narrow.
The full table stays in results.md and results.csv.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pandas as pd

MAX_NUMERIC_COLUMNS = 7
PT_PER_CHAR = 4.5  # Latin Modern at 9 pt (\small in a 10 pt document): digits are 0.5 em
PT_PER_COLUMN = 12.0  # 2 x \tabcolsep (6 pt)
COLUMN_PT = 245.0  # a column of the default two-column layout (US letter, 2 cm margins)
PAGE_PT = 500.0  # the page's text width: 503 pt
# The paper's FIT shrinks a tabular up to 8/9 (9 pt to 8 pt): an estimate up to this factor over the
# budget still fits readably, which leaves the rest of the shrink for the estimate's error.
FIT_SLACK = 1.06

# Header words that say a cost column's topic, checked in this order (an energy header may name a
# time window, "cost pass at batch 8", so energy is checked before time).
COST_TOPICS = (
    ("fidelity", ("fidelity", " cos,", "kl (", "top-1")),  # the headers of tables.FIDELITY_COLUMNS
    ("energy", ("energy", "co2", "j/", "wh", "power", "(w")),
    ("memory & size", ("mib", "gib", "vram", "rss", "disk", "memory")),
)
DEFAULT_COST_TOPIC = "time"


def cost_topic(header: str) -> str:
    """The topic of a cost column from its header: ``fidelity``, ``energy``, ``memory & size`` or
    ``time`` (latency, throughput and anything else)."""
    lower = header.lower()
    return next((topic for topic, words in COST_TOPICS if any(w in lower for w in words)), DEFAULT_COST_TOPIC)


def header_lines(header: str) -> list[str]:
    """``Decode p50 (ms/token)`` -> ["Decode p50", "(ms/token)"]: the name, then its unit or qualifier."""
    name, sep, rest = header.partition(" (")
    if not sep or not name:
        name, sep, rest = header.partition(" [")
        return [name, f"[{rest}"] if sep and name else [header]
    return [name, f"({rest}"]


def stacked_header(escaped_lines: list[str]) -> str:
    """LaTeX for a header set on several lines (already escaped), centred over its column."""
    # "\\ {}": a line starting with "[" (``[95% CI]``) must not be read as \\'s optional spacing
    # (the space keeps "\{" from reading as an escaped brace to a checker).
    return (
        escaped_lines[0] if len(escaped_lines) == 1 else r"\shortstack{" + r"\\ {}".join(escaped_lines) + "}"
    )


def text_pt(text: str) -> float:
    """Estimated width of plain text at 9 pt in points (Latin Modern: digits 0.5 em, capitals wider,
    spaces and punctuation narrower)."""
    return sum(
        PT_PER_CHAR if c.isdigit() else 6.8 if c.isupper() else 3.2 if c in " ,.;:()[]|'" else 4.5
        for c in text
    )


def column_pt(header: str, cells: list[str]) -> float:
    """Estimated width of one column in points: its widest header line or cell, plus separation."""
    return max(text_pt(str(t)) for t in [*header_lines(header), *cells]) + PT_PER_COLUMN


def latex_width_pt(cells_by_column: list[list[str]]) -> float:
    """Estimated width of a tabular from its LaTeX cells (header included), commands not counted."""
    return sum(max(_visible_pt(c) for c in column) + PT_PER_COLUMN for column in cells_by_column)


def _visible_pt(cell: str) -> float:
    """Estimated width of what a LaTeX cell prints: the longest line of a stacked header; a command
    counts as one character."""
    lines = re.sub(r"\\shortstack\{(.*)\}", r"\1", cell).split(r"\\ {}")
    printed = (re.sub(r"[{}$^\\]", "", re.sub(r"\\[a-zA-Z]+(\{\})?", "x", line)) for line in lines)
    return max(text_pt(text) for text in printed)


def split_columns(
    table: pd.DataFrame,
    topic: Callable[[str], str] = lambda _: "",
    *,
    budgets_pt: tuple[float, ...] = (COLUMN_PT, PAGE_PT),
    max_columns: int = MAX_NUMERIC_COLUMNS,
) -> list[tuple[str, list[str]]]:
    """The parts of ``table``: (topic, columns), each starting with the first column.

    Columns keep their order within a topic; topics come in the order of their first column. A part
    holds at most ``max_columns`` columns besides the first and fits, topic by topic, the first
    budget of ``budgets_pt`` (a paper column, then the page) under which no part is left with a
    single column of a topic that has more (long configuration names leave a column no room); a
    column wider than the last budget on its own still gets a part.
    """
    key, *rest = list(table.columns)
    key_pt = column_pt(key, table[key].astype(str).tolist())
    groups: dict[str, list[str]] = {}
    for column in rest:
        groups.setdefault(topic(column), []).append(column)
    widths = {c: column_pt(c, table[c].astype(str).tolist()) for c in rest}
    parts: list[tuple[str, list[str]]] = []
    for name, columns in groups.items():
        for budget in (b * FIT_SLACK for b in budgets_pt):
            chunks = _chunks(columns, [widths[c] for c in columns], key_pt, budget, max_columns)
            if len(columns) == 1 or all(len(chunk) > 1 for chunk in chunks):
                break
        parts += [(name, [key, *chunk]) for chunk in chunks]
    return parts or [("", [key])]


def _chunks(
    columns: list[str], widths: list[float], key_pt: float, budget_pt: float, max_columns: int
) -> list[list[str]]:
    """Consecutive chunks of ``columns``: as few as greedy packing needs, then evened out (5 columns
    in two parts read as 3 + 2, not 4 + 1) where the even split still fits the budget."""
    greedy: list[list[str]] = []
    width = key_pt
    for column, pt in zip(columns, widths, strict=True):
        if greedy and greedy[-1] and (width + pt > budget_pt or len(greedy[-1]) >= max_columns):
            greedy.append([])
            width = key_pt
        if not greedy:
            greedy.append([])
        greedy[-1].append(column)
        width += pt
    n = len(greedy)
    size, extra = divmod(len(columns), n)
    even, start = [], 0
    for i in range(n):
        stop = start + size + (1 if i < extra else 0)
        even.append((columns[start:stop], key_pt + sum(widths[start:stop])))
        start = stop
    if all(w <= budget_pt or len(chunk) == 1 for chunk, w in even):
        return [chunk for chunk, _ in even]
    return greedy
