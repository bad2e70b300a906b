"""The tracking records of a sweep's children: finished, failed (with the reason), killed, where they ran.

Written by the sweep once a launcher reports a child's end (`ChildResult`), so every launcher records its
children the same way. A child normally opens and closes its own run; here the sweep finds that run (by
parent and config hash), closes it when the child died without doing so, creates a FAILED/KILLED record
when the child never opened one, logs where it ran, and tags the children whose machine-wide codecarbon
figures were shared with another child on the same host.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from vlm_quant.study.launchers.child import ChildJob, ChildResult
from vlm_quant.tracking import run_schema

if TYPE_CHECKING:
    from vlm_quant.study.sweep import SweepOutcome


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
