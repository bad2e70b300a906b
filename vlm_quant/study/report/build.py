"""``compare``: load the runs, check they are comparable, write the report folder.

``build_report`` is the pure part: from a :class:`RunSet` (the runs frame plus artifact access) to
a folder of tables, figures, qualitative examples, appendix and one HTML page. It passes the runs
through the comparability gate (`comparability.gate`) before writing anything, so ``compare``,
``paper``, ``slides`` and any other reader of a run set refuse the same runs with the same message.
It reads the tracking store only through the RunSet and never the machine's own environment, except
to look for the example images under the runs' ``data_dir``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vlm_quant.errors import UserError
from vlm_quant.study.report import caveats, comparability
from vlm_quant.study.report.appendix import build_appendix, write_appendix
from vlm_quant.study.report.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    RESAMPLED_UNIT,
    DeltaEstimate,
    paired_bootstrap,
    paired_scores,
    select_baseline,
)
from vlm_quant.study.report.hallucination import HallucinationReport, write_hallucination
from vlm_quant.study.report.html import HtmlInputs, write_html
from vlm_quant.study.report.plots import PlotOutcome, make_plots
from vlm_quant.study.report.qualitative import DEFAULT_EXAMPLES, Qualitative, write_qualitative
from vlm_quant.study.report.query import RunSet, load_runs
from vlm_quant.study.report.sustainability import SustainabilityReport, write_sustainability
from vlm_quant.study.report.tables import Tables, write_tables
from vlm_quant.tracking import run_schema as rs

CONFIDENCE = 0.95


@dataclass(frozen=True)
class ReportResult:
    """What ``build_report`` wrote and the numbers behind it."""

    out_dir: Path
    paths: tuple[Path, ...]  # every file written, relative order: tables, figures, examples, appendix, html
    run_ids: tuple[str, ...]  # in report order (baseline first, random-weight runs last)
    baseline_run_id: str | None  # None when every run has random weights (cost-only report)
    task: str
    deltas: dict[str, DeltaEstimate | None]  # run id -> Δ of the primary metric (pretrained runs only)
    tables: Tables
    plots: tuple[PlotOutcome, ...]
    qualitative: Qualitative | None
    notes: tuple[str, ...]  # what could not be shown, and why
    hallucination: HallucinationReport | None = None  # CHAIR / POPE F1 with Δ, the safety table
    warnings: tuple[str, ...] = ()  # printed by `compare`: runs whose batch-1 agreement is low
    power: str | None = None  # printed by `compare`: SE and minimum detectable Δ of the primary metric
    sustainability: SustainabilityReport | None = None  # None when the costs may not be compared


def compare(
    out_dir: Path,
    *,
    experiment: str | None = None,
    parent_run: str | None = None,
    run_ids: Sequence[str] | None = None,
    tracking_uri: str | None = None,
    baseline: str | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    pareto_include_caveats: bool = False,
) -> ReportResult:
    """Load the selected FINISHED evaluate runs, refuse incomparable ones, and build the report.

    Runs that differ in a quality param (`comparability.QUALITY_PARAMS`) are refused outright,
    nothing written. Runs that differ only in a cost param (`comparability.COST_PARAMS`: device, GPU,
    dtype, engine_resolved, cost pass settings, PUE, ...) get the report without its cost table and
    figures, which say why.
    ``pareto_include_caveats``: let runs with a caveat (resumed, OOM back-off, engine fallback)
    onto the Pareto fronts.
    """
    run_set = load_runs(
        experiment=experiment, parent_run=parent_run, run_ids=run_ids, tracking_uri=tracking_uri
    )
    return build_report(
        run_set,
        Path(out_dir),
        baseline=baseline,
        n_resamples=n_resamples,
        seed=seed,
        pareto_include_caveats=pareto_include_caveats,
    )


def build_report(
    run_set: RunSet,
    out_dir: Path,
    *,
    baseline: str | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    n_examples: int = DEFAULT_EXAMPLES,
    pareto_include_caveats: bool = False,
) -> ReportResult:
    """Refuse incomparable runs (`comparability.gate`: ``UserError``, nothing written), then write the report.

    ``baseline``: run id, run name, label or realized precision of the Δ reference; default the
    run realized in fp16, else bf16, else fp32 (see ``select_baseline``).
    ``n_resamples``/``seed``: the paired bootstrap of the primary metric's Δ.
    Runs whose costs may not be compared (the gate's cost refusal) get no cost table or figures; the
    refusal is in ``tables.cost_refused`` and the notes.
    """
    cost_refused = comparability.gate(run_set.runs)
    task = _task(run_set.runs)
    notes: list[str] = []
    # Random-weight runs alone (a CPU smoke test) still make a cost report, with no quality results.
    has_quality = bool((run_set.runs["weights"] != "random").any())
    baseline_id = select_baseline(run_set.runs, baseline) if has_quality or baseline else None
    if baseline_id is None:
        notes.append("every run has random weights: cost tables and figures only, no quality results")
    # The baseline's compute dtype rides along: a run computed in another one carries a caveat.
    runs = caveats.with_baseline(_report_order(run_set.runs, baseline_id), baseline_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures_dir = out_dir / "figures"

    pretrained = runs[runs["weights"] != "random"]
    predictions = {rid: run_set.predictions(rid) for rid in pretrained["run_id"]}
    for rid, rows in predictions.items():
        if rows is None:
            notes.append(
                f"{_who(runs, rid)} logged no {rs.ARTIFACT_PREDICTIONS_JSONL}: no Δ interval, "
                "not in the qualitative examples"
            )
    deltas = _deltas(predictions, baseline_id, rs.PER_SAMPLE_SCORE[task], n_resamples, seed)

    if cost_refused is not None:
        notes.append(cost_refused.replace("\n", " "))
    tables = write_tables(
        runs,
        out_dir,
        task=task,
        deltas=deltas,
        baseline_run_id=baseline_id,
        confidence=CONFIDENCE,
        cost_refused=cost_refused,
    )
    notes += tables.warnings  # also under the quality table
    notes += [tables.power] if tables.power else []  # also under the quality table
    traces = (
        run_set.gpu_power_traces(runs)
        if cost_refused is None
        else {}
    )
    plots = make_plots(
        runs,
        rs.PRIMARY_QUALITY_METRIC[task],
        traces,
        figures_dir,
        include_caveats=pareto_include_caveats,
        cost_refused=cost_refused,
    )
    hallucination = write_hallucination(
        run_set, runs, predictions, baseline_id, task, out_dir, figures_dir,
        n_resamples=n_resamples, seed=seed, confidence=CONFIDENCE,
    )
    if cost_refused is None:  # otherwise the one note above says why every cost figure is missing
        notes += [f"figure {p.name} skipped: {p.skipped}" for p in plots if p.skipped]
    plots = [*plots, hallucination.plot]
    sustainability = None  # a cost refusal's note already says why no cost-derived number is shown
    if cost_refused is None:  # None too when no run logged a sustainability number
        sustainability = write_sustainability(run_set, runs, baseline_id, out_dir, figures_dir)
    if sustainability is not None:
        plots.append(sustainability.plot)
        notes += sustainability.notes
    if hallucination.plot.skipped:
        notes.append(f"figure {hallucination.plot.name} skipped: {hallucination.plot.skipped}")

    qualitative = _qualitative(runs, predictions, baseline_id, task, out_dir, figures_dir, n_examples, notes)
    environments = {rid: run_set.environment(rid) for rid in runs["run_id"]}
    appendix = build_appendix(runs, environments)
    appendix_paths = write_appendix(appendix, out_dir)

    notes_path = out_dir / "notes.md"
    notes_path.write_text(
        "# Report notes\n\n" + ("".join(f"- {n}\n" for n in notes) or "None.\n"), encoding="utf-8"
    )
    summary = _summary(run_set, runs, baseline_id, task, n_resamples, seed)
    html_path = write_html(
        HtmlInputs(
            title=f"vlm-quant report: {task}",
            summary=summary,
            tables=tables,
            plots=plots,
            qualitative=qualitative,
            appendix=appendix,
            notes=notes,
            sections=[*hallucination.sections(), *(sustainability.sections() if sustainability else [])],
        ),
        out_dir,
    )
    paths = (
        *tables.paths,
        *hallucination.paths,
        *(sustainability.paths if sustainability else ()),
        *(path for plot in plots for path in plot.paths),
        *(qualitative.paths if qualitative else ()),
        *appendix_paths,
        notes_path,
        html_path,
    )
    return ReportResult(
        out_dir,
        paths,
        tuple(runs["run_id"]),
        baseline_id,
        task,
        deltas,
        tables,
        tuple(plots),
        qualitative,
        tuple(notes),
        hallucination,
        tables.warnings,
        tables.power,
        sustainability,
    )


def _task(runs: pd.DataFrame) -> str:
    """The runs' one scoring key (`run_schema.scoring_key`: the task, or docvqa / chartqa for task=vqa)."""
    datasets = runs.get("params.dataset", pd.Series("", index=runs.index)).fillna("")
    tasks = {
        rs.scoring_key(task, dataset)
        for task, dataset in zip(runs.get("params.task", pd.Series(dtype=object)), datasets, strict=False)
        if isinstance(task, str)
    }
    if len(tasks) != 1 or next(iter(tasks)) not in rs.PRIMARY_QUALITY_METRIC:
        raise UserError(
            f"runs must share one task among {sorted(rs.PRIMARY_QUALITY_METRIC)}; "
            f"found {sorted(tasks) or 'none'}"
        )
    return tasks.pop()


def _report_order(runs: pd.DataFrame, baseline_id: str | None) -> pd.DataFrame:
    # Baseline first, then the other pretrained runs in the order they ran, random-weight runs last.
    key = [
        (rid != baseline_id, weights == "random", start)
        for rid, weights, start in zip(runs["run_id"], runs["weights"], runs["start_time"], strict=True)
    ]
    order = sorted(range(len(runs)), key=lambda i: key[i])
    return runs.iloc[order].reset_index(drop=True)


def _deltas(
    predictions: dict[str, list[dict] | None],
    baseline_id: str | None,
    score_key: str,
    n_resamples: int,
    seed: int,
) -> dict[str, DeltaEstimate | None]:
    base = predictions.get(baseline_id)
    deltas: dict[str, DeltaEstimate | None] = {}
    for rid, rows in predictions.items():
        if base is None or rows is None:
            deltas[rid] = None
            continue
        base_scores, scores, images = paired_scores(base, rows, score_key)
        deltas[rid] = paired_bootstrap(
            base_scores, scores, images, n_resamples=n_resamples, seed=seed, confidence=CONFIDENCE
        )
    return deltas


def _qualitative(
    runs: pd.DataFrame,
    predictions: dict[str, list[dict] | None],
    baseline_id: str | None,
    task: str,
    out_dir: Path,
    figures_dir: Path,
    n_examples: int,
    notes: list[str],
) -> Qualitative | None:
    by_label = {
        runs.loc[runs["run_id"] == rid, "label"].iat[0]: rows for rid, rows in predictions.items() if rows
    }
    if len(by_label) < 2:
        if predictions:  # with no pretrained run at all the cost-only note already says why
            notes.append("qualitative examples need predictions from at least two pretrained configurations")
        return None
    base_row = runs[runs["run_id"] == baseline_id]
    data_dir = base_row["params.data_dir"].iat[0] if "params.data_dir" in runs.columns else None
    qualitative = write_qualitative(
        by_label,
        rs.PER_SAMPLE_SCORE[task],
        out_dir,
        figures_dir,
        data_dir=data_dir if isinstance(data_dir, str) else None,
        k=n_examples,
    )
    if qualitative.note:
        notes.append(qualitative.note)
    return qualitative


def _summary(
    run_set: RunSet, runs: pd.DataFrame, baseline_id: str | None, task: str, n_resamples: int, seed: int
) -> list[str]:
    n_random = int((runs["weights"] == "random").sum())
    lines = [
        f"Runs: {run_set.selector}, {len(runs)} FINISHED evaluate runs ({n_random} with random weights).",
        f"Task: {task}; primary metric {rs.PRIMARY_QUALITY_METRIC[task]}.",
    ]
    if baseline_id is None:
        return [*lines, "Baseline: none (no pretrained-weight run)."]
    return [
        *lines,
        f"Baseline: {_who(runs, baseline_id)}.",
        f"Δ interval: {CONFIDENCE:.0%} percentile paired bootstrap over {RESAMPLED_UNIT}s (every sample of "
        f"a drawn {RESAMPLED_UNIT} together), {n_resamples} resamples, seed {seed}.",
    ]


def _who(runs: pd.DataFrame, run_id: str) -> str:
    return f"{runs.loc[runs['run_id'] == run_id, 'label'].iat[0]} ({run_id})"
