"""Compile a .tex file to PDF with the TeX installation found on PATH.

``latexmk -pdf`` when present (it reruns pdflatex and bibtex until references settle), else pdflatex,
bibtex, pdflatex twice. Without TeX the caller gets :data:`INSTALL_HINT` instead of a PDF. A failed
build raises ``UserError`` with the LaTeX log's error lines (``! ...`` and the ``l.NN`` context), not
a Python traceback: the log is where the fix is.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vlm_quant.errors import UserError

INSTALL_HINT = (
    "no TeX installation found (latexmk or pdflatex): the .tex sources are written but not compiled. "
    "Install TeX (Debian/Ubuntu: apt-get install texlive-latex-recommended texlive-latex-extra "
    "texlive-fonts-recommended latexmk) and rerun, or compile with `latexmk -pdf` in the folder."
)
TIMEOUT_S = 300
LOG_CONTEXT_LINES = 3  # lines kept after each "!" error line (they hold the l.NN source context)


@dataclass(frozen=True)
class CompileOutcome:
    """The PDF written, or (pdf None) the reason it was not."""

    pdf: Path | None
    engine: str | None  # "latexmk" | "pdflatex" | None (no TeX found)
    message: str | None = None


def tex_engine() -> str | None:
    """``latexmk`` when on PATH, else ``pdflatex``, else None."""
    for name in ("latexmk", "pdflatex"):
        if shutil.which(name):
            return name
    return None


def compile_pdf(tex_path: Path, *, bibliography: bool = True) -> CompileOutcome:
    """Build ``tex_path``'s PDF in its own folder; raises ``UserError`` with the log's errors on failure."""
    engine = tex_engine()
    if engine is None:
        return CompileOutcome(None, None, INSTALL_HINT)
    folder, stem = tex_path.parent, tex_path.stem
    pdflatex = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", tex_path.name]
    if engine == "latexmk":
        steps = [
            [
                "latexmk",
                "-pdf",
                "-interaction=nonstopmode",
                "-halt-on-error",
                "-file-line-error",
                "-bibtex" if bibliography else "-bibtex-",
                tex_path.name,
            ]
        ]
    else:
        bib = [["bibtex", stem]] if bibliography and shutil.which("bibtex") else []
        steps = [pdflatex, *bib, pdflatex, pdflatex]
    for step in steps:
        try:
            done = subprocess.run(
                step, cwd=folder, capture_output=True, text=True, timeout=TIMEOUT_S, errors="replace"
            )
        except subprocess.TimeoutExpired as exc:
            raise UserError(f"{step[0]} on {tex_path} ran past {TIMEOUT_S} s") from exc
        if done.returncode != 0:
            raise UserError(compile_error(tex_path, step[0], done.stdout))
    pdf = folder / f"{stem}.pdf"
    if not pdf.is_file():
        raise UserError(f"{engine} finished without writing {pdf}")
    return CompileOutcome(pdf, engine)


def compile_error(tex_path: Path, command: str, output: str) -> str:
    """The message for a failed build: the log's error lines, the log's path, never a traceback."""
    log = tex_path.with_suffix(".log")
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else output
    lines = log_errors(text) or text.strip().splitlines()[-15:]
    return (
        f"LaTeX could not compile {tex_path} ({command}):\n"
        + "\n".join(f"  {line}" for line in lines)
        + f"\nfull log: {log}"
    )


def log_errors(log_text: str) -> list[str]:
    """The error lines of a LaTeX log: each ``! message`` or ``file:line: message`` with the lines that
    follow it (up to the ``l.NN`` source context), at most the first three errors."""
    lines = log_text.splitlines()
    out: list[str] = []
    errors = 0
    for i, line in enumerate(lines):
        if line.startswith("!") or re.match(r"^[^:\s]+\.(tex|sty|cls|bbl):\d+: ", line):
            errors += 1
            if errors > 3:
                break
            out += [line] + [x for x in lines[i + 1 : i + 1 + LOG_CONTEXT_LINES] if x.strip()]
    return out
