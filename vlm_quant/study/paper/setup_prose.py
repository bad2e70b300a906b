"""Sentences about what ran (methods, energy formulas, limitations, abstract), from the runs' params.

Strings from the store (model id, prompt, hashes, versions) are escaped and set in ``\\texttt`` or
quotes; numbers go through :meth:`Stated.num` with their source so tests can check them.
A setting the runs disagree on is said to differ (the appendix lists each run's value). Runs whose
costs the comparability gate refused get the refusal where a cost, PUE or carbon intensity would be.
"""

from __future__ import annotations

import pandas as pd

from vlm_quant.study.paper.results_prose import AXES, QUALITY_SPEC, _join, cost_refusal_sentence, describe
from vlm_quant.study.paper.study import ROLES, Study
from vlm_quant.study.paper.tex import Stated, tex_text
from vlm_quant.study.report import caveats, power
from vlm_quant.study.report.precision_labels import NO_LINEARS, short_precision
from vlm_quant.study.report.tables import COST_COLUMNS
from vlm_quant.tasks.anls import METRIC_DEFINITION as ANLS_DEFINITION
from vlm_quant.tasks.relaxed_accuracy import METRIC_DEFINITION as RELAXED_ACCURACY_DEFINITION
from vlm_quant.tasks.vqa_metrics import METRIC_DEFINITION as VQA_METRIC_DEFINITION

# The headline metric's definition, stated in the setup for tasks whose metric needs one (by scoring key).
METRIC_DEFINITIONS = {
    "vqa": VQA_METRIC_DEFINITION,
    "docvqa": ANLS_DEFINITION,
    "chartqa": RELAXED_ACCURACY_DEFINITION,
}

COST_NAMES = {metric: header for metric, header, _ in COST_COLUMNS}


def tt(value: object) -> str:
    """A store string in typewriter type, breakable after / _ - . (long model paths overflow a column)."""
    text = tex_text(value)
    for mark in ("/", r"\_", "-", "."):
        text = text.replace(mark, mark + r"\linebreak[0]")
    return rf"\texttt{{{text}}}"


def _setting(study: Study, name: str) -> str:
    value = study.shared(name)
    return tt(value) if value is not None else "(differs between runs, see the appendix)"


def _int_param(study: Study, name: str, stated: Stated) -> str:
    value = study.shared(name)
    base = study.baseline if study.baseline is not None else study.runs.iloc[0]
    try:
        return stated.num(float(value), ".0f", f"param:{base['run_id']}:{name}")
    except (TypeError, ValueError):
        return "(differs between runs, see the appendix)" if value is None else tt(value)


def setup_sentences(study: Study, stated: Stated) -> list[str]:
    """Model, revision, data (split, size, seed, ids hash), prompt and generation settings."""
    task = "image captioning" if study.task == "captioning" else "visual question answering"
    prompt = study.shared("prompt")
    return [
        f"We evaluate {_setting(study, 'model')} at revision {_setting(study, 'revision')} on {task}: "
        f"{_int_param(study, 'n_samples', stated)} samples of the {_setting(study, 'dataset')} "
        f"{_setting(study, 'split')} split, drawn with seed {_int_param(study, 'seed', stated)} "
        f"(ids hash {_setting(study, 'ids_hash')}); every configuration sees the identical id list.",
        (
            "Every configuration receives the prompt ``" + tex_text(prompt) + "''"
            if prompt is not None
            else "The prompt differs between runs"
        )
        + f" and generates at most {_int_param(study, 'max_new_tokens', stated)} new tokens at batch size "
        f"{_int_param(study, 'batch_size', stated)}, with the {engine_phrase(study)} on device "
        f"{_setting(study, 'device')}.",
        *([tex_text(METRIC_DEFINITIONS[study.task]) + "."] if study.task in METRIC_DEFINITIONS else []),
    ]


