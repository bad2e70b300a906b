"""``paper.tex``: the draft paper's LaTeX source, from the generated sentences and the report's files.

Layout: the standard ``article`` class in two columns (about 4-6 pages before the appendix), or the
user's own class/preamble (``template``). Tables and figures are the compare report's, copied next to
the .tex (``tables/``, ``figures/``) so the folder compiles on its own. The report writes a wide table
as one float per topic (`table_parts`); here each float stays in the column or spans the page as its
estimated width needs, and shrinks to the line at most to 8 pt (the preamble's ``vqfit``), never further.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from vlm_quant.study.paper import results_prose as rp
from vlm_quant.study.paper import setup_prose as sp
from vlm_quant.study.paper import sustainability_prose as sus
from vlm_quant.study.paper.citations import method_citations
from vlm_quant.study.paper.examples import examples_table, shown_examples
from vlm_quant.study.paper.references import BIBTEX
from vlm_quant.study.paper.study import Study
from vlm_quant.study.paper.tex import Stated, placeholder, tex_text
from vlm_quant.study.report import table_parts
from vlm_quant.study.report.plots import PARETO_COSTS

DEFAULT_PREAMBLE = r"""\documentclass[10pt,twocolumn]{article}
\usepackage[margin=2cm]{geometry}
% Floats may fill more of a page, and a page of floats alone must be mostly full: with the
% defaults, the many small tables and plots are pushed past the references onto near-empty pages.
\renewcommand{\topfraction}{0.85}
\renewcommand{\dbltopfraction}{0.85}
\renewcommand{\bottomfraction}{0.6}
\renewcommand{\textfraction}{0.1}
\renewcommand{\floatpagefraction}{0.7}
\renewcommand{\dblfloatpagefraction}{0.7}
\setcounter{topnumber}{3}
\setcounter{dbltopnumber}{2}
\setcounter{bottomnumber}{2}
\setcounter{totalnumber}{5}
"""
# Loaded after any preamble (the default or the user's): loading a package twice is harmless.
# \vqfit sets a tabular at its natural size, or shrinks it to the line, but never below 8/9 of it:
# the tables are set in \small (9 pt), so no table text is smaller than 8 pt (too wide a table
# rather runs into the margin, which a reader can still read).
REQUIRED_PREAMBLE = r"""\usepackage[T1]{fontenc}
\usepackage[utf8]{inputenc}
\usepackage{lmodern}
\usepackage{amsmath,graphicx,booktabs,xcolor,tabularx}
\usepackage[hidelinks]{hyperref}
\providecommand{\placeholder}[1]{\textcolor{red!70!black}{[\textbf{To write:} #1]}}
\newsavebox{\vqfitbox}
\newcommand{\vqfit}[1]{\sbox{\vqfitbox}{#1}%
\ifdim\wd\vqfitbox>\linewidth
\ifdim0.889\wd\vqfitbox>\linewidth\scalebox{0.889}{\usebox{\vqfitbox}}%
\else\resizebox{\linewidth}{!}{\usebox{\vqfitbox}}\fi
\else\usebox{\vqfitbox}\fi}
"""
SHRINK = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{"
FIT = r"\vqfit{"
_FLOAT = re.compile(r"\\begin\{table\}\[[^\]]*\](.*?)\\end\{table\}", re.S)


@dataclass(frozen=True)
class Written:
    tex: Path
    files: tuple[Path, ...]  # every file the .tex needs, the .tex and references.bib included


def preamble(template: Path | None, folder: Path) -> str:
    """The default two-column article, or ``template``: a ``.cls`` (copied, used as the class) or a
    preamble file (``\\documentclass`` and packages, no ``\\begin{document}``)."""
    if template is None:
        return DEFAULT_PREAMBLE
    if template.suffix == ".cls":
        shutil.copy(template, folder / template.name)
        return rf"\documentclass{{{template.stem}}}" + "\n"
    text = template.read_text(encoding="utf-8")
    return text.split(r"\begin{document}")[0].rstrip() + "\n"


def place_tables(tables_tex: str, *, two_column: bool = True) -> str:
    """The report's table floats as the paper sets them: each tabular fitted (`FIT`, never below
    8 pt); in two columns, a table estimated wider than a column becomes a page-wide ``table*``
    (top of a page or a float page), a narrower one stays in the column (here, top, bottom or a
    float page). ``two_column=False`` (the one-column appendix): kept in reading order right here."""

    def place(match: re.Match) -> str:
        body = match.group(1).replace(r"\begin{tabular}", FIT + r"\begin{tabular}")
        body = body.replace(r"\end{tabular}", r"\end{tabular}}")
        if not two_column:
            return rf"\begin{{table}}[h!]{body}\end{{table}}"
        if table_parts.latex_width_pt(tabular_columns(match.group(1))) > table_parts.COLUMN_PT:
            return rf"\begin{{table*}}[tp]{body}\end{{table*}}"
        return rf"\begin{{table}}[tbp]{body}\end{{table}}"

    return _FLOAT.sub(place, tables_tex)


def tabular_columns(float_tex: str) -> list[list[str]]:
    """The cells of a booktabs tabular (header and body rows), column by column."""
    between = float_tex.split(r"\toprule")[1].split(r"\bottomrule")[0].replace(r"\midrule", "")
    rows = [row.strip().removesuffix(r"\\").split(" & ") for row in between.splitlines() if row.strip()]
    return [list(column) for column in zip(*rows, strict=False)]


def figure(path: str, caption: str, label: str, *, wide: bool = False) -> str:
    env = "figure*" if wide else "figure"
    # Capped height: one qualitative example would otherwise fill a page.
    size = r"width=\textwidth,height=0.3\textheight" if wide else r"width=\columnwidth,height=0.3\textheight"
    # A column figure may go here, at the top or bottom, or on a float page; a page-wide one at
    # the top of a page or on a float page (the only places LaTeX allows it).
    where = "tp" if wide else "tbp"
    return (
        rf"\begin{{{env}}}[{where}]\centering\includegraphics[{size},keepaspectratio]{{{path}}}"
        rf"\caption{{{caption}}}\label{{{label}}}\end{{{env}}}"
    )


def write_paper(study: Study, folder: Path, *, template: Path | None = None) -> tuple[Written, Stated]:
    """Write ``paper.tex``, ``references.bib``, ``tables/`` and ``figures/`` under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    stated = Stated()
    files: list[Path] = []
    figs = _copy_figures(study, folder, files)
    tables = _copy_tables(study, folder, files)
    body = _body(study, stated, figs, tables, folder)
    tex = folder / "paper.tex"
    tex.write_text(preamble(template, folder) + REQUIRED_PREAMBLE + body, encoding="utf-8")
    bib = folder / "references.bib"
    bib.write_text(BIBTEX, encoding="utf-8")
    if template is not None and template.suffix == ".cls":
        files.append(folder / template.name)
    return Written(tex, (tex, bib, *files)), stated


def _copy_figures(study: Study, folder: Path, files: list[Path]) -> dict[str, str]:
    """Copy the drawn figures' PDFs to ``figures/``; name -> path relative to the .tex."""
    names = [f"quality_vs_{stem}" for _, stem in PARETO_COSTS] + ["cost_bars", "gpu_power", "qualitative"]
    names.append("co2e_by_place")
    out = {}
    for name in names:
        source = study.figure(name)
        if source is None:
            continue
        target = folder / "figures" / source.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(source, target)
        files.append(target)
        out[name] = f"figures/{source.name}"
    return out


def _copy_tables(study: Study, folder: Path, files: list[Path]) -> dict[str, str]:
    """The compare report's quality, cost and appendix tables, widened, under ``tables/``."""
    out = {}
    for path in study.report.paths:
        if path.name not in ("results_quality.tex", "results_cost.tex", "appendix.tex"):
            continue
        if path.name == "results_quality.tex" and study.pretrained.empty:
            continue  # random weights only: a quality table would hold no number (the abstract says why)
        target = folder / "tables" / path.name
        target.parent.mkdir(exist_ok=True)
        source = path.read_text(encoding="utf-8")
        # The appendix is set in one column: its floats are page-wide already.
        target.write_text(place_tables(source, two_column=path.name != "appendix.tex"), encoding="utf-8")
        files.append(target)
        out[path.stem] = f"tables/{path.name}"
    return out


def _title(study: Study) -> str:
    model = study.shared("model") or "a vision-language model"
    presets = ", ".join(str(label) for label in study.runs["label"])
    return (
        rf"What post-training quantization does to \texttt{{{tex_text(model.split('/')[-1])}}}: "
        rf"{tex_text(presets)}"
    )


def _body(study: Study, stated: Stated, figs: dict[str, str], tables: dict[str, str], folder: Path) -> str:
    captioning = study.task == "captioning"
    data_cite = r"~\cite{lin2014coco}" if captioning else r"~\cite{antol2015vqa}"
    metric_cite = r"~\cite{vedantam2015cider}" if captioning else r"~\cite{antol2015vqa}"
    quant_cite = method_citations(study.runs)  # the quantizers that ran (audit), never the preset's name
    parts = [
        r"\begin{document}",
        rf"\title{{{_title(study)}}}",
        r"\author{" + placeholder("authors and affiliations") + "}",
        r"\date{}",
        r"\maketitle",
        r"\begin{abstract}",
        " ".join(sp.abstract_sentences(study, stated)),
        placeholder("one sentence on why these configurations matter to your setting"),
        r"\end{abstract}",
        r"\section{Introduction}",
        "Deploying a vision-language model costs memory, time and energy on every request; post-training "
        "quantization trades numerical precision for lower cost, and whether the trade is worth it depends "
        "on how much quality is lost. We measure both sides on the same samples, one tracked run per "
        "configuration, so each cost number has a paired quality number next to it.",
        placeholder("motivation: your deployment target, why this model, what decision the numbers inform"),
        "",
        " ".join(sp.energy_sentences(study, stated)) + r"~\cite{lacoste2019quantifying}",
        r"\section{Methods}",
        " ".join(sp.setup_sentences(study, stated)) + f" Data{data_cite}; metric{metric_cite}.",
        "",
        " ".join(sp.precision_sentences(study, stated))
        + (f" Quantization methods: {', '.join(quant_cite)}." if quant_cite else ""),
        "",
        sp.hardware_sentence(study),
        "",
        sp.bootstrap_sentence(study, stated) + r"~\cite{efron1993bootstrap}",
        r"\section{Results}",
    ]
    # The floats first: defined on the page where Results starts, LaTeX can place them from the
    # next page on instead of pushing the page-wide ones past the references.
    for name in ("results_quality", "results_cost"):
        if name in tables:
            parts.append(rf"\input{{{tables[name]}}}")
    parts += _result_figures(study, figs)
    parts += _qualitative_floats(study, figs)
    if "gpu_power" in figs:
        # After the page-wide examples: a column figure queued before them would hold them back
        # (LaTeX keeps figures in order), past the references.
        parts.append(figure(figs["gpu_power"], "GPU power over each run (NVML samples).", "fig:gpu_power"))
    parts += [
        _results_intro(tables, figs, folder),
        "",
        " ".join(rp.comparison_sentences(study, stated)) or placeholder("no second pretrained configuration"),
    ]
    if study.cost_refused is not None:
        # the results prose above already states the refusal with every run's value
        parts.append("Since the costs are not compared, there is no cost table and no cost or power figure.")
    elif "gpu_power" not in figs:
        parts.append("No run logged a GPU power trace (no NVML GPU), so there is no power figure.")
    parts += _qualitative(study, figs, stated)
    parts += _sustainability(study, figs, stated)
    parts += [
        r"\section{Discussion}",
        r"\paragraph{Where quality drops.} "
        + (" ".join(rp.significance_sentences(study, stated)) or "No paired quality change was computed."),
        r"\paragraph{Which configuration wins.} "
        + (
            " ".join(rp.winner_sentences(study, stated))
            or "Fewer than two pretrained runs measured each axis."
        ),
        placeholder("interpretation: which configuration you would deploy, and why"),
        r"\paragraph{Hallucination and safety.} "
        + (
            " ".join(rp.safety_sentences(study, stated))
            or "The runs logged no hallucination or safety metrics (CHAIR, POPE, output screening), so "
            "this draft makes no claim about them."
        ),
        r"\paragraph{Limitations.} " + " ".join(sp.limitation_sentences(study, stated)),
        placeholder("further limitations specific to your study"),
        r"\paragraph{Ethical risks.} Lower precision can change model outputs in ways an average metric "
        "hides: rarer content, people and text in images may be described worse. Captions and answers of "
        "any configuration can be wrong, biased or unsafe and need review before use.",
        placeholder("risks specific to your data and deployment"),
        r"\section{Conclusion}",
        placeholder("the conclusion you draw from the results above"),
        "Every number in this draft was generated from the tracking store ("
        + tex_text(study.selector)
        + "); rerunning \\texttt{vlm-quant paper} regenerates it from the same runs.",
        r"\bibliographystyle{plain}",
        r"\bibliography{references}",
    ]
    if "appendix" in tables:
        parts += [
            r"\clearpage\onecolumn\appendix",
            r"\section{Reproducibility}",
            "Hardware, driver, CUDA, exact package versions, seeds and the split hash, as each run "
            "logged them.",
            rf"\input{{{tables['appendix']}}}",
        ]
    parts.append(r"\end{document}")
    return "\n".join(parts) + "\n"


def _sustainability(study: Study, figs: dict[str, str], stated: Stated) -> list[str]:
    """The "Sustainability" section: the method and place sentences, its table and the place figure (the
    table and figure where some run measured GPU energy)."""
    out = [r"\section{Sustainability}", " ".join(sus.sustainability_sentences(study, stated))]
    table = sus.sustainability_table(study, stated)
    if table is not None:
        out.append(place_tables(table))
    # CPU-only studies: the place figure would show codecarbon's CPU+RAM estimate, which the sentences
    # already state as a ratio; compare's report and the slides keep the figure (the paper has 6 pages).
    if "co2e_by_place" in figs and sus.measured_gpu_energy(study):
        caption = "CO$_2$e of the same energy per 1,000 images by country."
        out.append(figure(figs["co2e_by_place"], caption, "fig:place"))
    return out


def _results_intro(tables: dict[str, str], figs: dict[str, str], folder: Path) -> str:
    text = []
    if "results_quality" in tables:
        text.append(f"{_table_refs(folder / tables['results_quality'])} give the quality of every pretrained "
                    "configuration")
    if "results_cost" in tables:
        text.append(f"{_table_refs(folder / tables['results_cost'])} the cost of every configuration")
    pareto = [n for n in figs if n.startswith("quality_vs_")]
    if pareto:
        text.append(
            f"Figure{'s' if len(pareto) > 1 else ''}~"
            + ", ".join(rf"\ref{{fig:{n}}}" for n in pareto)
            + " the quality-cost trade-offs with the "
            "Pareto front"
        )
    return ("; ".join(text) + ".") if text else ""


def _table_refs(path: Path) -> str:
    """``Table~1`` or ``Tables~1--3``: every part of a table split by topic (`table_parts`)."""
    labels = re.findall(r"\\label\{([^}]+)\}", path.read_text(encoding="utf-8"))
    if len(labels) == 1:
        return rf"Table~\ref{{{labels[0]}}}"
    return rf"Tables~\ref{{{labels[0]}}}--\ref{{{labels[-1]}}}"


def _result_figures(study: Study, figs: dict[str, str]) -> list[str]:
    out = []
    for metric, stem in PARETO_COSTS:
        name = f"quality_vs_{stem}"
        if name in figs:
            noun = next((n for m, n, _ in rp.AXES if m == metric), stem)
            out.append(
                figure(
                    figs[name],
                    f"{tex_text(study.primary_name)} against {noun}; the red line joins "
                    "the Pareto front (no other configuration is both cheaper and better).",
                    f"fig:{name}",
                )
            )
    if "cost_bars" in figs:
        caption = r"Every cost per configuration (\dag: random weights, cost only; n/a: not measured)."
        out.append(figure(figs["cost_bars"], caption, "fig:cost_bars", wide=True))
    return out


def _qualitative(study: Study, figs: dict[str, str], stated: Stated) -> list[str]:
    out = [r"\section{Qualitative examples}"]
    table = examples_table(study)
    if "qualitative" not in figs and table is None:
        return out + [
            "The configurations gave the same output on every sample, or fewer than two pretrained "
            "configurations logged predictions: there is no example to show."
        ]
    q = study.report.qualitative
    disagree = q is not None and not q.examples.empty
    n = len(q.examples) if disagree else len(shown_examples(study))
    k = f"{stated.num(n, '.0f', 'count:examples')} samples" if n > 1 else "sample"
    refs = ([r"Figure~\ref{fig:qualitative}"] if "qualitative" in figs else []) + (
        [r"Table~\ref{tab:examples}"] if table else []
    )
    if disagree:
        out.append(
            f"{' and '.join(refs)} show the {k} on which "
            "the configurations disagree most (most distinct predictions, then the largest spread of the "
            f"per-sample {tex_text(study.primary_name)}), with each configuration's output and references."
        )
    else:
        out.append(
            "The configurations gave the same output and score on every sample; "
            f"{' and '.join(refs)} show{'s' if len(refs) == 1 else ''} the first {k} with each "
            "configuration's output and the references."
        )
    out.append(placeholder("what these examples show about the configurations' errors"))
    return out


def _qualitative_floats(study: Study, figs: dict[str, str]) -> list[str]:
    """The examples figure and table, defined with the results' floats (before the Results text) so
    LaTeX places them before the references."""
    floats = []
    if "qualitative" in figs:
        floats.append(
            figure(
                figs["qualitative"],
                "Samples where the configurations disagree: each configuration's "
                f"output with its per-sample {tex_text(study.primary_name)}.",
                "fig:qualitative",
                wide=True,
            )
        )
    table = examples_table(study)
    if table:
        floats.append(table)
    return floats
