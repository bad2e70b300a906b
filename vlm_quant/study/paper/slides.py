"""``slides.tex``: a beamer deck of about eight frames for a ten-minute talk, from the same numbers.

Frames: title, problem, setup, one results table, the trade-off figure, qualitative examples,
energy, sustainability (when the runs logged its numbers), takeaways. Sentences are the paper's
generated ones (same :class:`Stated` bookkeeping); the table is built from the report's full-precision
numbers with the tables' format specs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from vlm_quant.study.paper import results_prose as rp
from vlm_quant.study.paper import setup_prose as sp
from vlm_quant.study.paper import sustainability_prose as sus
from vlm_quant.study.paper.document import SHRINK, Written, _title
from vlm_quant.study.paper.study import ROLES, Study
from vlm_quant.study.paper.tex import Stated, placeholder, tex_text
from vlm_quant.study.report import caveats, cost_cells
from vlm_quant.study.report.build import CONFIDENCE
from vlm_quant.study.report.plots import PARETO_COSTS
from vlm_quant.study.report.render import fmt_interval, fmt_number

PREAMBLE = r"""\documentclass[aspectratio=169,11pt]{beamer}
\usetheme{default}
\setbeamertemplate{navigation symbols}{}
\setbeamertemplate{footline}[frame number]
\usepackage[T1]{fontenc}
\usepackage[utf8]{inputenc}
\usepackage{lmodern}
\usepackage{booktabs,graphicx,xcolor}
\newcommand{\placeholder}[1]{\textcolor{red!70!black}{[\textbf{To write:} #1]}}
"""


def write_slides(study: Study, folder: Path) -> tuple[Written, Stated]:
    """Write ``slides.tex`` and its figures under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    stated = Stated()
    files: list[Path] = []
    trade_off = next(
        (study.figure(f"quality_vs_{stem}") for m, stem in PARETO_COSTS if study.pareto_plot(m)), None
    )
    figs = {
        "trade_off": trade_off,
        "qualitative": study.figure("qualitative"),
        "energy": study.figure("gpu_power") or study.figure("cost_bars"),
    }
    paths = {}
    for key, source in figs.items():
        if source is not None:
            target = folder / "figures" / source.name
            target.parent.mkdir(exist_ok=True)
            shutil.copy(source, target)
            files.append(target)
            paths[key] = f"figures/{source.name}"
    frames = [
        _frame(
            "Problem",
            _items(
                [
                    "Quantization cuts memory, time and energy; how much quality does it cost?",
                    " ".join(sp.energy_sentences(study, stated)),
                    placeholder("why this matters to the audience"),
                ]
            ),
        ),
        _frame("Setup", _items(sp.setup_sentences(study, stated))),
        _frame(
            "Configurations",
            SHRINK
            + _configurations(study)
            + "}\n\n"
            + r"\medskip{\footnotesize "
            + " ".join(
                [
                    *_legend(study),
                    sp.baseline_sentence(study),
                    *sp.mixed_dtype_sentences(study),
                ]
            )
            + "}",
        ),
        _frame(
            "Results",
            SHRINK
            + _table(study)
            + "}\n\n"
            + r"\medskip{\footnotesize "
            + " ".join(filter(None, [sp.bootstrap_sentence(study, stated), rp.cost_refusal_sentence(study)]))
            + "}",
        ),
        _figure_frame(
            "Quality versus cost",
            paths.get("trade_off"),
            rp.pareto_sentences(study) or list(filter(None, [rp.cost_refusal_sentence(study)])),
        ),
        _figure_frame(
            "Where the configurations disagree",
            paths.get("qualitative"),
            [placeholder("what the examples show")],
        ),
        _figure_frame("Energy and power", paths.get("energy"), sp.energy_sentences(study, stated)[1:]),
        *_sustainability_frame(study, stated),
        _frame(
            "Takeaways",
            # the headline trade-off of each configuration, then whether its quality change is real
            r"\footnotesize"
            + _items(
                sp.abstract_sentences(study, stated)[1:]
                + rp.significance_sentences(study, stated)
                + [placeholder("the one message to remember")]
            ),
        ),
    ]
    text = (
        "\n".join(
            [
                PREAMBLE,
                rf"\title{{{_title(study)}}}",
                r"\author{" + placeholder("speaker") + "}",
                r"\date{}",
                r"\begin{document}",
                r"\begin{frame}\titlepage\end{frame}",
                *frames,
                r"\end{document}",
            ]
        )
        + "\n"
    )
    tex = folder / "slides.tex"
    tex.write_text(text, encoding="utf-8")
    return Written(tex, (tex, *files)), stated


def _sustainability_frame(study: Study, stated: Stated) -> list[str]:
    """The paper's Sustainability table and its place sentence; no frame when no run logged one."""
    table = sus.sustainability_table(study, stated)
    if table is None:
        return []
    sentences = sus.sustainability_sentences(study, stated)
    notes = r"\medskip{\footnotesize " + " ".join(sentences[1:]) + "}"
    body = SHRINK + _inner_tabular(table) + "}\n\n" + notes
    return [_frame("Sustainability", body)]


def _inner_tabular(float_tex: str) -> str:
    """The tabular of a generated table float (a frame holds no floats)."""
    start, end = float_tex.index(r"\begin{tabular}"), float_tex.index(r"\end{tabular}")
    return float_tex[start : end + len(r"\end{tabular}")]


def _frame(title: str, body: str) -> str:
    return f"\\begin{{frame}}{{{title}}}\n\\small\n{body}\n\\end{{frame}}"


def _items(sentences: list[str]) -> str:
    return "\\begin{itemize}\n" + "\n".join(f"\\item {s}" for s in sentences if s) + "\n\\end{itemize}"


def _figure_frame(title: str, path: str | None, notes: list[str]) -> str:
    if path is None:
        return _frame(title, "Not available for these runs: " + (" ".join(notes) or "nothing was measured."))
    graphic = (
        rf"\centering\includegraphics[width=\textwidth,height=0.68\textheight,keepaspectratio]{{{path}}}"
    )
    return _frame(
        title, graphic + ("\n\n\\raggedright{\\footnotesize " + " ".join(notes) + "}" if notes else "")
    )


def _configurations(study: Study) -> str:
    """One row per run: what the precision audit found in each role, and the compute dtype."""
    header = ["Configuration", *(tex_text(noun) for _, noun in ROLES), "compute dtype"]
    lines = [r"\begin{tabular}{l" + "l" * (len(header) - 1) + "}", r"\toprule", " & ".join(header) + r" \\"]
    lines.append(r"\midrule")
    for _, row in study.runs.iterrows():
        label = tex_text(row["label"]) + (r"\dag" if row["weights"] == "random" else "")
        roles = [sp.realized_text(study.realized(row, role), breakable=False) for role, _ in ROLES]
        dtype = study.param(row, "dtype")
        cells = [label + caveats.row_marks(row, tex=True), *roles, tex_text(dtype or "n/a")]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def _legend(study: Study) -> list[str]:
    """A line per caveat some run carries (its symbol, then what it means)."""
    present = {c for _, row in study.runs.iterrows() for c in caveats.run_caveats(row)}
    return [f"{c.mark_tex} {tex_text(c.legend)}." for c in caveats.CAVEATS if c in present]


def _table(study: Study) -> str:
    """Configuration, primary metric, Δ [CI], and the costs some run measured."""
    numbers: pd.DataFrame = study.report.tables.numbers
    primary = study.primary
    costs = [(m, n, u) for m, n, u in rp.AXES if m in numbers.columns and numbers[m].notna().any()]
    if len(costs) > 1:  # host RSS only stands in where no GPU cost was measured
        costs = [c for c in costs if c[0] != "peak_rss_mib"]
    header = [
        "Configuration",
        tex_text(study.primary_name),
        r"\shortstack{$\Delta$\\{}[" + tex_text(f"{CONFIDENCE:.0%}") + " CI]}",
        *[rf"\shortstack{{{tex_text(n)}\\({tex_text(_unit(numbers, m, u))})}}" for m, n, u in costs],
    ]
    specs = {m: _column_spec(study, m) for m, _, _ in costs}
    lines = [
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    for _, row in numbers.iterrows():
        random = row["weights"] == "random"
        run = study.runs[study.runs["run_id"] == row["run_id"]].iloc[0]
        quality = "--" if random else fmt_number(row.get(primary), rp.QUALITY_SPEC)
        delta = (
            "baseline"
            if row["baseline"]
            else "--"
            if random
            else fmt_interval(
                row[f"{primary}_delta"],
                row[f"{primary}_delta_low"],
                row[f"{primary}_delta_high"],
                rp.QUALITY_SPEC,
            )
        )
        label = tex_text(row["label"]) + (r"\dag" if random else "") + caveats.marks(row["caveats"], tex=True)
        cells = [label, quality, tex_text(delta)]
        cells += [fmt_number(study.metric(run, m), specs[m]) for m, _, _ in costs]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def _unit(numbers: pd.DataFrame, metric: str, unit: str) -> str:
    """The column's unit, with the energy window it was metered over (``J, cost pass bs 8``)."""
    if metric in cost_cells.NVML_METRICS:
        return f"{unit}, {cost_cells.window_label(numbers, metric)}"
    return unit


def _column_spec(study: Study, metric: str) -> str:
    """The table's format, or 3 significant digits where it would print two different values alike."""
    spec = rp.SPEC[metric]
    values = {v for v in (study.metric(r, metric) for _, r in study.runs.iterrows()) if v is not None}
    return spec if len({fmt_number(v, spec) for v in values}) == len(values) else ".3g"
