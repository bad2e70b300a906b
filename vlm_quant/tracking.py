"""Where results go: the only module on the run path that imports mlflow.

`open_run` opens (or, inside `mlflow run`, attaches to) one MLflow run and yields a `Tracker`;
`InMemoryTracker` has the same methods and keeps everything in dicts, for tests. A run that raises
ends FAILED (KILLED on Ctrl-C) with the reason as a tag, never stays RUNNING.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vlm_quant import run_schema

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
# MLflow caps a param value at 6000 characters; longer values are cut with a marker, never dropped.
MAX_PARAM_CHARS = 6000


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The store to use: an explicit URI, else $MLFLOW_TRACKING_URI, else the project's sqlite store."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        # A relative sqlite path: create its folder so the first run on a fresh clone works.
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return uri


def clean_metrics(metrics: Mapping[str, float | None]) -> dict[str, float]:
    """Drop absent values (None, NaN): a metric that was not measured is absent, never zero."""
    out = {}
    for key, value in metrics.items():
        if value is None:
            continue
        value = float(value)
        if math.isnan(value):
            continue
        out[key] = value
    return out


def _param_text(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 14] + "...[truncated]"


def _unquoted(text: str) -> str:
    try:
        parts = shlex.split(text)
    except ValueError:
        return text
    return parts[0] if len(parts) == 1 else text


class MlflowTracker:
    """Logs into one active MLflow run."""

    def __init__(self, run_id: str, tracking_uri: str):
        import mlflow

        self._mlflow = mlflow
        self._client = mlflow.MlflowClient(tracking_uri)
        self.run_id = run_id
        self.tracking_uri = tracking_uri

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params; keys already on the run (as `mlflow run -P` logs them) are kept, not rewritten.

        MLflow params are immutable. Under `mlflow run` the launcher has logged the user's `-P`
        values, shell-quoted where they hold spaces; a value equal after unquoting is skipped, a
        different one (e.g. `log_model=false` resolved to `False`) goes to `resolved_<key>`.
        """
        existing = self._client.get_run(self.run_id).data.params
        fresh: dict[str, str] = {}
        for key, value in params.items():
            text = _param_text(value)
            if key not in existing:
                fresh[key] = text
            elif _unquoted(existing[key]) != text:
                fresh[f"resolved_{key}"] = text
        if fresh:
            self._mlflow.log_params(fresh)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float | None]) -> None:
        cleaned = clean_metrics(metrics)
        if cleaned:
            self._mlflow.log_metrics(cleaned)

    def log_metric_history(self, name: str, values: Sequence[float], steps: Sequence[int]) -> None:
        """A metric series, e.g. GPU power with step = ms since the run started."""
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        points = [Metric(name, float(v), now_ms, int(s)) for v, s in zip(values, steps) if v is not None]
        for start in range(0, len(points), 1000):  # MLflow's batch limit
            self._client.log_batch(self.run_id, metrics=points[start : start + 1000])

    def log_json(self, obj: Any, artifact_path: str) -> None:
        self.log_text(json.dumps(obj, indent=2, default=str), artifact_path)

    def log_text(self, text: str, artifact_path: str) -> None:
        self._mlflow.log_text(text, artifact_path)

    def log_file(self, local_path: str | Path, artifact_dir: str | None = None) -> None:
        self._mlflow.log_artifact(str(local_path), artifact_dir)

    def log_dir(self, local_dir: str | Path, artifact_dir: str) -> None:
        self._mlflow.log_artifacts(str(local_dir), artifact_dir)

    def log_table(self, columns: Mapping[str, Sequence[Any]], artifact_path: str) -> None:
        """An MLflow table (shown in the UI's artifact view and comparable across runs)."""
        self._mlflow.log_table(data={k: list(v) for k, v in columns.items()}, artifact_file=artifact_path)


class InMemoryTracker:
    """Same interface as MlflowTracker; keeps everything in memory (tests, dry runs)."""

    def __init__(self) -> None:
        self.run_id = "in-memory"
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.metrics: dict[str, float] = {}
        self.histories: dict[str, list[tuple[int, float]]] = {}
        self.artifacts: dict[str, Any] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="vlmq-mem-"))

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update({k: _param_text(v) for k, v in params.items()})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update({k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float | None]) -> None:
        self.metrics.update(clean_metrics(metrics))

    def log_metric_history(self, name: str, values: Sequence[float], steps: Sequence[int]) -> None:
        self.histories.setdefault(name, []).extend((int(s), float(v)) for v, s in zip(values, steps))

    def log_json(self, obj: Any, artifact_path: str) -> None:
        self.artifacts[artifact_path] = json.loads(json.dumps(obj, default=str))

    def log_text(self, text: str, artifact_path: str) -> None:
        self.artifacts[artifact_path] = text

    def log_file(self, local_path: str | Path, artifact_dir: str | None = None) -> None:
        name = Path(local_path).name
        self.artifacts[f"{artifact_dir}/{name}" if artifact_dir else name] = Path(local_path).read_bytes()

    def log_dir(self, local_dir: str | Path, artifact_dir: str) -> None:
        for path in sorted(Path(local_dir).rglob("*")):
            if path.is_file():
                self.artifacts[f"{artifact_dir}/{path.relative_to(local_dir).as_posix()}"] = (
                    path.stat().st_size
                )

    def log_table(self, columns: Mapping[str, Sequence[Any]], artifact_path: str) -> None:
        self.artifacts[artifact_path] = {k: list(v) for k, v in columns.items()}


def _experiment_id(mlflow: Any, name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name)


@contextmanager
def open_run(
    experiment: str, run_name: str, *, tracking_uri: str | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[MlflowTracker]:
    """Open one MLflow run (attach to $MLFLOW_RUN_ID under `mlflow run`) and close it with the right status.

    FINISHED when the body returns; KILLED on KeyboardInterrupt; FAILED on any other exception, with
    the exception type and message in the tag ``vlm_quant.failure``. The exception is re-raised.
    """
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    attached = os.environ.get("MLFLOW_RUN_ID")
    if attached:
        run = mlflow.start_run(run_id=attached)
        if not run.data.tags.get("mlflow.runName"):
            mlflow.set_tag("mlflow.runName", run_name)
    else:
        run = mlflow.start_run(experiment_id=_experiment_id(mlflow, experiment), run_name=run_name)
    tracker = MlflowTracker(run.info.run_id, uri)
    if tags:
        tracker.set_tags(tags)
    try:
        yield tracker
    except KeyboardInterrupt:
        mlflow.set_tag(run_schema.TAG_FAILURE, "KeyboardInterrupt: interrupted by the user")
        mlflow.end_run("KILLED")
        raise
    except BaseException as exc:
        mlflow.set_tag(run_schema.TAG_FAILURE, f"{type(exc).__name__}: {exc}"[:5000])
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")
