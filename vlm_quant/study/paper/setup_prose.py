"""Sentences about what ran (methods, energy formulas, limitations, abstract), from the runs' params.

Strings from the store (model id, prompt, hashes, versions) are escaped and set in ``\\texttt`` or
quotes; numbers go through :meth:`Stated.num` with their source so tests can check them.
A setting the runs disagree on is said to differ (the appendix lists each run's value).
"""

from __future__ import annotations

from vlm_quant.study.paper.results_prose import AXES, QUALITY_SPEC, _join, describe
from vlm_quant.study.paper.study import ROLES, Study
from vlm_quant.study.paper.tex import Stated, tex_text
from vlm_quant.study.report import power
from vlm_quant.study.report.tables import COST_COLUMNS

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
        f"{_int_param(study, 'batch_size', stated)}, with the {_setting(study, 'engine')} engine on device "
        f"{_setting(study, 'device')}.",
    ]


def precision_sentences(study: Study, stated: Stated) -> list[str]:
    """One clause per configuration: its preset and the precision of each role as logged."""
    clauses = []
    for _, row in study.runs.iterrows():
        roles = [f"{role} {tt(study.param(row, p) or 'n/a')}" for p, role in ROLES]
        weights = " (random weights: cost only)" if row["weights"] == "random" else ""
        clauses.append(f"{tex_text(row['label'])}{weights}: {', '.join(roles)}")
    n = stated.num(len(study.runs), ".0f", "count:runs")
    base = study.baseline
    baseline = (
        f"The baseline is {tex_text(base['label'])}." if base is not None else "No pretrained baseline ran."
    )
    return [f"We compare {n} configurations. " + "; ".join(clauses) + ".", baseline]


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
        r"$(z_{1-\alpha/2} + z_{\mathrm{power}})\,\mathrm{SE}$, with SE the standard error of $\Delta$ "
        "from the image-level paired differences."
    )


def energy_sentences(study: Study, stated: Stated) -> list[str]:
    """The energy and CO2e formulas, with the PUE and carbon intensity the runs used."""
    text = [
        r"Energy is read from the GPU's cumulative energy counter (NVML) around the timed window, never "
        r"integrated from sampled power: $E_{\mathrm{image}} = (E(t_1) - E(t_0)) / N_{\mathrm{images}}$. "
        r"Emissions follow $\mathrm{CO_2e} = E_{\mathrm{kWh}} \times \mathrm{PUE} \times I$, with $I$ the "
        r"grid's carbon intensity (g\,CO$_2$e/kWh, codecarbon's yearly per-country average)."
    ]
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
    if absent:
        out.append(f"Not measured by any run: {_join([tex_text(a) for a in absent])}.")
    out.append(
        "Costs depend on the hardware and software listed in the appendix and do not transfer to "
        "other GPUs or drivers."
    )
    return out


def abstract_sentences(study: Study, stated: Stated) -> list[str]:
    """What was compared and the headline trade-off of each configuration (first measured cost)."""
    from vlm_quant.study.paper.results_prose import cost_change, quality_clause

    n = stated.num(len(study.pretrained), ".0f", "count:pretrained_runs")
    out = [
        f"We measure what post-training quantization does to {_setting(study, 'model')}: {n} precision "
        f"configurations on {_int_param(study, 'n_samples', stated)} samples of {_setting(study, 'dataset')} "
        f"{_setting(study, 'split')}, quality and cost from one tracked run each."
    ]
    for _, row in study.others.iterrows():
        for metric, noun, unit in AXES:
            change = cost_change(study, row, metric, noun, unit, stated)
            if change:
                out.append(
                    f"Relative to {tex_text(study.baseline['label'])}, {describe(study, row)} {change} "
                    f"at {quality_clause(study, row, stated)}."
                )
                break
    return out
