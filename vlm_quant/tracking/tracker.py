"""Where results go: the only module on the run path that imports mlflow.

`open_run` opens (or, inside `mlflow run`, attaches to) one MLflow run and yields a `Tracker`;
`InMemoryTracker` has the same methods and keeps everything in dicts, for tests. A run that raises
ends FAILED (KILLED on Ctrl-C or a signal) with the reason as a tag, never stays RUNNING.

Nothing lost, nothing leaked:
- every param and tag value and every text artifact passes through `redact` (tokens, passwords);
- writes retry with backoff when the store is briefly unavailable ("database is locked" when several
  processes share one sqlite file: MLflow already sets sqlite's busy_timeout to 20 s per statement,
  these retries cover what that does not, such as a lock upgrade refused without waiting);
- a new sqlite store is created under a file lock, and a concurrent creation of the same experiment is
  tolerated, so processes started at once on a fresh store all get their runs;
- `open_run(resume_run_id=...)` reopens an unfinished run (same run id, RUNNING again).
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import shlex
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from vlm_quant.errors import UserError
from vlm_quant.run.interrupts import RunInterrupted, shielded
from vlm_quant.tracking import run_schema
from vlm_quant.tracking.redact import redact, redact_obj
from vlm_quant.tracking.run_story import TAG_RUN_NAME, DatasetInput

log = logging.getLogger(__name__)
R = TypeVar("R")

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
# MLflow caps a param value at 6000 characters; longer values are cut with a marker, never dropped.
MAX_PARAM_CHARS = 6000
# Waits between attempts of a store write that failed transiently (~16 s in all, on top of the 20 s
# sqlite busy timeout inside each attempt).
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)
TRANSIENT_MARKERS = ("database is locked", "database table is locked", "temporarily unavailable")
# Tags that say which process holds a RUNNING run, so `resume=auto` can tell a dead run from a live one.
TAG_HOST = "vlm_quant.host"
TAG_PID = "vlm_quant.pid"
TAG_HEARTBEAT = "vlm_quant.heartbeat"  # UTC ISO time, refreshed every HEARTBEAT_S while the run is open
TAG_SIGNAL = "vlm_quant.signal"  # SIGINT / SIGTERM when a signal stopped the run
TAG_RESUMED = "vlm_quant.resume_count"  # how many times the run was reopened
TAG_PREVIOUS_FAILURE = "vlm_quant.previous_failure"  # the failure tag of the attempt that was resumed
HEARTBEAT_S = float(os.environ.get("VLM_QUANT_HEARTBEAT_S", "60"))
# Files logged as artifacts are redacted when they are text of these kinds (a config copy, a JSONL).
TEXT_SUFFIXES = {".json", ".jsonl", ".yaml", ".yml", ".txt", ".csv", ".html", ".md", ".jinja", ".toml"}
MAX_REDACTED_FILE_BYTES = 64 * 2**20


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The store to use: an explicit URI, else $MLFLOW_TRACKING_URI, else the project's sqlite store."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        # A relative sqlite path: create its folder so the first run on a fresh clone works.
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return uri


def is_transient(error: BaseException) -> bool:
    """A store error worth retrying: sqlite lock contention or a store reported temporarily unavailable."""
    if getattr(error, "error_code", None) == "TEMPORARILY_UNAVAILABLE":
        return True
    text = str(error).lower()
    return any(marker in text for marker in TRANSIENT_MARKERS)


def with_retries(call: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """``call(*args, **kwargs)``, retried with backoff while the store is transiently unavailable."""
    for delay in (*RETRY_DELAYS_S, None):
        try:
            return call(*args, **kwargs)
        except Exception as error:
            if delay is None or not is_transient(error):
                raise
            reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
            log.warning("tracking store busy (%s); retrying in %.1f s", reason, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite URI (relative or absolute), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def _file_lock(path: Path) -> Any:
    """An exclusive lock on ``path`` between processes (filelock: flock on POSIX, msvcrt on Windows)."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path)


