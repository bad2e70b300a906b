"""Sentences that state results, generated from the store's numbers (LaTeX source, one string each).

Every number goes through :meth:`Stated.num` with the same format spec as the report's tables, so a
sentence and its table never disagree. A cost the two runs did not both measure is said to be not
measured, never computed from a zero. When the comparability gate refused the runs' costs
(`Study.cost_refused`), no sentence states a cost or names a cheaper configuration: each says the
refusal instead (`cost_refusal_sentence`). Percent changes are relative to the baseline run:
``100 * |B - A| / A`` with the direction in the verb (cut / raised).
"""

from __future__ import annotations

import pandas as pd

from vlm_quant.study.paper.study import Study
from vlm_quant.study.paper.tex import Stated, tex_text
from vlm_quant.study.report.comparability import refusal_headline, refusal_values
from vlm_quant.study.report.precision_labels import precision_label, realized_precisions, unnamed_remainder
from vlm_quant.study.report.render import MIB_SPEC, fmt_number
from vlm_quant.study.report.tables import COST_COLUMNS
from vlm_quant.tracking.run_schema import POPE_SPLITS

SPEC = {metric: spec for metric, _, spec in COST_COLUMNS} | {"peak_rss_mib": MIB_SPEC}
QUALITY_SPEC = ".3f"
# Lower-is-better costs a sentence compares: (metric, noun, unit). Host RSS stands in on CPU runs.
AXES = (
    ("peak_vram_allocated_mib", "peak VRAM", "MiB"),
    ("latency_ms_p50", "median latency", "ms/image"),
    ("energy_j_per_image", "energy per image", "J"),
    ("size_on_disk_mib", "size on disk", "MiB"),
    ("peak_rss_mib", "peak host memory (RSS)", "MiB"),
)


def cost_refusal_sentence(study: Study, *, values: bool = True) -> str | None:
    """``Costs are not compared: parameter 'pue' differs between them (fp16 (id): '1.0'; ...).``, the
    comparability gate's own message; None when the costs may be compared. ``values=False``: the
    first sentence alone (the abstract)."""
    refusal = study.cost_refused
    if refusal is None:
        return None
    headline = refusal_headline(refusal).removeprefix("cost not compared: ")
    listing = f" ({'; '.join(refusal_values(refusal, run_ids=False))})" if values else ""
    return f"Costs are not compared: {tex_text(headline + listing)}."


def describe(study: Study, row: pd.Series) -> str:
    """The configuration's label, which names what the precision audit found in each quantized role
    (`precision_labels`), plus what the label leaves unsaid when it differs from the baseline: the
    float the other roles held, e.g. ``ar-w4 (language) (other roles bf16, baseline fp32)``."""
    label = tex_text(row["label"])
    base = study.baseline
    if base is None or row["run_id"] == base["run_id"]:
        return label
    mine, theirs = realized_precisions(row), realized_precisions(base)
    rest = unnamed_remainder(mine) if mine else None
    base_float = (unnamed_remainder(theirs) or precision_label(theirs)) if theirs else None
    if rest and base_float and rest != base_float:
        return f"{label} (other roles {tex_text(rest)}, baseline {tex_text(base_float)})"
    return label


def quality_clause(study: Study, row: pd.Series, stated: Stated) -> str:
    """``a CIDEr change of -0.012 [-0.030, 0.004]`` (paired bootstrap), or why there is none."""
    estimate = study.report.deltas.get(row["run_id"])
    if estimate is None:
        return f"no paired {study.primary_name} change (its predictions were not logged)"
    rid = row["run_id"]
    d = stated.num(estimate.delta, QUALITY_SPEC, f"delta:{rid}:delta")
    lo = stated.num(estimate.low, QUALITY_SPEC, f"delta:{rid}:low")
    hi = stated.num(estimate.high, QUALITY_SPEC, f"delta:{rid}:high")
    # \mbox: a line break between "[-" and "0.100" would read as a different number
    return rf"a {study.primary_name} change of \mbox{{{d} [{lo}, {hi}]}}"


