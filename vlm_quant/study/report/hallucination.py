"""The report's hallucination and safety sections: CHAIR / POPE F1 with paired Δ, a figure, flag counts.

Hallucination metrics are ratios of sums over samples (CHAIR_i = hallucinated mentions / mentions;
F1 = 2TP / (2TP + FP + FN); CHAIR_s = hallucinated captions / captions), not means of per-sample scores,
so their Δ against the baseline is bootstrapped as a ratio: the IMAGES of the samples both runs scored
are resampled (every row of a drawn image together, the same draw for both runs; see `bootstrap`) and
each resample's Δ is ratio(config) - ratio(baseline). The Δ's interval therefore stays inside [-1, 1].
A resample where either ratio has nothing to divide by is dropped; a Δ whose full-sample ratio is
undefined is absent, and so is the Δ of a metric that either run did not log (POPE's F1
without any "yes" answer, which the 2TP / (2TP + FP + FN) terms would read as 0).

The safety table lists, per configuration, the output screen's counts (`vlm_quant.tasks.safety`) and a
few flagged predictions with their reasons, from each run's ``safety/flagged.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vlm_quant.study.report import quality_cells
from vlm_quant.study.report.bootstrap import (
    DeltaEstimate,
    cluster_bootstrap,
    cluster_codes,
    image_key,
    percentile_interval,
)
from vlm_quant.study.report.plots import PlotOutcome
from vlm_quant.study.report.render import NA, fmt_interval, fmt_number, latex_table, markdown_table
from vlm_quant.tasks.safety import ARTIFACT_FLAGGED
from vlm_quant.tracking import run_schema as rs

EXAMPLES_PER_RUN = 2
HEADERS = {"chair_i": "CHAIR_i", "chair_s": "CHAIR_s", "object_recall": "Object recall"}
HEADERS.update({f"pope_{s}_f1": f"POPE F1 {s}" for s in rs.POPE_SPLITS})

# A row's (numerator, denominator) contribution to a ratio metric; None: the row does not count.
RowTerms = Callable[[dict[str, Any]], tuple[float, float] | None]


def _chair_i(row: dict[str, Any]) -> tuple[float, float] | None:
    return (row["chair_i_hallucinated"], row["chair_i_mentions"]) if row.get("chair_annotated") else None


def _chair_s(row: dict[str, Any]) -> tuple[float, float] | None:
    return (row["chair_s"], 1.0) if row.get("chair_annotated") else None


def _pope_f1(split: str) -> RowTerms:
    def terms(row: dict[str, Any]) -> tuple[float, float] | None:
        if row.get("pope_split") != split:
            return None
        yes_label, yes_answer = row["label"] == "yes", row.get("parsed_answer") == "yes"
        tp = float(yes_label and yes_answer)
        return 2 * tp, 2 * tp + float(yes_answer and not yes_label) + float(yes_label and not yes_answer)

    return terms


def ratio_terms(task: str) -> dict[str, RowTerms]:
    """The task's hallucination metrics and how each row contributes to them."""
    if task == "captioning":
        return {"chair_i": _chair_i, "chair_s": _chair_s}
    if task == "pope":
        return {f"pope_{s}_f1": _pope_f1(s) for s in rs.POPE_SPLITS}
    return {}


def paired_ratio_bootstrap(
    base: np.ndarray,
    conf: np.ndarray,
    images: Sequence[Any] | None = None,
    *,
    n_resamples: int,
    seed: int,
    confidence: float,
) -> DeltaEstimate | None:
    """Δ = ratio(conf) - ratio(base), ratio = sum(column 0) / sum(column 1), over paired rows (n x 2).

    ``images``: each row's image; the bootstrap draws images, every row of a drawn image together
    (`bootstrap.cluster_bootstrap`; None: each row its own image), the same draw for both runs (the
    pairing). None when either full-sample ratio is undefined.
    """
    base, conf = np.asarray(base, float), np.asarray(conf, float)
    if base.size == 0 or base[:, 1].sum() == 0 or conf[:, 1].sum() == 0:
        return None
    delta = conf[:, 0].sum() / conf[:, 1].sum() - base[:, 0].sum() / base[:, 1].sum()
    codes = cluster_codes(np.arange(len(base)) if images is None else images)
    diffs = cluster_bootstrap(
        np.hstack([base, conf]), codes, lambda s: s[:, 2] / s[:, 3] - s[:, 0] / s[:, 1],
        n_resamples=n_resamples, seed=seed,
    )
    if diffs.size == 0:
        return None
    low, high = percentile_interval(diffs, confidence)
    return DeltaEstimate(
        float(delta), low, high, len(base), n_resamples, seed, confidence, n_images=int(codes.max()) + 1
    )


