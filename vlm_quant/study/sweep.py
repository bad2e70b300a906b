"""sweep: every precision configuration of one study as child runs of one parent run.

Each configuration runs `vlm-quant evaluate` in its own process, so GPU memory, allocator caches and
energy counters never leak from one configuration into the next. All children get the same resolved
config (written once to a YAML file) except `quant`, hence the same model, split ids, seed, prompt and
engine. A configuration that fails is recorded as failed and the sweep goes on. A configuration that
already has a FINISHED run with the same config hash in the experiment is skipped unless forced.
"""

from __future__ import annotations

import dataclasses
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.quantize.presets import resolve_plan
from vlm_quant.study.launchers.child import ChildJob, ChildResult
from vlm_quant.study.launchers.local import LocalLauncher
from vlm_quant.tracking import run_schema


@dataclass
class SweepOutcome:
    """What happened to each configuration: 'finished', 'failed', 'skipped' or 'killed' (run ids, reasons)."""

    parent_run_id: str
    status: dict[str, str] = field(default_factory=dict)
    run_ids: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    launched: dict[str, dict[str, Any]] = field(default_factory=dict)  # quant -> host, gpu, start/end (s)

    @property
    def failed(self) -> list[str]:
        return [q for q, s in self.status.items() if s == "failed"]


def parse_quants(text: str) -> list[str]:
    """'fp16,int8, nf4' -> ['fp16', 'int8', 'nf4']; each must be a known preset, none repeated."""
    quants = [q.strip() for q in text.split(",") if q.strip()]
    if not quants:
        raise UserError("quants is empty: give a comma-separated list such as 'fp16,int8,nf4'.")
    if len(set(quants)) != len(quants):
        raise UserError(f"quants lists a preset twice: {text!r}.")
    for quant in quants:
        resolve_plan(quant)  # UserError naming the valid presets
    return quants


