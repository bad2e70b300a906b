"""sweep: every precision configuration of one study as child runs of one parent run.

Each configuration runs `vlm-quant evaluate` in its own process, so GPU memory, allocator caches and
energy counters never leak from one configuration into the next. All children get the same resolved
config (written once to a YAML file) except `quant`, hence the same model, split ids, seed, prompt and
engine. A configuration that fails is recorded as failed and the sweep goes on. A configuration that
already has a FINISHED run with the same config hash in the experiment is skipped unless forced.
The sweep decides what runs; a launcher (`vlm_quant.study.launchers`: local, ray, slurm) decides where,
and `child_runs` records each child's end the same way whichever launcher ran it.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.quantize.presets import resolve_plan
from vlm_quant.study.child_runs import record_killed, record_result, tag_shared_hosts
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