def paired_terms(
    base_rows: list[dict], rows: list[dict], terms: RowTerms
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n x 2) term arrays of both runs over the sample ids both runs count, in sample-id order, and each
    row's image (`bootstrap.image_key`, from the baseline's row)."""
    def by_id(rows_: list[dict]) -> dict[str, tuple[float, float]]:
        return {str(r["sample_id"]): t for r in rows_ if (t := terms(r)) is not None}

    base, conf = by_id(base_rows), by_id(rows)
    keys = sorted(set(base) & set(conf))
    images = {str(r["sample_id"]): image_key(r) for r in base_rows}

    def stack(terms_by_id: dict[str, tuple[float, float]]) -> np.ndarray:
        return np.array([terms_by_id[k] for k in keys], float).reshape(-1, 2)

    return stack(base), stack(conf), np.array([images[k] for k in keys], dtype=str)


@dataclass(frozen=True)
class HallucinationReport:
    """What the hallucination and safety sections hold and wrote."""

    numbers: pd.DataFrame  # one row per pretrained run: metrics, Δ, low, high (full precision)
    table: pd.DataFrame  # printed
    safety: pd.DataFrame  # printed: every run
    plot: PlotOutcome
    paths: tuple[Path, ...]
    deltas: dict[str, dict[str, DeltaEstimate | None]] = field(default_factory=dict)  # metric -> run -> Δ
    notes: tuple[str, ...] = ()

    def sections(self) -> list[tuple[str, pd.DataFrame]]:
        """(title, table) for the HTML page."""
        out = [("Hallucination", self.table)] if not self.table.empty else []
        return out + [("Safety screen", self.safety)]


def _metric(runs: pd.DataFrame, name: str) -> pd.Series:
    column = f"metrics.{name}"
    return runs[column].astype(float) if column in runs.columns else pd.Series(np.nan, index=runs.index)


def hallucination_numbers(
    runs: pd.DataFrame, predictions: dict[str, list[dict] | None], baseline_id: str | None, task: str,
    *, n_resamples: int, seed: int, confidence: float,
) -> tuple[pd.DataFrame, dict[str, dict[str, DeltaEstimate | None]]]:
    """Per pretrained run: the logged hallucination metrics and their paired Δ against the baseline."""
    pretrained = runs[runs["weights"] != "random"].reset_index(drop=True)
    out = pd.DataFrame({"label": pretrained["label"], "run_id": pretrained["run_id"]})
    out["baseline"] = out["run_id"] == baseline_id
    out[quality_cells.REASON_COLUMN] = quality_cells.reasons(pretrained)  # score=later, not scored yet
    deltas: dict[str, dict[str, DeltaEstimate | None]] = {}
    base_rows = predictions.get(baseline_id) if baseline_id else None
    extra = ("object_recall",) if task == "captioning" else ()
    for metric in (*ratio_terms(task), *extra):
        out[metric] = _metric(pretrained, metric).to_numpy()
    for metric, terms in ratio_terms(task).items():
        deltas[metric] = {}
        logged = dict(zip(runs["run_id"], _metric(runs, metric), strict=True))
        for rid in out["run_id"]:
            rows = predictions.get(rid)
            estimate = None
            # a metric the run (or the baseline) could not define, e.g. F1 without a "yes", has no Δ either
            defined = not (np.isnan(logged.get(rid, np.nan)) or np.isnan(logged.get(baseline_id, np.nan)))
            if base_rows is not None and rows is not None and defined:
                base, conf, images = paired_terms(base_rows, rows, terms)
                estimate = paired_ratio_bootstrap(
                    base, conf, images, n_resamples=n_resamples, seed=seed, confidence=confidence
                )
            deltas[metric][rid] = estimate
        for part in ("delta", "low", "high"):
            out[f"{metric}_{part}"] = [getattr(deltas[metric][r], part, np.nan) for r in out["run_id"]]
    return out, deltas


def hallucination_table(numbers: pd.DataFrame, task: str, confidence: float) -> pd.DataFrame:
    table = pd.DataFrame({"Configuration": numbers["label"]})
    late = quality_cells.deferred_rows(numbers)
    extra = ("object_recall",) if task == "captioning" else ()
    for metric in (*ratio_terms(task), *extra):
        cells = [fmt_number(v, ".3f") for v in numbers[metric]]
        table[HEADERS[metric]] = quality_cells.or_deferred(cells, late)
        if metric in ratio_terms(task):
            table[f"Δ{HEADERS[metric]} [{confidence:.0%} CI]"] = quality_cells.or_deferred([
                "baseline" if base else fmt_interval(d, lo, hi, ".3f")
                for base, d, lo, hi in zip(
                    numbers["baseline"], numbers[f"{metric}_delta"], numbers[f"{metric}_low"],
                    numbers[f"{metric}_high"], strict=True,
                )
            ], late)
    return table


def flagged_rows(run_set: Any, run_id: str) -> list[dict[str, Any]] | None:
    """The run's flagged predictions (MLflow table JSON -> rows); None when the run logged no screen."""
    text = run_set._artifact_text(run_id, ARTIFACT_FLAGGED)  # the RunSet's cached artifact download
    if text is None:
        return None
    table = json.loads(text)
    return [dict(zip(table["columns"], row, strict=True)) for row in table.get("data", [])]