def finished_twin(client: Any, experiment_id: str, config_hash: str) -> str | None:
    """Run id of a FINISHED evaluate run with this config hash in the experiment, if any."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{run_schema.TAG_CONFIG_HASH}` = '{config_hash}' and attributes.status = 'FINISHED' "
            f"and tags.`{run_schema.TAG_KIND}` = 'evaluate'"
        ),
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def child_args(quant: str, parent_run_id: str, tracking_uri: str) -> tuple[str, ...]:
    """`vlm-quant evaluate` arguments of a child after ``--config FILE`` (built once, for every launcher)."""
    return (
        "--quant", quant, "--parent-run-id", parent_run_id, "--tracking-uri", tracking_uri, "--no-progress",
    )  # fmt: skip


def run_sweep(
    base: ExperimentConfig,
    quants: list[str],
    tracker: Any,
    *,
    force: bool = False,
    launcher: Any = None,
) -> SweepOutcome:
    """Run each quant preset of ``base`` as a child of ``tracker``'s (parent) run, where ``launcher``
    (default: `LocalLauncher`, one after another) runs them. Ctrl-C: every child that had not ended is
    marked KILLED, then KeyboardInterrupt propagates (the parent run ends KILLED)."""
    import mlflow

    launcher = launcher or LocalLauncher()
    client = mlflow.MlflowClient(tracker.tracking_uri)
    experiment_id = client.get_run(tracker.run_id).info.experiment_id
    outcome = SweepOutcome(tracker.run_id)
    shared = dataclasses.replace(base, experiment=client.get_experiment(experiment_id).name, run_name="")
    tracker.set_tags({run_schema.TAG_KIND: "sweep", "vlm_quant.sweep_quants": ",".join(quants)})
    tracker.log_params(
        {k: v for k, v in shared.to_dict().items() if k != "quant"}
        | {"quants": ",".join(quants), run_schema.PARAM_LAUNCHER: launcher.name}
    )
    with tempfile.TemporaryDirectory(prefix="vlmq-sweep-") as tmp:
        config_file = Path(tmp) / "sweep_config.yaml"
        config_file.write_text(shared.to_yaml())
        tracker.log_file(config_file, "config")
    jobs = [
        job
        for quant in quants
        if (job := plan_one(client, experiment_id, shared, quant, tracker, outcome, force))
    ]
    results: dict[str, ChildResult] = {}

    def record(result: ChildResult) -> None:
        results[result.quant] = result
        job = next(j for j in jobs if j.quant == result.quant)
        record_result(client, experiment_id, tracker.run_id, job, result, outcome, launcher.name)

    try:
        launcher.run(jobs, record)
    except KeyboardInterrupt:
        for job in jobs:
            if job.quant not in results:
                record_killed(client, experiment_id, tracker.run_id, job, outcome)
        raise
    finally:
        tag_shared_hosts(client, outcome, list(results.values()))
        log_outcome(tracker, outcome)
    return outcome


def log_outcome(tracker: Any, outcome: SweepOutcome) -> None:
    statuses = ("finished", "failed", "skipped", "killed")
    counts = {s: sum(v == s for v in outcome.status.values()) for s in statuses}
    tracker.log_metrics({f"n_{status}": n for status, n in counts.items()})
    tracker.log_json(
        {
            "status": outcome.status,
            "run_ids": outcome.run_ids,
            "reasons": outcome.reasons,
            "launched": outcome.launched,
        },
        "sweep/outcome.json",
    )


def plan_one(
    client: Any,
    experiment_id: str,
    shared: ExperimentConfig,
    quant: str,
    tracker: Any,
    outcome: SweepOutcome,
    force: bool,
) -> ChildJob | None:
    """One configuration: None when a finished twin makes it skip, else the job that evaluates it."""
    config_hash = dataclasses.replace(shared, quant=quant).config_hash()
    twin = None if force else finished_twin(client, experiment_id, config_hash)
    if twin:
        outcome.status[quant], outcome.run_ids[quant] = "skipped", twin
        outcome.reasons[quant] = f"finished run {twin} has the same config hash {config_hash}"
        print(f"[sweep] {quant}: skipped, {outcome.reasons[quant]}", flush=True)
        return None
    print(f"[sweep] {quant}: to evaluate in a child process", flush=True)
    return ChildJob(
        quant, config_hash, shared.to_yaml(), child_args(quant, tracker.run_id, tracker.tracking_uri)
    )


def record_result(
    client: Any,
    experiment_id: str,
    parent_run_id: str,
    job: ChildJob,
    result: ChildResult,
    outcome: SweepOutcome,
    launcher: str,
) -> None:
    """A child ended: FINISHED with exit status 0 and a run, else FAILED with its reason (a child
    that died without closing its run, e.g. SIGKILL, gets it closed FAILED). Where it ran: params."""
    quant = job.quant
    outcome.launched[quant] = {
        "host": result.host,
        "cuda_visible_devices": result.gpu,
        "started_unix_s": result.started_unix_s,
        "ended_unix_s": result.ended_unix_s,
    }
    child = latest_child(client, experiment_id, parent_run_id, job.config_hash)
    if result.returncode == 0 and child is not None:
        outcome.status[quant], outcome.run_ids[quant] = "finished", child
        print(f"[sweep] {quant}: finished (run {child})", flush=True)
    else:
        reason = failure_reason(result)
        outcome.status[quant], outcome.reasons[quant] = "failed", reason
        if child is None:  # failed before its run opened (bad input): record a FAILED child run anyway
            child = record_failed_child(client, experiment_id, parent_run_id, quant, job.config_hash, reason)
        else:
            close_if_open(client, child, "FAILED", reason)
        outcome.run_ids[quant] = child
        print(f"[sweep] {quant}: FAILED ({reason}); the sweep goes on", flush=True)
    log_launch_params(client, child, result, launcher)


def log_launch_params(client: Any, run_id: str, result: ChildResult, launcher: str) -> None:
    params = {run_schema.PARAM_LAUNCHER: launcher, run_schema.PARAM_LAUNCH_HOST: result.host}
    if result.gpu is not None:
        params[run_schema.PARAM_LAUNCH_GPUS] = result.gpu
    for key, value in params.items():
        client.log_param(run_id, key, value)


def record_killed(
    client: Any, experiment_id: str, parent_run_id: str, job: ChildJob, outcome: SweepOutcome
) -> None:
    """Ctrl-C: the child's run (or, when it never started, a record of it) ends KILLED."""
    reason = "the sweep was interrupted (Ctrl-C) before this configuration ended"
    child = latest_child(client, experiment_id, parent_run_id, job.config_hash)
    if child is None:
        child = record_failed_child(
            client, experiment_id, parent_run_id, job.quant, job.config_hash, reason, status="KILLED"
        )
    else:
        close_if_open(client, child, "KILLED", reason)
    outcome.status[job.quant], outcome.run_ids[job.quant], outcome.reasons[job.quant] = (
        "killed",
        child,
        reason,
    )
    print(f"[sweep] {job.quant}: KILLED ({reason})", flush=True)


