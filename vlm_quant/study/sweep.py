"""sweep: every precision configuration of one study as child runs of one parent run.

Each configuration runs `vlm-quant evaluate` in its own process, so GPU memory, allocator caches and
energy counters never leak from one configuration into the next. All children get the same resolved
config (written once to a YAML file) except `quant`, hence the same model, split ids, seed, prompt and
engine. A configuration that fails is recorded as failed and the sweep goes on. A configuration that
already has a FINISHED run with the same config hash in the experiment is skipped unless forced.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.quantize.presets import resolve_plan
from vlm_quant.tracking import run_schema


@dataclass
class SweepOutcome:
    """What happened to each configuration: 'finished', 'failed' or 'skipped' (with run ids / reasons)."""

    parent_run_id: str
    status: dict[str, str] = field(default_factory=dict)
    run_ids: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

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


def child_command(config_file: Path, quant: str, parent_run_id: str, tracking_uri: str) -> list[str]:
    return [
        sys.executable, "-m", "vlm_quant", "evaluate", "--config", str(config_file), "--quant", quant,
        "--parent-run-id", parent_run_id, "--tracking-uri", tracking_uri, "--no-progress",
    ]  # fmt: skip


def child_environment() -> dict[str, str]:
    """The sweep's environment without MLFLOW_RUN_ID, so a child opens its own run, not the parent's."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}


def run_sweep(
    base: ExperimentConfig, quants: list[str], tracker: Any, *, force: bool = False
) -> SweepOutcome:
    """Run each quant preset of ``base`` as a child of ``tracker``'s (parent) run."""
    import mlflow

    client = mlflow.MlflowClient(tracker.tracking_uri)
    experiment_id = client.get_run(tracker.run_id).info.experiment_id
    outcome = SweepOutcome(tracker.run_id)
    shared = dataclasses.replace(base, experiment=client.get_experiment(experiment_id).name, run_name="")
    tracker.set_tags({run_schema.TAG_KIND: "sweep", "vlm_quant.sweep_quants": ",".join(quants)})
    tracker.log_params(
        {k: v for k, v in shared.to_dict().items() if k != "quant"} | {"quants": ",".join(quants)}
    )
    with tempfile.TemporaryDirectory(prefix="vlmq-sweep-") as tmp:
        config_file = Path(tmp) / "sweep_config.yaml"
        config_file.write_text(shared.to_yaml())
        tracker.log_file(config_file, "config")
        for quant in quants:
            run_one(client, experiment_id, shared, quant, config_file, tracker, outcome, force)
    counts = {s: sum(v == s for v in outcome.status.values()) for s in ("finished", "failed", "skipped")}
    tracker.log_metrics({f"n_{status}": n for status, n in counts.items()})
    tracker.log_json(
        {"status": outcome.status, "run_ids": outcome.run_ids, "reasons": outcome.reasons},
        "sweep/outcome.json",
    )
    return outcome


def run_one(
    client: Any,
    experiment_id: str,
    shared: ExperimentConfig,
    quant: str,
    config_file: Path,
    tracker: Any,
    outcome: SweepOutcome,
    force: bool,
) -> None:
    """One configuration: skip a finished twin, else evaluate it in a child process."""
    config_hash = dataclasses.replace(shared, quant=quant).config_hash()
    twin = None if force else finished_twin(client, experiment_id, config_hash)
    if twin:
        outcome.status[quant], outcome.run_ids[quant] = "skipped", twin
        outcome.reasons[quant] = f"finished run {twin} has the same config hash {config_hash}"
        print(f"[sweep] {quant}: skipped, {outcome.reasons[quant]}", flush=True)
        return
    print(f"[sweep] {quant}: evaluating in a child process", flush=True)
    done = subprocess.run(
        child_command(config_file, quant, tracker.run_id, tracker.tracking_uri),
        env=child_environment(),
        stderr=subprocess.PIPE,
        text=True,
    )
    sys.stderr.write(done.stderr[-20000:])
    child = latest_child(client, experiment_id, tracker.run_id, config_hash)
    if done.returncode == 0 and child is not None:
        outcome.status[quant], outcome.run_ids[quant] = "finished", child
        return
    reason = last_error_line(done.stderr) or f"exit status {done.returncode}"
    outcome.status[quant], outcome.reasons[quant] = "failed", reason
    if child is None:  # failed before its run opened (bad input): record a FAILED child run anyway
        child = record_failed_child(client, experiment_id, tracker.run_id, quant, config_hash, reason)
    outcome.run_ids[quant] = child
    print(f"[sweep] {quant}: FAILED ({reason}); the sweep goes on", flush=True)


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
    client: Any, experiment_id: str, parent_run_id: str, quant: str, config_hash: str, reason: str
) -> str:
    run = client.create_run(
        experiment_id,
        run_name=f"{quant} (failed)",
        tags={
            "mlflow.parentRunId": parent_run_id,
            run_schema.TAG_KIND: "evaluate",
            run_schema.TAG_CONFIG_HASH: config_hash,
            run_schema.TAG_FAILURE: reason[:5000],
        },
    )
    client.log_param(run.info.run_id, "quant", quant)
    client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


def last_error_line(stderr: str) -> str:
    """The user-facing message of a failed child: its `error:` line, else the last non-empty line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return lines[-1] if lines else ""
