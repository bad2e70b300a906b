"""The paper's results tables: quality with Δ vs baseline, and cost, as Markdown, CSV and LaTeX.

Quality rows are pretrained-weight runs only: a random-weight run measures the speed and memory of
the architecture, its captions are noise. Random-weight runs appear in the cost table, marked with a
dagger and a footnote. Runs with a caveat (resumed, OOM back-off, engine fallback; see `caveats`)
carry its footnote symbol in every table, with a legend line. A metric a run did not log prints as
``n/a`` with the reason (see `cost_cells`). When the runs' costs may not be compared
(`comparability.cost_refusal`), the cost table is replaced by that message and results_cost.tex is
not written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vlm_quant.models.families import ROLES
from vlm_quant.study.report import (
    batch_invariance,
    caveats,
    cost_cells,
    fidelity_note,
    power,
    quality_cells,
    table_parts,
)
from vlm_quant.study.report.bootstrap import DeltaEstimate
from vlm_quant.study.report.render import (
    MIB_SPEC,
    NA,
    fmt_interval,
    fmt_number,
    is_missing,
    latex_escape,
    latex_table,
    markdown_table,
)
from vlm_quant.tracking import run_schema as rs

RANDOM_MARK_MD = "†"
RANDOM_MARK_TEX = r"$^\dagger$"
RANDOM_NOTE = "random weights: cost measurements only, excluded from every quality result"

QUALITY_HEADERS = {
    "cider": "CIDEr",
    "bleu_1": "BLEU-1",
    "bleu_2": "BLEU-2",
    "bleu_3": "BLEU-3",
    "bleu_4": "BLEU-4",
    "meteor": "METEOR",
    "rouge_l": "ROUGE-L",
    "spice": "SPICE",
    "vqa_accuracy": "VQA acc.",
    "vqa_accuracy_official": "VQA acc. (official, raw)",
    "vqa_accuracy_yes_no": "VQA yes/no",
    "vqa_accuracy_number": "VQA number",
    "vqa_accuracy_other": "VQA other",
    "pope_accuracy": "POPE acc.",
    "cider_in_domain": "CIDEr in-domain",
    "cider_near_domain": "CIDEr near-domain",
    "cider_out_domain": "CIDEr out-domain",
    "anls": "ANLS",
    "relaxed_accuracy": "Relaxed acc.",
    "relaxed_accuracy_human": "Relaxed acc. (human)",
    "relaxed_accuracy_augmented": "Relaxed acc. (augmented)",
}

# The cost columns of the paper table: (metric, header with unit, format spec).
COST_COLUMNS = (
    ("ttft_ms_p50", "TTFT p50 (ms)", ".1f"),
    ("decode_ms_per_token_p50", "Decode p50 (ms/token)", ".2f"),
    ("latency_ms_p50", "Latency p50 (ms/image)", ".1f"),
    ("throughput_images_per_s", "Throughput (images/s)", ".2f"),
    ("throughput_tokens_per_s", "Throughput (tokens/s)", ".1f"),
    ("peak_vram_allocated_mib", "Peak VRAM (MiB)", MIB_SPEC),
    ("size_on_disk_mib", "Size on disk (MiB)", MIB_SPEC),
    ("energy_j_per_image", "Energy (J/image)", ".2f"),
    ("co2e_kg", "CO2e (kg)", ".2e"),
)
# Shown beside the energy column when some run measured it: J/image at the cost pass's least-energy batch.
BEST_BATCH_METRICS = ("energy_j_per_image_optimal", "energy_optimal_batch_size")
BEST_BATCH_HEADER = "Best-batch energy (J/image)"
# Shown in the cost table (not plotted): how far each quantized run moved from the unquantized model,
# per image token (cosines) and per teacher-forced continuation position (KL, top-1); README glossary.
FIDELITY_COLUMNS = (
    ("fidelity_vision_cosine_token_mean", "Vision cos, token mean", ".4f"),
    ("fidelity_vision_cosine_token_p5", "Vision cos, token p5", ".4f"),
    ("fidelity_logits_kl_nats_token_mean", "KL (nats/token)", ".3g"),
    ("fidelity_top1_agreement_token_mean", "Top-1 agreement (tokens)", ".2f"),
)


@dataclass(frozen=True)
class Tables:
    """The rendered tables (string cells, as printed) and the files written."""

    quality: pd.DataFrame
    cost: pd.DataFrame  # empty (Configuration column only) when cost_refused
    numbers: pd.DataFrame  # full-precision values, one row per run (results.csv)
    paths: tuple[Path, ...]
    quality_legend: tuple[str, ...] = ()  # lines printed under the quality table (caveat marks)
    cost_legend: tuple[str, ...] = ()  # under the cost table: caveats, n/a reasons, estimates
    warnings: tuple[str, ...] = ()  # runs whose batch-1 agreement is low (also in quality_legend)
    power: str | None = None  # SE and minimum detectable Δ of the primary metric (also in quality_legend)
    cost_refused: str | None = None  # why there is no cost table


def quality_metrics(runs: pd.DataFrame, task: str) -> list[str]:
    """The task's quality metrics that at least one pretrained run logged (primary metric always)."""
    names = _task_metrics(task)
    pretrained = runs[runs["weights"] != "random"]
    primary = rs.PRIMARY_QUALITY_METRIC[task]
    return [
        m
        for m in names
        if m == primary or (f"metrics.{m}" in pretrained and pretrained[f"metrics.{m}"].notna().any())
    ]


