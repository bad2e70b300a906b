"""Read finished evaluate runs from the MLflow tracking store into one tidy DataFrame.

This is the only report module that talks to MLflow: everything downstream is a pure function of
the DataFrame and of the artifacts fetched through :class:`RunSet`. Column names follow
``mlflow.search_runs``: ``params.<name>``, ``metrics.<name>``, ``tags.<name>``, plus ``run_id``,
``run_name``, ``experiment_id``, ``start_time`` (ms since epoch), ``weights`` ("pretrained" |
"random"), ``precision`` (the label of the realized per-role precision, see `precision_labels`;
None for a run that logged none) and ``label`` (the configuration's display name, unique within
the set).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run, RunStatus
from mlflow.exceptions import MlflowException

from vlm_quant.errors import UserError
from vlm_quant.study.report.precision_labels import run_precision
from vlm_quant.tracking import run_schema as rs

_EVALUATE_FILTER = f"attributes.status = 'FINISHED' and tags.`{rs.TAG_KIND}` = 'evaluate'"


@dataclass
class RunSet:
    """The selected runs (one row each) and a client to fetch their artifacts on demand."""

    runs: pd.DataFrame
    client: MlflowClient
    selector: str  # e.g. "experiment 'coco-sweep'", said back to the user in messages
    _cache: dict = field(default_factory=dict, repr=False)

    def predictions(self, run_id: str) -> list[dict] | None:
        """Rows of ``predictions/predictions.jsonl``; None when the run did not log them."""
        text = self._artifact_text(run_id, rs.ARTIFACT_PREDICTIONS_JSONL)
        if text is None:
            return None
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def environment(self, run_id: str) -> dict | None:
        """The logged ``environment/environment.json``; None when absent."""
        text = self._artifact_text(run_id, rs.ARTIFACT_ENVIRONMENT)
        return None if text is None else json.loads(text)

    def artifact_json(self, run_id: str, path: str) -> object | None:
        """A logged JSON artifact (e.g. ``sustainability/co2e_by_place.json``); None when absent."""
        text = self._artifact_text(run_id, path)
        return None if text is None else json.loads(text)

    def power_history(self, run_id: str, metric: str = rs.METRIC_POWER_HISTORY) -> pd.DataFrame:
        """The ``gpu_power_w`` metric history (or ``metric``'s, e.g. ``rank1_gpu_power_w``) as columns
        ``t_s`` (seconds since run start) and ``power_w``.

        Empty frame when the run logged no power samples (CPU run, no NVML).
        """
        history = self.client.get_metric_history(run_id, metric)
        frame = pd.DataFrame(
            {"t_s": [m.step / 1000.0 for m in history], "power_w": [m.value for m in history]}
        )
        return frame.sort_values("t_s", ignore_index=True)

    def gpu_power_traces(self, runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Each run's GPU power by label; a run of N processes gives one trace per rank's GPU, labelled
        "<label>, rank r's GPU" (rank 0's is ``gpu_power_w``, rank r's ``rank{r}_gpu_power_w``)."""
        worlds = runs.get("params.distributed_world_size", pd.Series(None, index=runs.index, dtype=object))
        traces = {}
        for label, run_id, world in zip(runs["label"], runs["run_id"], worlds, strict=True):
            ranks = int(world) if isinstance(world, str) and world.isdigit() else 1
            if ranks <= 1:
                traces[label] = self.power_history(run_id)
                continue
            for rank in range(ranks):
                metric = rs.METRIC_POWER_HISTORY if rank == 0 else f"rank{rank}_{rs.METRIC_POWER_HISTORY}"
                traces[f"{label}, rank {rank}'s GPU"] = self.power_history(run_id, metric)
        return traces

    def _artifact_text(self, run_id: str, path: str) -> str | None:
        key = (run_id, path)
        if key not in self._cache:
            self._cache[key] = _download_text(self.client, run_id, path)
        return self._cache[key]


def load_runs(
    *,
    experiment: str | None = None,
    parent_run: str | None = None,
    run_ids: Sequence[str] | None = None,
    tracking_uri: str | None = None,
) -> RunSet:
    """Select FINISHED evaluate runs by experiment name, sweep parent run id, or explicit run ids.

    Exactly one selector must be given. ``tracking_uri`` defaults to MLflow's own resolution
    (``MLFLOW_TRACKING_URI``). Raises ``UserError`` naming the selector when nothing matches.
    """
    chosen = [
        name
        for name, v in (("experiment", experiment), ("parent_run", parent_run), ("run_ids", run_ids))
        if v
    ]
    if len(chosen) != 1:
        raise UserError(
            "give exactly one of experiment, parent_run, run_ids to select the runs to compare "
            f"(got {', '.join(chosen) or 'none'})"
        )
    client = MlflowClient(tracking_uri=tracking_uri)
    if experiment:
        runs, selector = _by_experiment(client, experiment), f"experiment {experiment!r}"
    elif parent_run:
        runs, selector = _by_parent(client, parent_run), f"parent run {parent_run!r}"
    else:
        runs, selector = _by_ids(client, list(run_ids or [])), f"run ids {list(run_ids or [])}"
    if not runs:
        raise UserError(f"{selector} matched no FINISHED evaluate runs ({rs.TAG_KIND}=evaluate)")
    return RunSet(runs=runs_frame(runs), client=client, selector=selector)


def runs_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run, ordered by start time; params are strings, metrics floats (latest value)."""
    rows = []
    for run in runs:
        row = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "experiment_id": run.info.experiment_id,
            "start_time": run.info.start_time,
        }
        row.update({f"params.{k}": v for k, v in run.data.params.items()})
        row.update({f"metrics.{k}": float(v) for k, v in run.data.metrics.items()})
        row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        rows.append(row)
    frame = pd.DataFrame(rows).sort_values(["start_time", "run_id"], ignore_index=True)
    frame["weights"] = [_weights(row) for _, row in frame.iterrows()]
    frame["precision"] = [run_precision(row) for _, row in frame.iterrows()]
    frame["label"] = configuration_labels(frame)
    return frame


def configuration_labels(frame: pd.DataFrame) -> list[str]:
    """Display names: the realized precision (`precision_labels`), `` (random)`` appended for
    random-weight runs, made unique with the run name, then the run id, where it repeats.

    A run that logged no realized precision is named by its ``quant`` param marked
    `` (requested)``: what was asked for, not what the audit saw. Needs the ``weights`` column.
    """
    base = [
        _precision_name(row) + (" (random)" if row["weights"] == "random" else "")
        for _, row in frame.iterrows()
    ]
    labels = []
    for i, name in enumerate(base):
        if base.count(name) > 1:
            suffix = frame["run_name"].iat[i] or frame["run_id"].iat[i][:8]
            name = f"{name} ({suffix})"
        labels.append(name)
    # Run names can repeat too (two sweeps of the same grid): fall back to the run id.
    return [
        f"{name} [{frame['run_id'].iat[i][:8]}]" if labels.count(name) > 1 else name
        for i, name in enumerate(labels)
    ]


def _precision_name(row: pd.Series) -> str:
    realized = row.get("precision") if "precision" in row.index else run_precision(row)
    if isinstance(realized, str) and realized:
        return realized
    quant = row.get("params.quant")
    return f"{quant} (requested)" if isinstance(quant, str) and quant else str(row["run_name"])


def _weights(row: pd.Series) -> str:
    value = row.get(f"tags.{rs.TAG_WEIGHTS}")
    if not isinstance(value, str):
        value = row.get("params.weights")
    return value if isinstance(value, str) and value else "pretrained"


def _search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _by_experiment(client: MlflowClient, name: str) -> list[Run]:
    found = client.get_experiment_by_name(name)
    if found is None:
        raise UserError(f"experiment {name!r} does not exist in tracking store {client.tracking_uri}")
    return _search_all(client, [found.experiment_id], _EVALUATE_FILTER)


def _by_parent(client: MlflowClient, parent_run_id: str) -> list[Run]:
    parent = _get_run(client, parent_run_id, "parent run")
    query = f"{_EVALUATE_FILTER} and tags.`mlflow.parentRunId` = '{parent_run_id}'"
    return _search_all(client, [parent.info.experiment_id], query)


def _by_ids(client: MlflowClient, run_ids: list[str]) -> list[Run]:
    runs = [_get_run(client, run_id, "run") for run_id in run_ids]
    # Explicitly named runs that are not finished evaluate runs are an error, not a silent drop.
    unusable = [
        f"{r.info.run_name} ({r.info.run_id}): status {r.info.status}, "
        f"{rs.TAG_KIND}={r.data.tags.get(rs.TAG_KIND)}"
        for r in runs
        if r.info.status != RunStatus.to_string(RunStatus.FINISHED)
        or r.data.tags.get(rs.TAG_KIND) != "evaluate"
    ]
    if unusable:
        raise UserError("only FINISHED evaluate runs can be compared; not usable: " + "; ".join(unusable))
    return runs


def _get_run(client: MlflowClient, run_id: str, what: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        raise UserError(f"{what} {run_id!r} not found in tracking store {client.tracking_uri}") from exc


def _download_text(client: MlflowClient, run_id: str, path: str) -> str | None:
    # A temporary folder per download: the report keeps parsed content, never the store's files.
    with tempfile.TemporaryDirectory(prefix="vlm_quant_report_") as tmp:
        try:
            local = client.download_artifacts(run_id, path, dst_path=tmp)
        except (MlflowException, OSError):
            return None
        local_path = Path(local)
        return local_path.read_text(encoding="utf-8") if local_path.is_file() else None