def engine_phrase(study: Study) -> str:
    """``static-cache engine (compiled requested)``: the engine that ran (``engine_resolved``), never
    only the request; the request alone where no run logged what ran."""
    ran, asked = study.shared("engine_resolved"), study.shared("engine")
    if all(study.param(row, "engine_resolved") is None for _, row in study.runs.iterrows()):
        return f"{_setting(study, 'engine')} engine (as requested; the runs did not log which engine ran)"
    if ran is None:
        return "engine that differs between runs (see the appendix)"
    requested = f" ({tt(asked)} requested)" if asked and asked not in ("auto", ran) else ""
    return f"{tt(ran)} engine{requested}"


def role_precisions(study: Study, row: pd.Series) -> str:
    """``vision encoder fp32, ..., LM head fp32, computing in float32``: what the precision audit found
    in each role and the dtype the unquantized roles computed in (params ``realized_precision_<role>``
    and ``dtype``). A run logged before the audit existed says its roles are the request."""
    realized = {role: study.realized(row, role) for role, _ in ROLES}
    if any(realized.values()):
        roles = [f"{noun} {realized_text(realized[role])}" for role, noun in ROLES]
    else:
        roles = [f"{noun} {tt(study.param(row, 'precision_' + role) or 'n/a')}" for role, noun in ROLES]
        roles[-1] += " (as requested: the run logged no precision audit)"
    dtype = study.param(row, "dtype")
    return ", ".join(roles) + (f", computing in {tt(dtype)}" if dtype else "")


def realized_text(value: str | None, *, breakable: bool = True) -> str:
    """A role's realized precision as printed: short (``int8+fp32``), ``n/a`` when not logged.
    ``breakable=False`` for a table cell (no line-break hints)."""
    if value is None:
        return "n/a"
    if value == NO_LINEARS:
        return "(no weights of its own)"
    return tt(short_precision(value)) if breakable else rf"\texttt{{{tex_text(short_precision(value))}}}"


def precision_sentences(study: Study, stated: Stated) -> list[str]:
    """One clause per configuration: the precision each role really held and the compute dtype; the
    baseline; and, per run computed in another dtype than the baseline, that its quality change mixes
    the two (the tables mark it, see `caveats.MIXED_DTYPE`)."""
    clauses = []
    for _, row in study.runs.iterrows():
        weights = " (random weights: cost only)" if row["weights"] == "random" else ""
        clauses.append(f"{tex_text(row['label'])}{weights}: {role_precisions(study, row)}")
    n = stated.num(len(study.runs), ".0f", "count:runs")
    compared = f"We compare {n} configurations. " + "; ".join(clauses) + "."
    return [compared, baseline_sentence(study), *mixed_dtype_sentences(study)]


def baseline_sentence(study: Study) -> str:
    base = study.baseline
    if base is None:
        return "No pretrained baseline ran."
    return f"The baseline is {tex_text(base['label'])}."


def mixed_dtype_sentences(study: Study) -> list[str]:
    """Runs whose unquantized roles computed in another dtype than the baseline's, said so."""
    base = study.baseline
    out = []
    for _, row in study.runs.iterrows():
        if base is None or not caveats.mixed_dtype(row):
            continue
        out.append(
            f"{tex_text(row['label'])}{caveats.MIXED_DTYPE.mark_tex} computed its unquantized roles in "
            f"{tt(study.param(row, 'dtype'))}, the baseline in {tt(study.param(base, 'dtype'))}: its "
            "quality change mixes this compute-dtype change into the quantization effect."
        )
    return out


def hardware_sentence(study: Study) -> str:
    """The baseline's logged GPU, driver, CUDA, CPU and key package versions."""
    env = study.environment
    if not env:
        return "The runs logged no environment, so the hardware is unknown."
    gpus = env.get("gpus") or []
    gpu = ", ".join(tt(g.get("name")) for g in gpus)
    packages = env.get("packages") or {}
    versions = ", ".join(
        f"{tex_text(n)} {tt(packages[n])}" for n in ("torch", "transformers", "bitsandbytes") if n in packages
    )
    where = (
        f"on {gpu} (driver {tt(env.get('driver'))}, CUDA {tt(env.get('cuda'))})"
        if gpus
        else "on CPU only (no GPU)"
    )
    return (
        f"All numbers were measured {where}, host CPU {tt(env.get('cpu'))}"
        + (f", using {versions}" if versions else "")
        + "; the appendix lists every package version."
    )


