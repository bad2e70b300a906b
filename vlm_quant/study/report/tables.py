"""The paper's results tables: quality with Δ vs baseline, and cost, as Markdown, CSV and LaTeX.

Quality rows are pretrained-weight runs only: a random-weight run measures the speed and memory of
the architecture, its captions are noise. Random-weight runs appear in the cost table, marked with a
dagger and a footnote. A metric a run did not log prints as ``n/a``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vlm_quant.study.report.bootstrap import DeltaEstimate
from vlm_quant.study.report.render import (
    NA,
    fmt_interval,
    fmt_number,
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
    "vqa_accuracy_yes_no": "VQA yes/no",
    "vqa_accuracy_number": "VQA number",
    "vqa_accuracy_other": "VQA other",
}

# The cost columns of the paper table: (metric, header with unit, format spec).
COST_COLUMNS = (
    ("ttft_ms_p50", "TTFT p50 (ms)", ".1f"),
    ("decode_ms_per_token_p50", "Decode p50 (ms/token)", ".2f"),
    ("latency_ms_p50", "Latency p50 (ms/image)", ".1f"),
    ("throughput_images_per_s", "Throughput (images/s)", ".2f"),
    ("throughput_tokens_per_s", "Throughput (tokens/s)", ".1f"),
    ("peak_vram_allocated_mib", "Peak VRAM (MiB)", ".0f"),
    ("size_on_disk_mib", "Size on disk (MiB)", ".0f"),
    ("energy_j_per_image", "Energy (J/image)", ".2f"),
    ("co2e_kg", "CO2e (kg)", ".2e"),
)
# Shown in the cost table (not plotted): how far each quantized run moved from the unquantized model.
FIDELITY_COLUMNS = (
    ("fidelity_vision_cosine", "Fidelity vision cos", ".4f"),
    ("fidelity_logits_kl", "Fidelity KL (nats)", ".3g"),
    ("fidelity_top1_agreement", "Fidelity top-1", ".2f"),
)


@dataclass(frozen=True)
class Tables:
    """The rendered tables (string cells, as printed) and the files written."""

    quality: pd.DataFrame
    cost: pd.DataFrame
    numbers: pd.DataFrame  # full-precision values, one row per run (results.csv)
    paths: tuple[Path, ...]


def quality_metrics(runs: pd.DataFrame, task: str) -> list[str]:
    """The task's quality metrics that at least one pretrained run logged (primary metric always)."""
    names = rs.CAPTION_METRICS if task == "captioning" else rs.VQA_METRICS
    pretrained = runs[runs["weights"] != "random"]
    primary = rs.PRIMARY_QUALITY_METRIC[task]
    return [
        m
        for m in names
        if m == primary or (f"metrics.{m}" in pretrained and pretrained[f"metrics.{m}"].notna().any())
    ]


def numbers_table(
    runs: pd.DataFrame, task: str, deltas: dict[str, DeltaEstimate | None], baseline_run_id: str | None
) -> pd.DataFrame:
    """Full-precision results, one row per run; quality cells of random-weight runs are left empty."""
    random = runs["weights"] == "random"
    out = pd.DataFrame(
        {
            "label": runs["label"],
            "run_id": runs["run_id"],
            "run_name": runs["run_name"],
            "weights": runs["weights"],
            "baseline": runs["run_id"] == baseline_run_id,
        }
    )
    for param in (
        "model",
        "quant",
        "precision_vision",
        "precision_projector",
        "precision_language",
        "precision_lm_head",
    ):
        out[param] = _column(runs, f"params.{param}")
    for metric in quality_metrics(runs, task):
        out[metric] = _column(runs, f"metrics.{metric}").where(~random)
    primary = rs.PRIMARY_QUALITY_METRIC[task]
    for part in ("delta", "low", "high"):
        out[f"{primary}_delta_{part}" if part != "delta" else f"{primary}_delta"] = [
            getattr(deltas.get(rid), part) if deltas.get(rid) else float("nan") for rid in runs["run_id"]
        ]
    out["n_paired_samples"] = [
        deltas[rid].n_samples if deltas.get(rid) else float("nan") for rid in runs["run_id"]
    ]
    for metric in (*rs.COST_METRICS, *rs.FIDELITY_METRICS):
        out[metric] = _column(runs, f"metrics.{metric}")
    return out.reset_index(drop=True)


