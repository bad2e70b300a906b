"""LaTeX text from store values: escaping (specials and non-ASCII), placeholders, stated numbers.

Every string that comes from the tracking store (model ids with ``_``, prompts with ``%`` or ``&``,
package versions, run names) goes through :func:`tex_text`. pdflatex reads UTF-8 Latin text through
``inputenc``/``fontenc``, but a character it has no glyph for stops the build, so anything outside
Latin-1 that has no ASCII decomposition is written as its code point (``[U+4E2D]``): visible, never
silently dropped.

Every number a sentence states is made with :meth:`Stated.num`, which keeps (printed text, full value,
where it came from), so tests can check each printed number against the store.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from vlm_quant.study.report.render import fmt_number, latex_escape

# Non-ASCII characters the report's own text uses, with their LaTeX spelling.
_UNICODE = {
    "Δ": r"$\Delta$",
    "†": r"\dag{}",
    "→": r"$\rightarrow$",
    "±": r"$\pm$",
    "×": r"$\times$",
    "–": "--",
    "—": "---",
    "“": "``",
    "”": "''",
    "‘": "`",
    "’": "'",
    "…": r"\ldots{}",
    "°": r"\textdegree{}",
    "µ": r"$\mu$",
    "²": r"\textsuperscript{2}",
}


def tex_text(value: object) -> str:
    """``value`` as LaTeX text that typesets verbatim under pdflatex (T1, utf8 inputenc)."""
    text = latex_escape(value)
    # latex_escape leaves "<", ">" and "|" alone; in T1 they print correctly, but only with \text...
    text = text.replace("<", r"\textless{}").replace(">", r"\textgreater{}").replace("|", r"\textbar{}")
    return "".join(_char(c) for c in text)


def _char(c: str) -> str:
    if c.isascii():
        return c if c.isprintable() or c in "\n\t" else " "
    if c in _UNICODE:
        return _UNICODE[c]
    if ord(c) <= 0xFF and c.isprintable():  # Latin-1: inputenc utf8 + T1 fonts have it
        return c
    ascii_form = unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode()
    return ascii_form or f"[U+{ord(c):04X}]"


def placeholder(what: str) -> str:
    """A clearly marked gap only a person can fill (``\\todo`` box defined in the preamble)."""
    return rf"\placeholder{{{tex_text(what)}}}"


@dataclass(frozen=True)
class Number:
    """One number as the prose prints it, its full-precision value, and its source in the store.

    ``source``: ``metric:<run_id>:<name>``, ``param:<run_id>:<name>``, ``delta:<run_id>:<field>``
    (the paired bootstrap of the primary metric), ``pct:<run_id>:<metric>`` (percent change of that
    metric against the baseline run), ``count:<what>`` or ``setting:<name>`` (report settings).
    """

    text: str
    value: float
    source: str


@dataclass
class Stated:
    """Collects every number the generated prose prints."""

    numbers: list[Number] = field(default_factory=list)

    def num(self, value: float, spec: str, source: str) -> str:
        """``value`` formatted with ``spec`` (as the tables do), recorded with its source."""
        text = fmt_number(value, spec)
        self.numbers.append(Number(text, float(value), source))
        return text

    def as_records(self) -> list[dict]:
        return [{"text": n.text, "value": n.value, "source": n.source} for n in self.numbers]