def bootstrap_sentence(study: Study, stated: Stated) -> str:
    estimate = next((d for d in study.report.deltas.values() if d), None)
    if estimate is None:
        return (
            f"No paired {study.primary_name} difference could be computed (fewer than two pretrained runs "
            "with predictions)."
        )
    conf = stated.num(estimate.confidence * 100, ".0f", "setting:confidence_pct")
    resamples = stated.num(estimate.n_resamples, ".0f", "setting:n_resamples")
    seed = stated.num(estimate.seed, ".0f", "setting:bootstrap_seed")
    return (
        rf"A quality change $\Delta$ is the mean over samples of the configuration's per-sample "
        rf"{study.primary_name} minus the baseline's on the same sample; its interval is the {conf}\% "
        "percentile paired bootstrap over images: each resample draws as many images as were scored, with "
        "replacement, and keeps every sample of a drawn image together (several questions about one image, "
        "and a question asked in several splits, are not independent draws), recomputing the metric on "
        f"the resample ({resamples} resamples, seed {seed})."
    )


def power_sentence(study: Study, stated: Stated) -> str | None:
    """The smallest paired difference the sample could detect (the largest over configurations)."""
    found = [
        (power.minimum_detectable_difference(d.standard_error), rid, d)
        for rid, d in study.report.deltas.items()
        if d and d.standard_error is not None and rid != study.report.baseline_run_id
    ]
    if not found:
        return None
    mde, rid, estimate = max(found, key=lambda item: item[0])
    n = stated.num(estimate.n_images, ".0f", f"images:{rid}")
    label = tex_text(study.runs.loc[study.runs["run_id"] == rid, "label"].iat[0])
    return (
        f"With $n$ = {n} images, {study.primary_name} differences smaller than "
        f"{stated.num(mde, QUALITY_SPEC, f'mde:{rid}')} cannot be told apart from noise: that is the "
        f"minimum detectable paired difference of {label} (the largest among the configurations) at "
        rf"${power.POWER * 100:.0f}\%$ power and two-sided $\alpha = {power.ALPHA:g}$, "
        # No subscripts (they print below 8 pt); constants in math mode, as the other fixed numbers.
        rf"that is ${power.minimum_detectable_difference(1.0):.2f}$ standard errors of $\Delta$ (normal "
        "approximation), the standard error from the image-level paired differences."
    )


def energy_sentences(study: Study, stated: Stated) -> list[str]:
    """The energy and CO2e formulas, with the PUE and carbon intensity the runs used."""
    text = [
        r"Energy is read from the GPU's cumulative energy counter (NVML) around each measurement "
        r"window, never integrated from sampled power: "
        r"$E_{\mathrm{image}} = (E(t_1) - E(t_0)) / N_{\mathrm{images}}$ "
        r"over the cost pass's timed throughput iterations at the evaluation batch size, and net of idle "
        r"power as $E_{\mathrm{image}} - P_{\mathrm{idle}} / \mathrm{throughput}$, with $P_{\mathrm{idle}}$ "
        r"the board's mean power before the model loaded. "
        r"Emissions follow $\mathrm{CO_2e} = E_{\mathrm{kWh}} \times \mathrm{PUE} \times I$ for the GPU "
        r"energy of the whole quality pass, with $I$ the "
        r"grid's carbon intensity (g\,CO$_2$e/kWh, codecarbon's yearly per-country average)."
    ]
    refusal = cost_refusal_sentence(study)
    if refusal is not None:  # the runs may differ in PUE or country: one run's values would be false
        return [*text, refusal]
    with_ci = [row for _, row in study.runs.iterrows() if study.metric(row, "carbon_intensity_g_per_kwh")]
    if not with_ci:
        logged = any(study.metric(r, "co2e_kg") is not None for _, r in study.runs.iterrows())
        text.append(
            "The runs logged CO$_2$e but not the carbon intensity behind it."
            if logged
            else "No run measured GPU energy, so no CO$_2$e is reported."
        )
        return text
    row = with_ci[0]
    ci = stated.num(
        study.metric(row, "carbon_intensity_g_per_kwh"),
        ".0f",
        f"metric:{row['run_id']}:carbon_intensity_g_per_kwh",
    )
    pue = study.param(row, "pue")
    pue_text = stated.num(float(pue), ".2f", f"param:{row['run_id']}:pue") if pue else "n/a"
    text.append(
        f"The runs used $I$ = {ci} g\\,CO$_2$e/kWh (country {tt(study.param(row, 'country_iso_code'))}) "
        f"and PUE = {pue_text}."
    )
    return text