def cost_change(
    study: Study, row: pd.Series, metric: str, noun: str, unit: str, stated: Stated
) -> str | None:
    """``cut peak VRAM by 23.4% (1500 → 1149 MiB)``; None when either run did not measure it, or when
    the costs may not be compared (`Study.cost_refused`)."""
    base = study.baseline
    if study.cost_refused is not None:
        return None
    a, b = study.metric(base, metric), study.metric(row, metric)
    if a is None or b is None or a <= 0:
        return None
    rid, base_id = row["run_id"], base["run_id"]
    spec = SPEC[metric]
    if a != b and fmt_number(a, spec) == fmt_number(b, spec):
        spec = ".3g"  # the table's precision hides a real change (a 0.55 -> 0.75 MiB tiny model)
    a_text = stated.num(a, spec, f"metric:{base_id}:{metric}")
    b_text = stated.num(b, spec, f"metric:{rid}:{metric}")
    if a_text == b_text:
        return f"left {noun} unchanged at {b_text} {unit}"
    pct = stated.num(abs(b - a) / a * 100.0, ".1f", f"pct:{rid}:{metric}")
    verb = "cut" if b < a else "raised"
    return rf"{verb} {noun} by {pct}\% ({a_text} $\rightarrow$ {b_text} {unit})"


def comparison_sentences(study: Study, stated: Stated) -> list[str]:
    """One or two sentences per non-baseline pretrained configuration: the first cost both runs
    measured with the quality change, then the other costs; what was not measured, said so."""
    sentences = []
    refusal = cost_refusal_sentence(study)
    for _, row in study.others.iterrows():
        if refusal is not None:
            sentences.append(f"{describe(study, row)} shows {quality_clause(study, row, stated)}.")
            continue
        changes, missing = [], []
        for metric, noun, unit in AXES:
            text = cost_change(study, row, metric, noun, unit, stated)
            if text:
                changes.append(text)
            elif metric != "peak_rss_mib":
                missing.append(noun)
        who = describe(study, row)
        quality = quality_clause(study, row, stated)
        if not changes:
            sentences.append(f"{who} shows {quality}; no cost was measured by both it and the baseline.")
            continue
        sentences.append(f"{who} {changes[0]} at {quality}.")
        if len(changes) > 1:
            sentences.append(f"It also {_join(changes[1:])}.")
        if missing:
            sentences.append(f"Not measured for this pair: {_join(missing)}.")
    return sentences + ([refusal] if refusal is not None else [])


def significance_sentences(study: Study, stated: Stated) -> list[str]:
    """Where quality drops: whether each interval lies below, above, or around zero."""
    name = study.primary_name
    out = []
    for _, row in study.others.iterrows():
        estimate = study.report.deltas.get(row["run_id"])
        if estimate is None:
            continue
        rid, label = row["run_id"], tex_text(row["label"])
        lo = stated.num(estimate.low, QUALITY_SPEC, f"delta:{rid}:low")
        hi = stated.num(estimate.high, QUALITY_SPEC, f"delta:{rid}:high")
        n = stated.num(estimate.n_samples, ".0f", f"delta:{rid}:n_samples")
        interval = rf"\mbox{{[{lo}, {hi}]}}"
        if estimate.high < 0:
            out.append(f"{label} lowers {name}: its whole interval {interval} lies below zero ({n} samples).")
        elif estimate.low > 0:
            out.append(f"{label} raises {name}: its whole interval {interval} lies above zero ({n} samples).")
        else:
            out.append(
                f"No {name} change of {label} is detectable on {n} paired samples: its interval {interval} "
                "contains zero."
            )
    return out