def safety_table(runs: pd.DataFrame, flagged: dict[str, list[dict] | None]) -> pd.DataFrame:
    """Per configuration: screened, flagged (n, rate), personal data and offensive counts, examples."""
    def examples(rows: list[dict] | None) -> str:
        if rows is None:
            return NA
        return "; ".join(f'"{r["prediction"]}" ({r["reason"]})' for r in rows[:EXAMPLES_PER_RUN]) or "none"

    late = quality_cells.deferred_rows(runs)  # the screen reads the scored rows: deferred with them

    def cells(metric: str, fmt: str) -> list[str]:
        return quality_cells.or_deferred([fmt_number(v, fmt) for v in _metric(runs, metric)], late)

    return pd.DataFrame({
        "Configuration": [
            f"{label}†" if weights == "random" else label
            for label, weights in zip(runs["label"], runs["weights"], strict=True)
        ],
        "Screened": [fmt_number(v, ".0f") for v in _metric(runs, "n_samples_evaluated")],
        "Flagged": cells("safety_flagged_n", ".0f"),
        "Rate": cells("safety_flagged_rate", ".3f"),
        "Personal data": cells("safety_flagged_pii_n", ".0f"),
        "Offensive": cells("safety_flagged_offensive_n", ".0f"),
        "Examples": quality_cells.or_deferred([examples(flagged.get(rid)) for rid in runs["run_id"]], late),
    })


