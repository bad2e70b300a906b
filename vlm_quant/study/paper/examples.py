"""The qualitative examples as a LaTeX table: each configuration's output and the references.

The samples are the compare report's picks (``qualitative.examples``: where the configurations
disagree most); the references (captions, or VQA answers) come from the baseline's logged
predictions rows. Every cell is escaped: predictions are free model text.
"""

from __future__ import annotations

import pandas as pd

from vlm_quant.study.paper.study import Study
from vlm_quant.study.paper.tex import tex_text
from vlm_quant.study.report.render import fmt_number

MAX_REFERENCES = 2
AGREED_EXAMPLES = 2
MAX_CHARS = 140  # a runaway generation is cut (marked with an ellipsis) so the table fits the page


def examples_table(study: Study, *, wide: bool = True) -> str | None:
    """A ``table*`` (``table`` unless ``wide``) with one block of rows per example; None without any."""
    examples = shown_examples(study)
    if examples is None:
        return None
    labels = [c[len("prediction[") : -1] for c in examples.columns if c.startswith("prediction[")]
    rows = []
    for _, example in examples.iterrows():
        sid = str(example["sample_id"])
        question = example.get("question")
        head = rf"\multicolumn{{3}}{{l}}{{\textbf{{Sample {tex_text(sid)}}}"
        head += (rf": {_cut(question)}" if isinstance(question, str) and question else "") + r"} \\"
        rows.append(head)
        for label in labels:
            score = fmt_number(example[f"score[{label}]"])
            rows.append(f"{tex_text(label)} & {_cut(example[f'prediction[{label}]'])} & {score} \\\\")
        for ref in _references(study.samples.get(sid, {}))[:MAX_REFERENCES]:
            rows.append(rf"\emph{{reference}} & \emph{{{_cut(ref)}}} & \\")
        rows.append(r"\midrule")
    rows[-1] = r"\bottomrule"
    env = "table*" if wide else "table"
    # The output column takes what the labels and scores leave of the line (tabularx's X), so a
    # long configuration name never pushes the table into the margin.
    width = r"\textwidth" if wide else r"\linewidth"
    return "\n".join(
        [
            rf"\begin{{{env}}}[{'tp' if wide else 'tbp'}]",
            r"\centering",
            r"\small",
            rf"\caption{{Qualitative examples: each configuration's output, its per-sample "
            rf"{tex_text(study.primary_name)}, and references.}}",
            r"\label{tab:examples}",
            rf"\begin{{tabularx}}{{{width}}}{{lXr}}",
            r"\toprule",
            rf"Configuration & Output & {tex_text(study.primary_name)} \\",
            r"\midrule",
            *rows,
            r"\end{tabularx}",
            rf"\end{{{env}}}",
        ]
    )


def shown_examples(study: Study) -> pd.DataFrame | None:
    """The report's disagreement picks; when every configuration agreed on every sample, the first
    ``AGREED_EXAMPLES`` ranked samples (so the reader still sees outputs next to references)."""
    q = study.report.qualitative
    if q is None:
        return None
    if not q.examples.empty:
        return q.examples
    return q.ranked.head(AGREED_EXAMPLES) if not q.ranked.empty else None


def _references(row: dict) -> list[str]:
    refs = row.get("references") or row.get("answers") or []
    return [str(r) for r in refs] if isinstance(refs, list) else [str(refs)]


def _cut(text: object) -> str:
    value = "" if text is None or (isinstance(text, float) and pd.isna(text)) else str(text)
    value = " ".join(value.split())
    if len(value) > MAX_CHARS:
        value = value[: MAX_CHARS - 1].rstrip() + "…"
    return tex_text(value) if value else r"\emph{(empty)}"
