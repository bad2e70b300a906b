"""Log a built report folder as the artifacts of a ``compare`` MLflow run.

Inside ``mlflow run . -e compare`` MLflow has already created the run and exported its id as
``MLFLOW_RUN_ID``: the report is attached to that run and the run is left for MLflow to close.
Outside it, a new run is created next to the compared runs (or in ``experiment``) and finished here.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Param, RunTag

from vlm_quant.study.report.build import ReportResult
from vlm_quant.tracking import run_schema as rs
from vlm_quant.tracking.run_story import TAG_NOTE, TAG_RUN_NAME, compare_display_name

REPORT_ARTIFACT_DIR = "report"
SUMMARY_TABLE = "report/summary_table.json"  # MLflow table: one row per configuration
TAG_COMPARED_IN = "vlm_quant.compared_in"  # on each compared run: the compare run(s) it appears in


def log_report_run(
    result: ReportResult,
    *,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    run_name: str = "",
    kind: str = "compare",
    files: tuple[Path, ...] | None = None,
    files_root: Path | None = None,
    artifact_root: str = REPORT_ARTIFACT_DIR,
) -> str:
    """Log the report's files (``result.paths``, layout kept) under ``report/`` of a run tagged
    ``vlm_quant.kind=compare``, with the compared run ids and the baseline as tags.

    ``paper``/``slides`` runs pass their own ``kind``, ``files`` (relative to ``files_root``) and
    ``artifact_root``.

    ``experiment``: name of the experiment for a new run (created when missing); default: the
    experiment of the compared baseline run. Returns the compare run's id. The run is named after
    what it compared (unless ``run_name``, or `mlflow run --run-name`, says otherwise), logs the summary
    as an MLflow table (``report/summary_table.json``: the UI's artifact view, and comparable across
    compare runs), links the compared runs from its description, and tags each compared run with it.
    """
    from vlm_quant.tracking.tracker import is_generated_name

    client = MlflowClient(tracking_uri=tracking_uri)
    names = {rid: client.get_run(rid).data.tags.get(TAG_RUN_NAME, rid) for rid in result.run_ids}
    baseline = names.get(result.baseline_run_id or "", "")
    compared = compare_display_name(list(names.values()), baseline.split(" · ", 1)[-1] if baseline else "")
    name = run_name or (compared if kind == "compare" else f"{kind}: {compared}")
    attached = os.environ.get("MLFLOW_RUN_ID")
    if attached:
        run_id = attached
        if is_generated_name(client.get_run(run_id).data.tags.get(TAG_RUN_NAME)):
            client.set_tag(run_id, TAG_RUN_NAME, name)
    else:
        run_id = client.create_run(_experiment_id(client, result, experiment), run_name=name).info.run_id
    try:
        client.log_batch(run_id, params=_params(result), tags=_tags(result, kind))
        client.log_table(run_id, data=result.tables.numbers, artifact_file=SUMMARY_TABLE)
        client.set_tag(run_id, TAG_NOTE, _description(client, result, names))
        for rid in result.run_ids if kind == "compare" else ():
            previous = client.get_run(rid).data.tags.get(TAG_COMPARED_IN, "")
            client.set_tag(rid, TAG_COMPARED_IN, ",".join(filter(None, [previous, run_id])))
        # Only the files this report wrote: a reused out_dir may hold stale figures of an older report.
        for path in result.paths if files is None else files:
            folder = path.relative_to(files_root or result.out_dir).parent.as_posix()
            artifact_dir = artifact_root if folder == "." else f"{artifact_root}/{folder}"
            client.log_artifact(run_id, str(path), artifact_path=artifact_dir)
    except Exception:
        if not attached:
            client.set_terminated(run_id, "FAILED")
        raise
    if not attached:
        client.set_terminated(run_id, "FINISHED")
    return run_id


def _description(client: MlflowClient, result: ReportResult, names: dict[str, str]) -> str:
    """Markdown for the compare run's page: what was compared, each run linked, where the tables are."""
    lines = [f"Compared {len(result.run_ids)} runs ({result.task}); summary table: `{SUMMARY_TABLE}`, "
             f"full report under `{REPORT_ARTIFACT_DIR}/`.", ""]
    for rid in result.run_ids:
        experiment_id = client.get_run(rid).info.experiment_id
        mark = " (baseline)" if rid == result.baseline_run_id else ""
        lines.append(f"- [{names[rid]}](#/experiments/{experiment_id}/runs/{rid}){mark}")
    lines += [f"- note: {note}" for note in result.notes]
    return "\n".join(lines)


def _experiment_id(client: MlflowClient, result: ReportResult, experiment: str | None) -> str:
    if experiment is None:
        return client.get_run(result.baseline_run_id or result.run_ids[0]).info.experiment_id
    found = client.get_experiment_by_name(experiment)
    return found.experiment_id if found else client.create_experiment(experiment)


def _params(result: ReportResult) -> list[Param]:
    estimate = next((d for d in result.deltas.values() if d), None)
    params = {
        "task": result.task,
        "n_runs": str(len(result.run_ids)),
        "baseline_run_id": result.baseline_run_id or "none",
    }
    if estimate:
        params.update(
            bootstrap_resamples=str(estimate.n_resamples),
            bootstrap_seed=str(estimate.seed),
            bootstrap_confidence=str(estimate.confidence),
        )
    return [Param(key, value) for key, value in params.items()]


def _tags(result: ReportResult, kind: str = "compare") -> list[RunTag]:
    tags = {
        rs.TAG_KIND: kind,
        rs.TAG_TASK: result.task,
        rs.TAG_BASELINE_RUN: result.baseline_run_id or "none",
        rs.TAG_COMPARED_RUNS: ",".join(result.run_ids),
    }
    return [RunTag(key, value) for key, value in tags.items()]
