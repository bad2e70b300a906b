"""Which run `resume` reopens: a given run id, or 'auto' (the latest unfinished twin of this config).

`resume=RUN_ID` reopens that run, which must be an unfinished (FAILED, KILLED or abandoned RUNNING)
evaluate run of the same configuration; a different configuration is an error naming the keys that
differ. `resume=auto` picks the latest unfinished evaluate run with the same `vlm_quant.config_hash`
in the experiment, or starts a new run when there is none.

A RUNNING run is abandoned, hence resumable, when its process is gone: on this host its pid
(tag `vlm_quant.pid`) no longer exists; on another host its heartbeat tag (refreshed every minute
while a run is open) is older than STALE_AFTER_S. A RUNNING run that is alive is never taken over.
The samples already predicted are read from the run's `predictions/partial.jsonl` by the quality pass.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.tracking import run_schema
from vlm_quant.tracking.redact import MASK
from vlm_quant.tracking.tracker import TAG_HEARTBEAT, TAG_HOST, TAG_PID, store_client, with_retries

log = logging.getLogger(__name__)

AUTO = "auto"
UNFINISHED = ("FAILED", "KILLED", "RUNNING", "SCHEDULED")
# Keys that do not change a result: they may differ between a run and its resumption.
NOT_COMPARED = ("experiment", "run_name", "log_model", "resume", "register", "score")
STALE_AFTER_S = float(os.environ.get("VLM_QUANT_STALE_RUN_S", "600"))


@dataclass(frozen=True)
class ResumeTarget:
    """The run to reopen and why it qualifies."""

    run_id: str
    status: str
    reason: str


def config_key(cfg: ExperimentConfig) -> str:
    """The config hash a run is tagged with: the same for a run and its resumptions."""
    return dataclasses.replace(cfg, resume="").config_hash()


def find_resume_target(cfg: ExperimentConfig, tracking_uri: str | None = None) -> ResumeTarget | None:
    """The run ``cfg.resume`` designates (None: start a new run); UserError when it cannot be resumed."""
    if not cfg.resume:
        return None
    client = store_client(tracking_uri)
    if cfg.resume == AUTO:
        return latest_unfinished(client, cfg)
    try:
        run = with_retries(client.get_run, cfg.resume)
    except Exception as error:
        raise UserError(f"resume={cfg.resume}: no such run in the tracking store ({error}).") from error
    check_resumable(run)
    check_same_config(client, run, cfg)
    return ResumeTarget(run.info.run_id, run.info.status, "given")


def latest_unfinished(client: Any, cfg: ExperimentConfig) -> ResumeTarget | None:
    """The newest FAILED/KILLED/abandoned-RUNNING evaluate run of this config in the experiment.

    The experiment is the one the new attempt's run would be in: under `mlflow run`, the launcher's
    (``--experiment-name``/``-id``; `check_launcher_run` refuses a different ``experiment``), never
    also the config's default experiment, so a twin elsewhere is not taken over; else ``cfg.experiment``.
    """
    experiment_ids = []
    if os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run`
        attached = with_retries(client.get_run, os.environ["MLFLOW_RUN_ID"])
        experiment_ids.append(attached.info.experiment_id)
    else:
        experiment = with_retries(client.get_experiment_by_name, cfg.experiment)
        if experiment is not None:
            experiment_ids.append(experiment.experiment_id)
    if not experiment_ids:
        log.info("resume=auto: experiment %r does not exist yet; starting a new run", cfg.experiment)
        return None
    runs = with_retries(
        client.search_runs,
        sorted(set(experiment_ids)),
        filter_string=(
            f"tags.`{run_schema.TAG_CONFIG_HASH}` = '{config_key(cfg)}' "
            f"and tags.`{run_schema.TAG_KIND}` = 'evaluate'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    for run in runs:
        if run.info.status not in UNFINISHED:
            continue
        alive = liveness(run)
        if alive:
            log.info("resume=auto: run %s is RUNNING and alive (%s); not taken over", run.info.run_id, alive)
            continue
        return ResumeTarget(run.info.run_id, run.info.status, f"latest unfinished run ({run.info.status})")
    log.info("resume=auto: no unfinished run with config hash %s; starting a new run", config_key(cfg))
    return None


def check_resumable(run: Any) -> None:
    status, run_id = run.info.status, run.info.run_id
    kind = run.data.tags.get(run_schema.TAG_KIND)
    if kind not in (None, "evaluate"):
        raise UserError(f"resume={run_id}: that is a {kind} run; only evaluate runs can be resumed.")
    if status == "FINISHED":
        raise UserError(f"resume={run_id}: the run is FINISHED; there is nothing to resume.")
    alive = liveness(run)
    if alive:
        raise UserError(f"resume={run_id}: the run is still RUNNING ({alive}); stop it first.")


def liveness(run: Any) -> str:
    """Why a RUNNING run looks alive ('' when it is not RUNNING or its process is gone)."""
    if run.info.status != "RUNNING":
        return ""
    tags = run.data.tags
    host, pid = tags.get(TAG_HOST), tags.get(TAG_PID)
    if host == socket.gethostname() and pid and pid.isdigit():
        return f"process {pid} on this host exists" if process_exists(int(pid)) else ""
    age = heartbeat_age_s(tags.get(TAG_HEARTBEAT))
    if age is not None and age < STALE_AFTER_S:
        return f"heartbeat {age:.0f} s ago from host {host}"
    return ""


def process_exists(pid: int) -> bool:
    """True when ``pid`` is a live (not zombie) process on this host."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def heartbeat_age_s(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        then = datetime.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return (datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()


def check_same_config(client: Any, run: Any, cfg: ExperimentConfig) -> None:
    """UserError naming every key whose value differs between the run's config and ``cfg``."""
    if run.data.tags.get(run_schema.TAG_CONFIG_HASH) == config_key(cfg):
        return
    logged = logged_config(client, run)
    if logged is None:
        raise UserError(
            f"resume={run.info.run_id}: the run's config hash "
            f"{run.data.tags.get(run_schema.TAG_CONFIG_HASH, '(none)')} differs from this config's "
            f"{config_key(cfg)}, and the run has no resolved config to say which keys differ."
        )
    mine = cfg.to_dict()
    differing = [
        f"{key} (run: {logged.get(key)!r}, now: {mine.get(key)!r})"
        for key in mine
        if key not in NOT_COMPARED
        and key in logged
        and logged.get(key) != mine.get(key)
        and MASK not in str(logged.get(key))  # a redacted value cannot be compared, the hash did
    ]
    differing += [f"{key} (only in the run)" for key in logged if key not in mine]
    if not differing:
        differing = ["a value logged redacted (e.g. a token in a path or dataset id)"]
    raise UserError(
        f"resume={run.info.run_id}: this config differs from the run's in {len(differing)} key(s): "
        + "; ".join(differing)
        + ". Resume with the run's own settings, or start a new run (resume='')."
    )


def logged_config(client: Any, run: Any) -> dict[str, Any] | None:
    """The run's `config/resolved_config.yaml` as a dict, or None when the run never logged it."""
    try:
        with tempfile.TemporaryDirectory(prefix="vlmq-cfg-") as tmp:
            local = client.download_artifacts(run.info.run_id, run_schema.ARTIFACT_CONFIG, tmp)
            data = yaml.safe_load(Path(local).read_text())
    except Exception:  # not logged (the run failed before), or unreadable
        return None
    return data if isinstance(data, dict) else None