def numbers_table(
    runs: pd.DataFrame,
    task: str,
    deltas: dict[str, DeltaEstimate | None],
    baseline_run_id: str | None,
    *,
    with_cost: bool = True,
) -> pd.DataFrame:
    """Full-precision results, one row per run; quality cells of random-weight runs are left empty.

    ``precision`` and ``realized_precision_<role>`` say what the audit found; ``caveats`` holds the
    run's caveat keys (comma-separated, empty when none). ``with_cost=False`` (costs refused)
    leaves the cost metrics out.
    """
    random = runs["weights"] == "random"
    out = pd.DataFrame(
        {
            "label": runs["label"],
            "run_id": runs["run_id"],
            "run_name": runs["run_name"],
            "weights": runs["weights"],
            "baseline": runs["run_id"] == baseline_run_id,
            "precision": _column(runs, "precision"),
            "caveats": caveats.caveat_keys(runs),
        }
    )
    for param in (
        "model",
        "quant",
        "precision_vision",
        "precision_projector",
        "precision_language",
        "precision_lm_head",
        *(f"realized_precision_{role}" for role in ROLES),
    ):
        out[param] = _column(runs, f"params.{param}")
    for metric in quality_metrics(runs, task):
        out[metric] = _column(runs, f"metrics.{metric}").where(~random)
    out[quality_cells.REASON_COLUMN] = quality_cells.reasons(runs)
    primary = rs.PRIMARY_QUALITY_METRIC[task]
    for part in ("delta", "low", "high"):
        out[f"{primary}_delta_{part}" if part != "delta" else f"{primary}_delta"] = [
            getattr(deltas.get(rid), part) if deltas.get(rid) else float("nan") for rid in runs["run_id"]
        ]
    out["n_paired_samples"] = [
        deltas[rid].n_samples if deltas.get(rid) else float("nan") for rid in runs["run_id"]
    ]
    out["n_paired_images"] = [_estimate_part(deltas.get(rid), "n_images") for rid in runs["run_id"]]
    out[f"{primary}_delta_se"] = [_estimate_part(deltas.get(rid), "standard_error") for rid in runs["run_id"]]
    out[f"{primary}_delta_mde"] = [  # NaN SE (none estimated) stays NaN
        power.minimum_detectable_difference(se) for se in out[f"{primary}_delta_se"]
    ]
    for name, values in batch_invariance.number_columns(runs, task).items():
        out[name] = values.where(~random) if name == batch_invariance.DELTA else values
    if with_cost:
        for metric in (*rs.COST_METRICS, *rs.FIDELITY_METRICS, *cost_cells.EXTRA_METRICS):
            out[metric] = _column(runs, f"metrics.{metric}")
        for metric in BEST_BATCH_METRICS:  # the energy-optimal batch (ML.ENERGY's comparison point)
            out[metric] = _column(runs, f"metrics.{metric}")
        for param in cost_cells.EXTRA_PARAMS:
            out[param] = _column(runs, f"params.{param}")
        for name, tag in cost_cells.EXTRA_TAGS.items():
            out[name] = _column(runs, f"tags.{tag}")
        for name, values in cost_cells.window_columns(runs).items():
            dtype = float if name == cost_cells.NET_COLUMN else object
            out[name] = pd.Series(values, index=runs.index, dtype=dtype)
    return out.reset_index(drop=True)