def close_if_open(client: Any, run_id: str, status: str, reason: str) -> None:
    """End a run still RUNNING (its process died without closing it) with ``status`` and the reason."""
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_tag(run_id, run_schema.TAG_FAILURE, reason[:5000])
        client.set_terminated(run_id, status)


def tag_shared_hosts(client: Any, outcome: SweepOutcome, results: list[ChildResult]) -> None:
    """Tag each child that overlapped in time with another child on the same host: codecarbon's CPU and
    RAM figures are the whole machine's, so they include the other child's load (NVML energy is per
    board and stays its own)."""
    for quant, others in shared_hosts(results).items():
        run_id = outcome.run_ids.get(quant)
        if run_id and others:
            host = next(r.host for r in results if r.quant == quant)
            client.set_tag(
                run_id, run_schema.TAG_CODECARBON_SHARED, f"shared with {', '.join(others)} on {host}"
            )


def shared_hosts(results: list[ChildResult]) -> dict[str, list[str]]:
    """quant -> the presets of the other children that ran on its host while it ran (intervals overlap)."""
    return {
        a.quant: [
            b.quant
            for b in results
            if b.quant != a.quant
            and b.host == a.host
            and a.started_unix_s < b.ended_unix_s
            and b.started_unix_s < a.ended_unix_s
        ]
        for a in results
    }


def latest_child(client: Any, experiment_id: str, parent_run_id: str, config_hash: str) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent_run_id}' "
            f"and tags.`{run_schema.TAG_CONFIG_HASH}` = '{config_hash}'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def record_failed_child(
    client: Any,
    experiment_id: str,
    parent_run_id: str,
    quant: str,
    config_hash: str,
    reason: str,
    status: str = "FAILED",
) -> str:
    run = client.create_run(
        experiment_id,
        run_name=f"{quant} ({status.lower()})",
        tags={
            "mlflow.parentRunId": parent_run_id,
            run_schema.TAG_KIND: "evaluate",
            run_schema.TAG_CONFIG_HASH: config_hash,
            run_schema.TAG_FAILURE: reason[:5000],
        },
    )
    client.log_param(run.info.run_id, "quant", quant)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def failure_reason(result: ChildResult) -> str:
    """Why a child failed: the signal that killed it (the OOM killer's SIGKILL prints nothing), else its
    `error:` line, else its last line, else its exit status."""
    code = result.returncode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the child process was killed by {name} (exit status {code})"
    return last_error_line(result.stderr_tail) or f"exit status {code}"


def last_error_line(stderr: str) -> str:
    """The user-facing message of a failed child: its `error:` line, else the last non-empty line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return lines[-1] if lines else ""