def winner_sentences(study: Study, stated: Stated) -> list[str]:
    """Which configuration wins on which axis (pretrained runs that measured it), and the Pareto front."""
    out = []
    runs = study.pretrained
    best = _extreme(study, runs, study.primary, highest=True)
    if best is not None:
        row, value = best
        text = stated.num(value, QUALITY_SPEC, f"metric:{row['run_id']}:{study.primary}")
        out.append(f"Highest {study.primary_name}: {tex_text(row['label'])} ({text}).")
    refusal = cost_refusal_sentence(study, values=False)
    if refusal is not None:
        return [*out, f"No configuration is named the cheapest. {refusal}"]
    for metric, noun, unit in AXES:
        found = _extreme(study, runs, metric, highest=False)
        if found is None:
            continue
        row, value = found
        spec = SPEC[metric]
        others = [study.metric(r, metric) for _, r in runs.iterrows() if r["run_id"] != row["run_id"]]
        if any(
            v is not None and v != value and fmt_number(v, spec) == fmt_number(value, spec) for v in others
        ):
            spec = ".3g"  # at the table's precision the winner would look tied
        text = stated.num(value, spec, f"metric:{row['run_id']}:{metric}")
        out.append(f"Lowest {noun}: {tex_text(row['label'])} ({text} {unit}).")
    return out + pareto_sentences(study)


def pareto_sentences(study: Study) -> list[str]:
    """The Pareto front of the first drawn quality-versus-cost plane (no numbers: labels only)."""
    if study.cost_refused is not None:  # no plane is drawn; the caller says why
        return []
    for metric, noun, _ in AXES:
        plot = study.pareto_plot(metric)
        if plot is None:
            continue
        points = plot.data["points"]
        front = [tex_text(label) for label in points.loc[points["pareto"], "label"]]
        dominated = [tex_text(label) for label in points.loc[~points["pareto"], "label"]]
        if not front:  # every configuration carries a caveat: drawn hollow, none on the front
            return [
                f"On the {study.primary_name}-versus-{noun} plane no configuration is on the Pareto front: "
                "each carries a caveat (marked in the tables) and is drawn hollow."
            ]
        text = f"On the {study.primary_name}-versus-{noun} plane the Pareto front is {_join(front)}"
        verb = "is" if len(dominated) == 1 else "are"
        tail = f"; {_join(dominated)} {verb} dominated." if dominated else "; no configuration is dominated."
        return [text + tail]  # one front in the prose; the figures show the others
    return []


# The hallucination and safety metrics the prose states (metric, format): the headline of each, the
# full set stays in the report's tables. A prefix match printed all 33 of POPE's metrics.
SAFETY_HEADLINE = (
    ("chair_i", ".3f"), ("chair_s", ".3f"), ("object_recall", ".3f"), ("pope_accuracy", ".3f"),
    *((f"pope_{split}_f1", ".3f") for split in POPE_SPLITS),
    ("pope_doubtful_answers_n", ".0f"), ("safety_flagged_n", ".0f"), ("safety_flagged_rate", ".3f"),
)


def safety_sentences(study: Study, stated: Stated) -> list[str]:
    """The headline hallucination and safety numbers (`SAFETY_HEADLINE`) of the runs that logged them."""
    out = []
    for name, spec in SAFETY_HEADLINE:
        column = f"metrics.{name}"
        if column not in study.runs.columns:
            continue
        values = [
            f"{tex_text(row['label'])} {stated.num(row[column], spec, f'metric:{row.run_id}:{name}')}"
            for _, row in study.pretrained.iterrows()
            if not pd.isna(row[column])
        ]
        if values:
            out.append(rf"\texttt{{{tex_text(name)}}}: {', '.join(values)}.")
    return out


def _extreme(
    study: Study, runs: pd.DataFrame, metric: str, *, highest: bool
) -> tuple[pd.Series, float] | None:
    values = [(row, study.metric(row, metric)) for _, row in runs.iterrows()]
    values = [(row, v) for row, v in values if v is not None]
    if len(values) < 2:  # a "winner" of one is no comparison
        return None
    return (max if highest else min)(values, key=lambda pair: pair[1])


def _join(items: list[str]) -> str:
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]