def quality_table(numbers: pd.DataFrame, task: str, *, confidence: float = 0.95) -> pd.DataFrame:
    """Printed quality table: pretrained runs, each metric, and Δ primary [low, high] vs baseline."""
    rows = numbers[numbers["weights"] != "random"]
    primary = rs.PRIMARY_QUALITY_METRIC[task]
    labels = [
        f"{label}{caveats.marks(keys)}" for label, keys in zip(rows["label"], rows["caveats"], strict=True)
    ]
    table = pd.DataFrame({"Configuration": labels})
    late = quality_cells.deferred_rows(rows)  # score=later, not scored yet: its cells say so
    for metric in _quality_columns(numbers, task):
        cells = [fmt_number(v, ".3f") for v in rows[metric]]
        table[QUALITY_HEADERS[metric]] = quality_cells.or_deferred(cells, late)
    header = f"Δ{QUALITY_HEADERS[primary]} [{confidence:.0%} CI]"
    table[header] = quality_cells.or_deferred([
        "baseline" if is_base else fmt_interval(d, lo, hi, ".3f")
        for is_base, d, lo, hi in zip(
            rows["baseline"],
            rows[f"{primary}_delta"],
            rows[f"{primary}_delta_low"],
            rows[f"{primary}_delta_high"],
            strict=True,
        )
    ], late)
    if batch_invariance.shown(rows):
        table[batch_invariance.HEADER] = batch_invariance.cells(rows)
    return table.reset_index(drop=True)


def cost_table(numbers: pd.DataFrame, mark: str = RANDOM_MARK_MD) -> pd.DataFrame:
    """Printed cost table: every run, random-weight ones suffixed with ``mark``, caveats marked.

    Absent values read ``n/a (<reason>)``; on CPU the memory column is peak RSS; energy headers name
    their window, with idle power and J/image net of it where a run measured GPU energy; where NVML
    energy is absent, codecarbon's CPU + RAM estimate gets a column (`cost_cells`).
    """
    table = pd.DataFrame(
        {
            "Configuration": [
                label + (mark if weights == "random" else "") + caveats.marks(keys)
                for label, weights, keys in zip(
                    numbers["label"], numbers["weights"], numbers["caveats"], strict=True
                )
            ]
        }
    )
    for metric, header, fmt in COST_COLUMNS:
        if metric == "peak_vram_allocated_mib":
            header, cells = cost_cells.memory_column(numbers, header)
            table[header] = cells
        elif metric in cost_cells.NVML_METRICS:  # the header names the energy window it was metered over
            cells = cost_cells.metric_cells(numbers, metric, fmt)
            table[cost_cells.window_header(numbers, metric, header)] = cells
        else:
            table[header] = cost_cells.metric_cells(numbers, metric, fmt)
        if metric == "energy_j_per_image" and cost_cells.needs_idle_columns(numbers):
            table[cost_cells.net_header(numbers)] = cost_cells.net_cells(numbers)
            table[cost_cells.IDLE_HEADER] = cost_cells.idle_cells(numbers)
        if metric == "energy_j_per_image" and _any_value(numbers, BEST_BATCH_METRICS[0]):
            table[BEST_BATCH_HEADER] = best_batch_cells(numbers)
        if metric == "energy_j_per_image" and cost_cells.needs_codecarbon_column(numbers):
            table[cost_cells.CODECARBON_HEADER] = cost_cells.codecarbon_cells(numbers)
    for metric, header, fmt in FIDELITY_COLUMNS:  # absent for unquantized runs: "n/a", never a number
        table[header] = fidelity_note.cells(numbers, metric, fmt, cost_cells.NOT_LOGGED)
    return table.reset_index(drop=True)


def best_batch_cells(numbers: pd.DataFrame) -> list[str]:
    """``"2.41 (batch 8)"``: least J/image over the cost pass's batch sizes and its batch; n/a without."""
    return [
        f"{fmt_number(j, '.2f')} (batch {int(b)})" if not is_missing(j) and not is_missing(b) else NA
        for j, b in zip(numbers[BEST_BATCH_METRICS[0]], numbers[BEST_BATCH_METRICS[1]], strict=True)
    ]


def _any_value(numbers: pd.DataFrame, column: str) -> bool:
    return column in numbers.columns and bool(numbers[column].notna().any())


def _quality_columns(numbers: pd.DataFrame, task: str) -> list[str]:
    # The numbers table already holds only the quality metrics some pretrained run logged.
    names = _task_metrics(task)
    return [m for m in names if m in numbers.columns]