def quality_table(numbers: pd.DataFrame, task: str, *, confidence: float = 0.95) -> pd.DataFrame:
    """Printed quality table: pretrained runs, each metric, and Δ primary [low, high] vs baseline."""
    rows = numbers[numbers["weights"] != "random"]
    primary = rs.PRIMARY_QUALITY_METRIC[task]
    table = pd.DataFrame({"Configuration": rows["label"]})
    for metric in _quality_columns(numbers, task):
        table[QUALITY_HEADERS[metric]] = [fmt_number(v, ".3f") for v in rows[metric]]
    header = f"Δ{QUALITY_HEADERS[primary]} [{confidence:.0%} CI]"
    table[header] = [
        "baseline" if is_base else fmt_interval(d, lo, hi, ".3f")
        for is_base, d, lo, hi in zip(
            rows["baseline"],
            rows[f"{primary}_delta"],
            rows[f"{primary}_delta_low"],
            rows[f"{primary}_delta_high"],
            strict=True,
        )
    ]
    return table.reset_index(drop=True)


def cost_table(numbers: pd.DataFrame, mark: str = RANDOM_MARK_MD) -> pd.DataFrame:
    """Printed cost table: every run, random-weight ones suffixed with ``mark``."""
    table = pd.DataFrame(
        {
            "Configuration": [
                f"{label}{mark}" if weights == "random" else label
                for label, weights in zip(numbers["label"], numbers["weights"], strict=True)
            ]
        }
    )
    for metric, header, fmt in (*COST_COLUMNS, *FIDELITY_COLUMNS):
        table[header] = [fmt_number(v, fmt) for v in numbers[metric]]
    return table.reset_index(drop=True)


def _quality_columns(numbers: pd.DataFrame, task: str) -> list[str]:
    # The numbers table already holds only the quality metrics some pretrained run logged.
    names = rs.CAPTION_METRICS if task == "captioning" else rs.VQA_METRICS
    return [m for m in names if m in numbers.columns]


def write_tables(
    runs: pd.DataFrame,
    out_dir: Path,
    *,
    task: str,
    deltas: dict[str, DeltaEstimate | None],
    baseline_run_id: str | None,
    confidence: float = 0.95,
) -> Tables:
    """Write ``results.md``, ``results.csv``, ``results_quality.tex`` and ``results_cost.tex``."""
    numbers = numbers_table(runs, task, deltas, baseline_run_id)
    quality = quality_table(numbers, task, confidence=confidence)
    cost = cost_table(numbers)
    any_random = bool((numbers["weights"] == "random").any())
    method = _method(numbers, deltas, confidence)

    paths = (
        out_dir / "results.md",
        out_dir / "results.csv",
        out_dir / "results_quality.tex",
        out_dir / "results_cost.tex",
    )
    md = [
        "# Results",
        "",
        "## Quality",
        "",
        markdown_table(quality),
        method + ".",
        "",
        "## Cost",
        "",
        markdown_table(cost),
    ]
    if any_random:
        md.append(f"{RANDOM_MARK_MD} {RANDOM_NOTE}.")
    md.append(f"\n`{NA}`: metric not measured for that run (e.g. energy without NVML).\n")
    paths[0].write_text("\n".join(md), encoding="utf-8")
    numbers.to_csv(paths[1], index=False, na_rep=NA, float_format="%.10g")
    paths[2].write_text(_quality_tex(quality, method), encoding="utf-8")
    paths[3].write_text(_cost_tex(numbers, any_random), encoding="utf-8")
    return Tables(quality=quality, cost=cost, numbers=numbers, paths=paths)


def _method(numbers: pd.DataFrame, deltas: dict[str, DeltaEstimate | None], confidence: float) -> str:
    """The sentence under the quality table that says what Δ and its interval are."""
    if not numbers["baseline"].any():
        return "No pretrained-weight run: no quality results (random weights measure cost only)"
    baseline_label = numbers.loc[numbers["baseline"], "label"].iat[0]
    estimate = next((d for d in deltas.values() if d), None)
    return (
        f"Δ = configuration minus baseline ({baseline_label}), mean over paired samples; interval: "
        f"{confidence:.0%} percentile paired bootstrap"
        + (f", {estimate.n_resamples} resamples, seed {estimate.seed}" if estimate else "")
    )


def _quality_tex(quality: pd.DataFrame, method: str) -> str:
    text = latex_table(
        quality, caption=latex_escape(f"Quality per precision configuration. {method}."), label="tab:quality"
    )
    return text.replace("Δ", r"$\Delta$")


def _cost_tex(numbers: pd.DataFrame, any_random: bool) -> str:
    table = cost_table(numbers, mark="")
    # Labels are escaped here so the dagger, already LaTeX, can be appended raw.
    table["Configuration"] = [
        latex_escape(label) + (RANDOM_MARK_TEX if weights == "random" else "")
        for label, weights in zip(numbers["label"], numbers["weights"], strict=True)
    ]
    return latex_table(
        table,
        caption="Cost per precision configuration (n/a: not measured).",
        label="tab:cost",
        footnotes=[f"{RANDOM_MARK_TEX} {latex_escape(RANDOM_NOTE)}."] if any_random else (),
        raw_columns=("Configuration",),
    )


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    return runs[name] if name in runs.columns else pd.Series(float("nan"), index=runs.index)