def limitation_sentences(study: Study, stated: Stated) -> list[str]:
    """Subset size, random-weight runs excluded, hardware, and the costs no run measured."""
    out = []
    widths = [
        (d.high - d.low, rid)
        for rid, d in study.report.deltas.items()
        if d and rid != study.report.baseline_run_id
    ]
    n = _int_param(study, "n_samples", stated)
    power_text = power_sentence(study, stated)
    if widths:
        width, rid = max(widths)
        w = stated.num(width, QUALITY_SPEC, f"width:{rid}")
        out.append(
            f"Quality is measured on {n} samples only: the widest interval spans {w} "
            f"{study.primary_name}, so smaller effects go undetected."
        )
    else:
        out.append(f"Quality is measured on {n} samples only.")
    if power_text:
        out.append(power_text)
    n_random = len(study.random)
    if n_random:
        k = stated.num(n_random, ".0f", "count:random_runs")
        verbs = ("measure", "are") if n_random > 1 else ("measures", "is")
        out.append(
            f"{k} random-weight run{'s' if n_random > 1 else ''} {verbs[0]} speed and memory only and "
            f"{verbs[1]} excluded from every quality result."
        )
    absent = [
        noun
        for m, noun, _ in AXES
        if m in COST_NAMES and all(study.metric(r, m) is None for _, r in study.runs.iterrows())
    ]
    refusal = cost_refusal_sentence(study, values=False)
    if refusal is not None:
        out.append(refusal)
    elif absent:
        out.append(f"Not measured by any run: {_join([tex_text(a) for a in absent])}.")
    out.append(
        "Costs depend on the hardware and software listed in the appendix and do not transfer to "
        "other GPUs or drivers."
    )
    return out


def abstract_sentences(study: Study, stated: Stated) -> list[str]:
    """What was compared and the headline trade-off of each configuration (first measured cost)."""
    from vlm_quant.study.paper.results_prose import cost_change, quality_clause

    out = [_abstract_scope(study, stated)]
    for _, row in study.others.iterrows():
        for metric, noun, unit in AXES:
            change = cost_change(study, row, metric, noun, unit, stated)
            if change:
                out.append(
                    f"Relative to {tex_text(study.baseline['label'])}, {describe(study, row)} {change} "
                    f"at {quality_clause(study, row, stated)}."
                )
                break
    refusal = cost_refusal_sentence(study, values=False)
    return out + ([refusal] if refusal is not None else [])


def _abstract_scope(study: Study, stated: Stated) -> str:
    """What was measured: pretrained configurations (quality and cost) and random-weight ones (cost
    only), each counted only when there is one; never "0 configurations"."""
    n_pre, n_random = len(study.pretrained), len(study.random)
    data = (
        f"{_int_param(study, 'n_samples', stated)} samples of {_setting(study, 'dataset')} "
        f"{_setting(study, 'split')}"
    )
    random = ""
    if n_random:
        k = stated.num(n_random, ".0f", "count:random_runs")
        plural = "s" if n_random > 1 else ""
        random = (
            f"{k} random-weight configuration{plural} measured as cost-only run{plural} (speed, memory, "
            "size and energy; random weights make quality meaningless)"
        )
    if not n_pre:
        return (
            f"We measure what post-training quantization costs on {_setting(study, 'model')}: {random}, "
            f"on the inputs of {data}, one tracked run each."
        )
    n = stated.num(n_pre, ".0f", "count:pretrained_runs")
    plural = "s" if n_pre > 1 else ""
    return (
        f"We measure what post-training quantization does to {_setting(study, 'model')}: {n} precision "
        f"configuration{plural} on {data}, quality and cost from one tracked run each"
        + (f", and {random}" if random else "")
        + "."
    )