def _task_metrics(task: str) -> tuple[str, ...]:
    return {
        "captioning": (*rs.CAPTION_METRICS, *rs.NOCAPS_METRICS),
        "pope": rs.POPE_METRICS,
        "docvqa": ("anls",),
        "chartqa": ("relaxed_accuracy", "relaxed_accuracy_human", "relaxed_accuracy_augmented"),
    }.get(task, rs.VQA_METRICS)


def write_tables(
    runs: pd.DataFrame,
    out_dir: Path,
    *,
    task: str,
    deltas: dict[str, DeltaEstimate | None],
    baseline_run_id: str | None,
    confidence: float = 0.95,
    cost_refused: str | None = None,
) -> Tables:
    """Write ``results.md``, ``results.csv``, ``results_quality.tex`` and ``results_cost.tex``.

    ``cost_refused``: the reason the costs may not be compared; then the cost section of results.md
    says so, and results_cost.tex is not written.
    """
    numbers = numbers_table(runs, task, deltas, baseline_run_id, with_cost=cost_refused is None)
    quality = quality_table(numbers, task, confidence=confidence)
    any_random = bool((numbers["weights"] == "random").any())
    method = _method(numbers, deltas, confidence)
    pretrained_keys = numbers.loc[numbers["weights"] != "random", "caveats"].tolist()
    pretrained = numbers[numbers["weights"] != "random"]
    quality_legend = [*caveats.legend(pretrained_keys), *quality_cells.legend(pretrained)]
    warnings = batch_invariance.warnings(numbers, task)
    invariance_lines = [batch_invariance.legend(), *warnings] if batch_invariance.shown(pretrained) else []
    quality_legend += invariance_lines
    power_line = _power_note(numbers, deltas, task)
    quality_legend += [power_line] if power_line else []
    if cost_refused is None:
        cost = cost_table(numbers)
        with_codecarbon = cost_cells.CODECARBON_HEADER in cost.columns
        with_idle = cost_cells.IDLE_HEADER in cost.columns
        cost_legend = [
            *([f"{RANDOM_MARK_MD} {RANDOM_NOTE}."] if any_random else []),
            *caveats.legend(numbers["caveats"].tolist()),
            *cost_cells.legend(numbers, with_codecarbon, with_idle),
            *fidelity_note.legend(numbers),
        ]
    else:
        cost = pd.DataFrame({"Configuration": []})
        cost_legend = []

    paths = [out_dir / "results.md", out_dir / "results.csv", out_dir / "results_quality.tex"]
    md = ["# Results", "", "## Quality", "", markdown_table(quality), method + ".", ""]
    md += [part for line in quality_legend for part in (line, "")]  # one paragraph per legend line
    md += ["## Cost", ""]
    if cost_refused is None:
        md += [markdown_table(cost), *(part for line in cost_legend for part in (line, ""))]
    else:
        md += ["Not tabulated, " + cost_refused.replace("\n", "\n    "), ""]
    paths[0].write_text("\n".join(md), encoding="utf-8")
    numbers.to_csv(paths[1], index=False, na_rep=NA, float_format="%.10g")
    paths[2].write_text(_quality_tex(quality, method, pretrained, invariance_lines), encoding="utf-8")
    if cost_refused is None:
        paths.append(out_dir / "results_cost.tex")
        paths[3].write_text(_cost_tex(numbers, any_random), encoding="utf-8")
    return Tables(
        quality=quality,
        cost=cost,
        numbers=numbers,
        paths=tuple(paths),
        quality_legend=tuple(quality_legend),
        cost_legend=tuple(cost_legend),
        cost_refused=cost_refused,
        warnings=tuple(warnings),
        power=power_line,
    )


def _method(numbers: pd.DataFrame, deltas: dict[str, DeltaEstimate | None], confidence: float) -> str:
    """The sentence under the quality table that says what Δ and its interval are."""
    if not numbers["baseline"].any():
        return "No pretrained-weight run: no quality results (random weights measure cost only)"
    baseline_label = numbers.loc[numbers["baseline"], "label"].iat[0]
    estimate = next((d for d in deltas.values() if d), None)
    return (
        f"Δ = configuration minus baseline ({baseline_label}), mean over paired samples; interval: "
        f"{confidence:.0%} percentile paired bootstrap over images (every sample of a drawn image "
        "together)"
        + (
            f", {estimate.n_images} images, {estimate.n_resamples} resamples, seed {estimate.seed}"
            if estimate
            else ""
        )
    )