def prepare_store(uri: str) -> None:
    """Create (or check) the store before any run; a new sqlite file is created by one process at a time.

    Two processes creating the same new sqlite store at once race in MLflow's schema migrations
    ("table _alembic_tmp_... already exists"); the file lock serializes that first contact.
    """
    import mlflow

    database = sqlite_path(uri)
    if database is None:
        return
    with _file_lock(database.with_name(database.name + ".lock")):
        with_retries(mlflow.MlflowClient(uri).search_experiments, max_results=1)


def redacted_text(path: Path) -> str | None:
    """The redacted content of a text file that holds a secret, else None (log the file as it is)."""
    if path.suffix.lower() not in TEXT_SUFFIXES or path.stat().st_size > MAX_REDACTED_FILE_BYTES:
        return None
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError):
        return None
    cleaned = redact(text)
    return cleaned if cleaned != text else None


@contextmanager
def redacted_dir(local_dir: Path) -> Iterator[Path]:
    """``local_dir`` itself, or a mirror of it (links + redacted copies) when a text file holds a secret."""
    files = [p for p in sorted(local_dir.rglob("*")) if p.is_file()]
    cleaned = {p: text for p in files if (text := redacted_text(p)) is not None}
    if not cleaned:
        yield local_dir
        return
    with tempfile.TemporaryDirectory(prefix="vlmq-redacted-") as tmp:
        for path in files:
            target = Path(tmp) / path.relative_to(local_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path in cleaned:
                target.write_text(cleaned[path])
            else:
                target.symlink_to(path.resolve())
        yield Path(tmp)


def store_client(tracking_uri: str | None = None) -> Any:
    """An MlflowClient on the resolved store (for readers such as `resume`, which never import mlflow)."""
    import mlflow

    return mlflow.MlflowClient(resolve_tracking_uri(tracking_uri))


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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
    text = "" if value is None else redact(str(value))
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
        self.experiment_id: str | None = None
        self.model_id: str | None = None  # the run's logged model, once logged (metrics link to it)
        self._evaluation_dataset: Any = None  # metrics are logged against the evaluated split
        self._logged: dict[tuple[str, str | None], float] = {}  # (metric, linked model) -> value

    @property
    def journal_key(self) -> str:
        """The name of this run's local prediction journal: its run id (a UUID, unique across stores)."""
        return self.run_id

    def last_metric_step(self, name: str) -> int | None:
        """The largest step logged for metric ``name`` in this run (None: never logged), e.g. to continue
        a resumed run's power history where the previous attempt stopped."""
        history = with_retries(self._client.get_metric_history, self.run_id, name)
        return max((int(m.step) for m in history), default=None)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params; keys already on the run (as `mlflow run -P` logs them) are kept, not rewritten.

        MLflow params are immutable. Under `mlflow run` the launcher has logged the user's `-P`
        values, shell-quoted where they hold spaces; a value equal after unquoting is skipped, a
        different one (e.g. `log_model=false` resolved to `False`) goes to `resolved_<key>`. A
        resumed run logs its params again: equal values are skipped, a value that changed between
        attempts goes to `resolved_<key>` once, then to the tag `vlm_quant.param_changed.<key>`.
        """
        existing = with_retries(self._client.get_run, self.run_id).data.params
        fresh: dict[str, str] = {}
        changed: dict[str, str] = {}
        for key, value in params.items():
            text = _param_text(value)
            if key not in existing:
                fresh[key] = text
            elif _unquoted(existing[key]) == text:
                continue
            elif existing.get(f"resolved_{key}", text) == text:
                fresh[f"resolved_{key}"] = text
            else:  # a resumed run whose value changed again (e.g. another device): kept as a tag
                changed[f"vlm_quant.param_changed.{key}"] = text
        fresh = {k: v for k, v in fresh.items() if existing.get(k) != v}
        if fresh:
            with_retries(self._mlflow.log_params, fresh)
        if changed:
            self.set_tags(changed)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        with_retries(self._mlflow.set_tags, {k: redact(str(v)) for k, v in tags.items()})

    def delete_tag(self, key: str) -> None:
        """Remove tag ``key`` when the run has it (e.g. an absent-reason tag once the value exists)."""
        if key in with_retries(self._client.get_run, self.run_id).data.tags:
            with_retries(self._client.delete_tag, self.run_id, key)

    def link_logged_model(self, evaluation: DatasetInput | None) -> str | None:
        """Link the metrics logged from now on to the run's READY logged model and evaluated split, as
        `log_metrics` does once the model is logged (a run reopened later); returns the model id."""
        found = with_retries(
            self._client.search_logged_models, [self.experiment_id],
            filter_string=f"source_run_id = '{self.run_id}'",
        )
        ready = [m for m in found if str(m.status).endswith("READY")]
        if ready:
            self.model_id = ready[0].model_id
            self._evaluation_dataset = _mlflow_dataset(evaluation) if evaluation else None
        return self.model_id

    def log_metrics(self, metrics: Mapping[str, float | None]) -> None:
        """Log metrics (step 0); a value this tracker already logged unchanged is not sent again (the
        quality scores are logged as soon as they exist, then again with the run's other metrics). Once a
        model and the evaluated split are logged, the metrics are linked to both (the logged model's page
        then lists them, per dataset)."""
        # Keyed by the linked model too: the early quality scores are logged again, once, linked to the
        # logged model, so its page lists them.
        cleaned = {
            k: v for k, v in clean_metrics(metrics).items() if self._logged.get((k, self.model_id)) != v
        }
        if cleaned:
            links = {"model_id": self.model_id, "dataset": self._evaluation_dataset} if self.model_id else {}
            with_retries(self._mlflow.log_metrics, cleaned, **links)
            self._logged.update({(k, self.model_id): v for k, v in cleaned.items()})

    def log_datasets(self, inputs: Sequence[DatasetInput]) -> None:
        """Each input as an MLflow dataset of the run (runs list: Dataset column; run page: Datasets)."""
        datasets = [_mlflow_dataset(spec) for spec in inputs]
        contexts = [spec.context for spec in inputs]
        no_tags = [None] * len(inputs)
        with_retries(self._mlflow.log_inputs, datasets=datasets, contexts=contexts, tags_list=no_tags)
        for spec, dataset in zip(inputs, datasets):
            if spec.context == "evaluation":
                self._evaluation_dataset = dataset

    def log_model(
        self, local_dir: str | Path, name: str, *, params: Mapping[str, Any], tags: Mapping[str, Any],
        register: str = "",
    ) -> str:
        """``local_dir`` as an MLflow 3 logged model of this run (READY, linked as the run's output);
        with ``register``, also a version of that registered model (one per configuration)."""
        from mlflow.entities import LoggedModelOutput

        text_params = {k: _param_text(v) for k, v in params.items()}
        text_tags = {k: redact(str(v)) for k, v in tags.items()}
        model = with_retries(
            self._mlflow.initialize_logged_model, name=_model_name(redact(name)), source_run_id=self.run_id,
            params=text_params, tags=text_tags, model_type="vlm-quant checkpoint",
        )
        try:
            with redacted_dir(Path(local_dir)) as folder:
                with_retries(self._client.log_model_artifacts, model.model_id, str(folder))
        except BaseException:
            with_retries(self._mlflow.finalize_logged_model, model.model_id, "FAILED")
            raise
        with_retries(self._mlflow.finalize_logged_model, model.model_id, "READY")
        with_retries(self._client.log_outputs, self.run_id, [LoggedModelOutput(model.model_id, step=0)])
        self.model_id = model.model_id
        if register:
            self._register(register, text_tags)
        return model.model_id

    def _register(self, name: str, tags: Mapping[str, str]) -> None:
        """A new version of registered model ``name``, unless one of the same configuration exists."""
        key = run_schema.TAG_CONFIG_HASH
        existing = with_retries(self._client.search_model_versions, f"name = '{name}'")
        same = [v for v in existing if key in tags and v.tags.get(key) == tags[key]]
        if same:
            log.info("registered model %s has version %s of this config", name, same[0].version)
            self.set_tags({"vlm_quant.registered_model": f"{name}/{same[0].version}"})
            return
        version = with_retries(self._mlflow.register_model, f"models:/{self.model_id}", name, tags=dict(tags))
        self.set_tags({"vlm_quant.registered_model": f"{name}/{version.version}"})

    def log_metric_history(self, name: str, values: Sequence[float], steps: Sequence[int]) -> None:
        """A metric series, e.g. GPU power with step = ms since the run started."""
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        points = [Metric(name, float(v), now_ms, int(s)) for v, s in zip(values, steps) if v is not None]
        for start in range(0, len(points), 1000):  # MLflow's batch limit
            with_retries(self._client.log_batch, self.run_id, metrics=points[start : start + 1000])

    def log_json(self, obj: Any, artifact_path: str) -> None:
        plain = json.loads(json.dumps(obj, default=str))  # redacted as values, so the JSON stays valid
        with_retries(self._mlflow.log_text, json.dumps(redact_obj(plain), indent=2), artifact_path)

    def log_text(self, text: str, artifact_path: str) -> None:
        with_retries(self._mlflow.log_text, redact(text), artifact_path)

    def log_file(self, local_path: str | Path, artifact_dir: str | None = None) -> None:
        """Log a file; a text file holding a secret is logged as a redacted copy of the same name."""
        cleaned = redacted_text(Path(local_path))
        if cleaned is None:
            with_retries(self._mlflow.log_artifact, str(local_path), artifact_dir)
            return
        with tempfile.TemporaryDirectory(prefix="vlmq-redacted-") as tmp:
            copy = Path(tmp) / Path(local_path).name
            copy.write_text(cleaned)
            with_retries(self._mlflow.log_artifact, str(copy), artifact_dir)

    def log_dir(self, local_dir: str | Path, artifact_dir: str) -> None:
        with redacted_dir(Path(local_dir)) as folder:
            with_retries(self._mlflow.log_artifacts, str(folder), artifact_dir)

    def log_table(self, columns: Mapping[str, Sequence[Any]], artifact_path: str) -> None:
        """An MLflow table (shown in the UI's artifact view and comparable across runs)."""
        data = {k: redact_obj(list(v)) for k, v in columns.items()}
        with_retries(self._mlflow.log_table, data=data, artifact_file=artifact_path)

    def read_text(self, artifact_path: str) -> str | None:
        """A text artifact of this run (e.g. the partial predictions of an interrupted attempt), or None."""
        folder, _, name = artifact_path.rpartition("/")
        listed = with_retries(self._client.list_artifacts, self.run_id, folder or None)
        if not any(f.path == artifact_path for f in listed):
            return None
        with tempfile.TemporaryDirectory(prefix="vlmq-read-") as tmp:
            local = with_retries(self._client.download_artifacts, self.run_id, artifact_path, tmp)
            return Path(local).read_text()


class InMemoryTracker:
    """Same interface as MlflowTracker; keeps everything in memory (tests, dry runs)."""

    def __init__(self) -> None:
        self.run_id = "in-memory"
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.metrics: dict[str, float] = {}
        self.histories: dict[str, list[tuple[int, float]]] = {}
        self.artifacts: dict[str, Any] = {}
        self.datasets: list[DatasetInput] = []
        self.models: list[dict[str, Any]] = []
        self.model_id: str | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="vlmq-mem-"))

    def log_datasets(self, inputs: Sequence[DatasetInput]) -> None:
        self.datasets.extend(inputs)

    def log_model(
        self, local_dir: str | Path, name: str, *, params: Mapping[str, Any], tags: Mapping[str, Any],
        register: str = "",
    ) -> str:
        files = sorted(p.relative_to(local_dir).as_posix() for p in Path(local_dir).rglob("*") if p.is_file())
        self.model_id = f"m-in-memory-{len(self.models)}"
        self.models.append({"name": _model_name(name), "params": dict(params), "tags": dict(tags),
                            "files": files, "register": register})
        return self.model_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update({k: _param_text(v) for k, v in params.items()})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update({k: redact(str(v)) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float | None]) -> None:
        self.metrics.update(clean_metrics(metrics))

    def log_metric_history(self, name: str, values: Sequence[float], steps: Sequence[int]) -> None:
        self.histories.setdefault(name, []).extend((int(s), float(v)) for v, s in zip(values, steps))

    def last_metric_step(self, name: str) -> int | None:
        return max((step for step, _ in self.histories.get(name, [])), default=None)

    def log_json(self, obj: Any, artifact_path: str) -> None:
        self.artifacts[artifact_path] = redact_obj(json.loads(json.dumps(obj, default=str)))

    def log_text(self, text: str, artifact_path: str) -> None:
        self.artifacts[artifact_path] = redact(text)

    def log_file(self, local_path: str | Path, artifact_dir: str | None = None) -> None:
        name = Path(local_path).name
        cleaned = redacted_text(Path(local_path))
        content = cleaned.encode() if cleaned is not None else Path(local_path).read_bytes()
        self.artifacts[f"{artifact_dir}/{name}" if artifact_dir else name] = content

    def log_dir(self, local_dir: str | Path, artifact_dir: str) -> None:
        for path in sorted(Path(local_dir).rglob("*")):
            if path.is_file():
                self.artifacts[f"{artifact_dir}/{path.relative_to(local_dir).as_posix()}"] = (
                    path.stat().st_size
                )

    def log_table(self, columns: Mapping[str, Sequence[Any]], artifact_path: str) -> None:
        self.artifacts[artifact_path] = {k: redact_obj(list(v)) for k, v in columns.items()}

    def read_text(self, artifact_path: str) -> str | None:
        value = self.artifacts.get(artifact_path)
        return value.decode() if isinstance(value, bytes) else value if isinstance(value, str) else None


def _model_name(name: str) -> str:
    """A logged-model name MLflow accepts (no '/', ':', '.', '%', '"' or \"'\"): the run name, simplified."""
    cleaned = "".join(c if c.isalnum() or c in "-_ " else "-" for c in name.replace(" · ", "-"))
    return "-".join(cleaned.split()) or "model"


def _mlflow_dataset(spec: DatasetInput) -> Any:
    """An MLflow dataset of metadata only (the images stay where they are): name, digest, source, profile."""
    from mlflow.data.meta_dataset import MetaDataset

    if spec.source_type == "hugging_face":
        from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

        source = HuggingFaceDatasetSource(path=redact(spec.source), split=spec.profile.get("split"))
    else:
        from mlflow.data.sources import LocalArtifactDatasetSource

        source = LocalArtifactDatasetSource(redact(str(Path(spec.source).resolve())) if spec.source else ".")

    class ProfiledDataset(MetaDataset):
        """MetaDataset + a profile (MetaDataset has none): the number of samples, the seed, the split."""

        @property
        def profile(self) -> Any:
            return dict(spec.profile)

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(spec.profile)}

    return ProfiledDataset(source, name=spec.name, digest=spec.digest)


def is_generated_name(name: str | None) -> bool:
    """True for MLflow's random run names (``loud-mule-597``): a name nobody chose.

    `mlflow run` without ``--run-name`` gives its run such a name, which ours replaces; a user's own
    ``--run-name`` is kept. Checked against MLflow's own word lists, else the adjective-noun-number shape.
    """
    import re

    if not name:
        return True
    match = re.fullmatch(r"([a-z]+)-([a-z]+)-(\d{1,3})", name)
    if not match:
        return False
    try:
        from mlflow.utils import name_utils

        return match[1] in name_utils._GENERATOR_PREDICATES and match[2] in name_utils._GENERATOR_NOUNS
    except (ImportError, AttributeError):
        return True


def system_metrics_interval_s(n_samples: int) -> float:
    """MLflow system-metrics sampling interval (s) for a run of ``n_samples`` images: ~1-2 s per image
    on a GPU, up to tens of seconds on a CPU, so a short run samples every 2 s and a long one every 10-30 s
    (a few hundred points per chart either way, and the store is not flooded)."""
    if n_samples and n_samples <= 50:
        return 2.0
    if n_samples and n_samples <= 500:
        return 10.0
    return 30.0


def _experiment_id(mlflow: Any, name: str) -> str:
    experiment = with_retries(mlflow.get_experiment_by_name, name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return with_retries(mlflow.create_experiment, name)
    except Exception as error:  # another process created it between our lookup and our create
        experiment = with_retries(mlflow.get_experiment_by_name, name)
        if experiment is None:
            raise
        log.info("experiment %r was created concurrently (%s)", name, str(error).splitlines()[0][:120])
        return experiment.experiment_id


def _reopen(mlflow: Any, client: Any, run_id: str, **start: Any) -> Any:
    """Set an unfinished run RUNNING again; its last failure moves to `previous_failure`."""
    run = with_retries(mlflow.start_run, run_id=run_id, **start)
    tags = run.data.tags
    count = int(tags.get(TAG_RESUMED, "0") or 0) + 1
    updates = {TAG_RESUMED: str(count)}
    if tags.get(run_schema.TAG_FAILURE):
        updates[TAG_PREVIOUS_FAILURE] = tags[run_schema.TAG_FAILURE]
    with_retries(mlflow.set_tags, updates)
    for key in (run_schema.TAG_FAILURE, TAG_SIGNAL):
        if key in tags:
            with_retries(client.delete_tag, run_id, key)
    log.info("resuming run %s (attempt %d)", run_id, count + 1)
    return run


def _heartbeat(client: Any, run_id: str, stop: threading.Event) -> None:
    """Refresh the heartbeat tag until ``stop`` is set (the run's liveness for other hosts)."""
    while not stop.wait(HEARTBEAT_S):
        try:
            client.set_tag(run_id, TAG_HEARTBEAT, utc_now())
        except Exception as error:  # a missed heartbeat is harmless; never disturb the run for it
            log.debug("heartbeat not written: %s", error)


def _close(mlflow: Any, status: str, tags: Mapping[str, str]) -> None:
    """Tag the reason and end the run (not cut short by a signal); a store that stays unavailable is
    logged, never masks the error being raised."""
    with shielded():
        try:
            if tags:
                with_retries(mlflow.set_tags, {k: redact(v)[:5000] for k, v in tags.items()})
        except Exception as error:
            log.error("could not record why the run ended (%s): %s", status, error)
        try:
            with_retries(mlflow.end_run, status)
        except Exception as error:
            log.error("could not mark the run %s (it stays RUNNING until resumed): %s", status, error)


def check_launcher_run(
    experiment: str | None, run_name: str | None = None, *, tracking_uri: str | None = None
) -> None:
    """Under `mlflow run`, make the user's tracking choices true or fail before any work (no-op outside).

    The launcher creates the run (in the experiment of its ``--experiment-name``/``--experiment-id``,
    else `Default`, named by its ``--run-name``, else randomly) before vlm-quant starts, and MLflow
    cannot move a run to another experiment. So:
    - ``experiment`` (a value the user gave: ``-P experiment=X`` or a config file's) naming another
      experiment than the run's is a UserError naming ``--experiment-name``; the launcher's run,
      which MLflow then ends FAILED, is tagged with that reason;
    - ``run_name`` (given by the user) renames the launcher's run (a run's name can change);
    - an explicit ``tracking_uri`` in which the launcher's run does not exist is a UserError naming
      MLFLOW_TRACKING_URI (the store `mlflow run` writes to).
    """
    attached = os.environ.get("MLFLOW_RUN_ID")
    if not attached:
        return
    import mlflow

    client = mlflow.MlflowClient(resolve_tracking_uri(tracking_uri))
    try:
        run = with_retries(client.get_run, attached)
    except Exception as error:
        if not tracking_uri:
            raise
        launcher_uri = redact(os.environ.get("MLFLOW_TRACKING_URI", ""))
        raise UserError(
            f"--tracking-uri {redact(tracking_uri)}: under `mlflow run` the run ({attached}) was created in "
            f"the launcher's store (MLFLOW_TRACKING_URI={launcher_uri!r}), "
            f"not in this one ({type(error).__name__}). Set MLFLOW_TRACKING_URI for `mlflow run` instead "
            "of passing tracking-uri."
        ) from error
    actual = with_retries(client.get_experiment, run.info.experiment_id).name
    if experiment and experiment != actual:
        message = (
            f"experiment={experiment!r} cannot apply under `mlflow run`: the launcher already created this "
            f"run in experiment {actual!r}, and MLflow cannot move a run. Choose the experiment with "
            f"`mlflow run . -e ENTRY --experiment-name {shlex.quote(experiment)} ...` (and drop "
            "-P experiment), or run `vlm-quant ENTRY --experiment ...` directly."
        )
        with shielded():
            try:
                with_retries(client.set_tag, attached, run_schema.TAG_FAILURE, f"UserError: {message}")
            except Exception as error:  # the message still reaches the user's terminal
                log.debug("reason not tagged on the launcher's run: %s", error)
        raise UserError(message)
    if run_name and run.data.tags.get("mlflow.runName") != redact(run_name):
        previous = run.data.tags.get("mlflow.runName")
        log.info("run %s renamed %r -> %r (run_name given)", attached, previous, run_name)
        with_retries(client.set_tag, attached, "mlflow.runName", redact(run_name))


def install_mlflow_logging() -> None:
    """Import mlflow for its logging set-up only (its "mlflow" logger handler, which does not propagate
    to the root), so the terminal can filter that handler; no tracking call is made."""
    import mlflow  # noqa: F401


@contextmanager
def open_run(
    experiment: str,
    run_name: str,
    *,
    tracking_uri: str | None = None,
    tags: Mapping[str, str] | None = None,
    resume_run_id: str | None = None,
    system_metrics_interval_s: float | None = None,
) -> Iterator[MlflowTracker]:
    """Open one MLflow run (attach to $MLFLOW_RUN_ID under `mlflow run`) and close it with the right status.

    ``resume_run_id`` reopens that (unfinished) run instead. FINISHED when the body returns; KILLED
    on KeyboardInterrupt or a handled signal (tag ``vlm_quant.signal``); FAILED on any other
    exception. The reason, type and message, goes to the tag ``vlm_quant.failure``. The exception is
    re-raised. Under `mlflow run`, the launcher's random name is replaced by ``run_name`` (a name given
    with ``--run-name`` is kept). ``system_metrics_interval_s`` turns on MLflow's system metrics (CPU,
    memory, GPU utilisation and memory: the run page's System metrics tab), sampled at that interval.
    """
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    run_name = redact(run_name)
    prepare_store(uri)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    attached = os.environ.get("MLFLOW_RUN_ID")
    system = {}
    if system_metrics_interval_s:
        mlflow.set_system_metrics_sampling_interval(system_metrics_interval_s)
        mlflow.set_system_metrics_samples_before_logging(1)
        system = {"log_system_metrics": True}
    if resume_run_id:
        run = _reopen(mlflow, client, resume_run_id, **system)
        if attached and attached != resume_run_id:  # `mlflow run -P resume=...`: point its run to ours
            with_retries(client.set_tag, attached, "vlm_quant.resumed_run_id", resume_run_id)
            with_retries(
                client.set_tag, attached, "mlflow.note.content",
                f"resume: the results are in run {resume_run_id} (the run resumed); this one stays empty.",
            )
            log.info("resume under `mlflow run`: results go to run %s; the launcher's run %s points to it",
                     resume_run_id, attached)
    elif attached:
        run = with_retries(mlflow.start_run, run_id=attached, **system)
        if is_generated_name(run.data.tags.get(TAG_RUN_NAME)):
            with_retries(mlflow.set_tag, TAG_RUN_NAME, run_name)
    else:
        experiment_id = _experiment_id(mlflow, experiment)
        run = with_retries(mlflow.start_run, experiment_id=experiment_id, run_name=run_name, **system)
    stop = threading.Event()
    try:
        tracker = MlflowTracker(run.info.run_id, uri)
        tracker.experiment_id = run.info.experiment_id
        tracker.set_tags(
            {TAG_HOST: socket.gethostname(), TAG_PID: os.getpid(), TAG_HEARTBEAT: utc_now(), **(tags or {})}
        )
        threading.Thread(target=_heartbeat, args=(client, tracker.run_id, stop), daemon=True).start()
        yield tracker
    except RunInterrupted as exc:
        stop.set()
        reason = f"RunInterrupted: {exc}"
        _close(mlflow, "KILLED", {run_schema.TAG_FAILURE: reason, TAG_SIGNAL: exc.signal_name})
        raise
    except KeyboardInterrupt:
        stop.set()
        reason = "KeyboardInterrupt: interrupted by the user"
        _close(mlflow, "KILLED", {run_schema.TAG_FAILURE: reason, TAG_SIGNAL: "SIGINT"})
        raise
    except BaseException as exc:
        stop.set()
        _close(mlflow, "FAILED", {run_schema.TAG_FAILURE: f"{type(exc).__name__}: {exc}"})
        raise
    else:
        stop.set()
        _close(mlflow, "FINISHED", {})
    finally:
        stop.set()


@contextmanager
def add_to_finished_run(
    run_id: str, *, failure_tag: str, tracking_uri: str | None = None
) -> Iterator[MlflowTracker]:
    """Reopen the FINISHED run ``run_id`` to add to it (`score run`), and leave it FINISHED whatever happens.

    Not a resume (`open_run(resume_run_id=...)`): the run's attempts, failure and resume count are left
    as they are. While open, the host/pid/heartbeat tags name this process, so `resume=auto` elsewhere
    does not take the briefly RUNNING run for an abandoned one. An exception is tagged ``failure_tag``
    (type and message) and re-raised; the run is FINISHED again either way. Under `mlflow run` the
    launcher's own run points to ``run_id``.
    """
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    attached = os.environ.get("MLFLOW_RUN_ID")
    ended_ms = with_retries(client.get_run, run_id).info.end_time
    run = with_retries(mlflow.start_run, run_id=run_id)
    try:
        if attached and attached != run_id:
            with_retries(client.set_tag, attached, "mlflow.note.content",
                         f"the results went to run {run_id}; this one stays empty.")
        tracker = MlflowTracker(run_id, uri)
        tracker.experiment_id = run.info.experiment_id
        tracker.set_tags({TAG_HOST: socket.gethostname(), TAG_PID: os.getpid(), TAG_HEARTBEAT: utc_now()})
        if failure_tag in run.data.tags:  # an earlier attempt's failure: this one starts clean
            with_retries(client.delete_tag, run_id, failure_tag)
        yield tracker
    except BaseException as exc:
        _close(mlflow, "FINISHED", {failure_tag: f"{type(exc).__name__}: {exc}"})
        raise
    else:
        _close(mlflow, "FINISHED", {})
    finally:
        _restore_end_time(client, run_id, ended_ms)


def _restore_end_time(client: Any, run_id: str, end_time_ms: int | None) -> None:
    """Put back the run's own end time, which `end_run` moved to now: its duration stays the evaluation's,
    not evaluation + however long it waited to be scored (the scoring time is in its own tag)."""
    if end_time_ms is None:
        return
    from mlflow.entities import RunStatus

    try:  # MlflowClient.update_run cannot set an end time; its store can (sqlite, REST alike)
        store = client._tracking_client.store
        with_retries(store.update_run_info, run_id, RunStatus.FINISHED, end_time_ms, None)
    except Exception as error:  # cosmetic: the run is FINISHED and complete either way
        log.warning("run %s keeps the scoring time as its end time: %s", run_id, error)


def download_logged_model(run_id: str, dst: str | Path, tracking_uri: str | None = None) -> Path:
    """Download the READY logged model of run ``run_id`` into ``dst``; UserError when it has none."""
    import mlflow

    from vlm_quant.errors import UserError

    uri = resolve_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(uri)
    try:
        run = with_retries(client.get_run, run_id)
    except Exception as error:
        raise UserError(f"no run {run_id!r} in {uri}: {str(error).splitlines()[0][:200]}") from error
    found = with_retries(
        client.search_logged_models, [run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
    )
    found = [m for m in found if str(m.status).endswith("READY")]
    if not found:
        raise UserError(f"run {run_id} has no logged model (was it run with log_model=false?)")
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=found[0].artifact_location, dst_path=str(dst), tracking_uri=uri
    )
    return Path(local)