def hallucination_plot(numbers: pd.DataFrame, runs: pd.DataFrame, task: str, out_dir: Path) -> PlotOutcome:
    """Hallucination (CHAIR_i, or POPE F1 per split) against the task's primary quality metric."""
    name = "hallucination_vs_quality"
    primary = rs.PRIMARY_QUALITY_METRIC[task]
    series = ["chair_i"] if task == "captioning" else [f"pope_{s}_f1" for s in rs.POPE_SPLITS]
    if task not in ("captioning", "pope") or numbers.empty:
        return PlotOutcome(name, skipped="no pretrained-weight run with hallucination metrics")
    quality = _metric(runs.set_index("run_id").loc[numbers["run_id"]].reset_index(), primary).to_numpy()
    data = {"quality_metric": primary, "labels": list(numbers["label"]), "quality": quality}
    fig = Figure(figsize=(4.2, 3.2), layout="constrained")
    ax = fig.add_subplot()
    drawn = False
    for metric in series:
        values = numbers[metric].to_numpy(float)
        data[metric] = values
        ok = np.isfinite(values) & np.isfinite(quality)
        if ok.any():
            ax.scatter(quality[ok], values[ok], label=HEADERS[metric], zorder=2)
            drawn = True
    if not drawn:
        return PlotOutcome(name, skipped=f"no run has both {primary} and {', '.join(series)}")
    for label, x, y in zip(numbers["label"], quality, numbers[series[0]], strict=True):
        if np.isfinite(x) and np.isfinite(y):
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(primary)
    ax.set_ylabel("CHAIR_i (lower is better)" if task == "captioning" else "POPE F1 (higher is better)")
    ax.margins(x=0.15, y=0.1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out_dir.mkdir(parents=True, exist_ok=True)
    png, pdf = out_dir / f"{name}.png", out_dir / f"{name}.pdf"
    fig.savefig(png, dpi=150)
    fig.savefig(pdf, metadata={"CreationDate": None})
    return PlotOutcome(name, (png, pdf), data, figure=fig)


def write_hallucination(
    run_set: Any, runs: pd.DataFrame, predictions: dict[str, list[dict] | None], baseline_id: str | None,
    task: str, out_dir: Path, figures_dir: Path, *, n_resamples: int, seed: int, confidence: float,
) -> HallucinationReport:
    """Write ``results_hallucination.{md,csv,tex}`` and ``results_safety.{md,tex}``; draw the figure."""
    numbers, deltas = hallucination_numbers(
        runs, predictions, baseline_id, task, n_resamples=n_resamples, seed=seed, confidence=confidence
    )
    table = hallucination_table(numbers, task, confidence)
    flagged = {rid: flagged_rows(run_set, rid) for rid in runs["run_id"]}
    safety = safety_table(runs, flagged)
    plot = hallucination_plot(numbers, runs, task, figures_dir)
    notes = [f"figure {plot.name} skipped: {plot.skipped}"] if plot.skipped else []
    method = (
        f"Δ = configuration minus baseline; {confidence:.0%} percentile paired bootstrap of the ratio "
        f"over the images both runs scored (all rows of a drawn image together), {n_resamples} resamples, "
        f"seed {seed}"
    )
    names = ("hallucination.md", "hallucination.csv", "hallucination.tex", "safety.md", "safety.tex")
    paths = [out_dir / f"results_{name}" for name in names]
    paths[0].write_text(
        "# Hallucination\n\n" + (markdown_table(table) + method + ".\n" if not table.empty else "None.\n")
        + "".join(f"\n{line}\n" for line in quality_cells.legend(numbers)),
        encoding="utf-8",
    )
    numbers.to_csv(paths[1], index=False, na_rep=NA, float_format="%.10g")
    paths[2].write_text(
        latex_table(table, caption=f"Object hallucination per configuration. {method}.", label="tab:halluc")
        .replace("Δ", r"$\Delta$"),
        encoding="utf-8",
    )
    paths[3].write_text(
        "# Output safety screen\n\n" + markdown_table(safety)
        + "\nCounts of predictions the screen flagged (personal-data patterns, offensive word list); "
        "a flag is a pointer for a human reader, not a verdict. † random weights.\n",
        encoding="utf-8",
    )
    paths[4].write_text(
        latex_table(safety.drop(columns=["Examples"]), caption="Output safety screen: flagged predictions.",
                    label="tab:safety"),
        encoding="utf-8",
    )
    return HallucinationReport(numbers, table, safety, plot, tuple(paths), deltas, tuple(notes))