def _estimate_part(estimate: DeltaEstimate | None, part: str) -> float:
    value = getattr(estimate, part, None) if estimate else None
    return float("nan") if value is None else float(value)


def _power_note(numbers: pd.DataFrame, deltas: dict[str, DeltaEstimate | None], task: str) -> str | None:
    """The power line under the quality table (`power.power_note`), for the non-baseline pretrained runs."""
    others = numbers[(numbers["weights"] != "random") & ~numbers["baseline"]]
    powers = []
    for label, rid in zip(others["label"], others["run_id"], strict=True):
        d = deltas.get(rid)
        found = d and power.power_of(label, d.n_samples, d.n_images, d.standard_error)
        if found:
            powers.append(found)
    return power.power_note(powers, QUALITY_HEADERS[rs.PRIMARY_QUALITY_METRIC[task]])


def _quality_tex(
    quality: pd.DataFrame, method: str, pretrained: pd.DataFrame, notes: list[str]
) -> str:
    table = quality.copy()
    caveat_keys = pretrained["caveats"].tolist()
    # Labels are escaped here so the caveat marks, already LaTeX, can be appended raw.
    table["Configuration"] = [
        latex_escape(label) + caveats.marks(keys, tex=True)
        for label, keys in zip(pretrained["label"], caveat_keys, strict=True)
    ]
    # The primary metric, its Δ and the batch-1 agreement first; the other metrics in parts after it.
    main = {table.columns[1], *(c for c in table.columns if c.startswith("Δ")), batch_invariance.HEADER}
    parts = table_parts.split_columns(table, lambda c: "main" if c in main else "more")
    return _split_tex(
        table,
        parts,
        caption=latex_escape(f"Quality per precision configuration. {method}."),
        label="tab:quality",
        continued="Quality per precision configuration, further metrics",
        footnotes=[*_tex_legend(caveat_keys), *map(latex_escape, notes)],
    ).replace("Δ", r"$\Delta$")


def _cost_tex(numbers: pd.DataFrame, any_random: bool) -> str:
    table = cost_table(numbers, mark="")
    # Labels are escaped here so the dagger and caveat marks, already LaTeX, can be appended raw.
    table["Configuration"] = [
        latex_escape(label) + (RANDOM_MARK_TEX if weights == "random" else "") + caveats.marks(keys, tex=True)
        for label, weights, keys in zip(numbers["label"], numbers["weights"], numbers["caveats"], strict=True)
    ]
    footnotes = [f"{RANDOM_MARK_TEX} {latex_escape(RANDOM_NOTE)}."] if any_random else []
    footnotes += _tex_legend(numbers["caveats"].tolist())
    with_codecarbon = cost_cells.CODECARBON_HEADER in table.columns
    with_idle = cost_cells.IDLE_HEADER in table.columns
    footnotes += [latex_escape(line) for line in cost_cells.legend(numbers, with_codecarbon, with_idle)]
    footnotes += [latex_escape(line) for line in fidelity_note.legend(numbers)]
    return _split_tex(
        table,
        table_parts.split_columns(table, table_parts.cost_topic),
        caption="Cost per precision configuration: {topic} (n/a: not measured).",
        label="tab:cost",
        continued="Cost per precision configuration: {topic}",
        footnotes=footnotes,
    )


def _split_tex(
    table: pd.DataFrame,
    parts: list[tuple[str, list[str]]],
    *,
    caption: str,
    label: str,
    continued: str,
    footnotes: list[str],
) -> str:
    """One booktabs float per part (`table_parts`): the first is ``label`` and holds the legend,
    the others (``label-2``, ...) point to it."""
    floats = []
    for i, (topic, columns) in enumerate(parts):
        text = (caption if i == 0 else continued).replace("{topic}", latex_escape(topic))
        if i:
            text += rf"; marks and n/a as in Table~\ref{{{label}}}."
        floats.append(
            latex_table(
                table[columns],
                caption=text,
                label=label if i == 0 else f"{label}-{i + 1}",
                footnotes=footnotes if i == 0 else (),
                raw_columns=("Configuration",),
                stack_headers=True,
            )
        )
    return "\n".join(floats)


def _tex_legend(keys: list[str]) -> list[str]:
    return [
        f"{c.mark_tex} {latex_escape(c.legend)}."
        for c in caveats.CAVEATS
        if any(c in caveats.parse_keys(cell) for cell in keys)
    ]


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    return runs[name] if name in runs.columns else pd.Series(float("nan"), index=runs.index)
