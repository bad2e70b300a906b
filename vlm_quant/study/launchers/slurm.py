"""The SLURM launcher: one submitit array job, one array task per configuration.

submitit writes the sbatch script, pickles `run_child` with its job, submits the array and collects each
task's `ChildResult` (logs in ``folder``). SLURM sets CUDA_VISIBLE_DEVICES for the task's GPUs. The same
code path runs on this machine with ``cluster="local"`` (submitit's LocalExecutor: each task a local
process, no sbatch), which the tests use. While waiting, one progress line per state change.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vlm_quant.errors import UserError
from vlm_quant.study.launchers.child import ChildJob, ChildResult, run_child

POLL_S = {"slurm": 5.0, "local": 0.5}  # how often the array's state is read (sacct for SLURM)


class SlurmLauncher:
    """Runs the configurations as a SLURM array through submitit.

    ``time_min`` is the array tasks' time limit in minutes; ``sbatch`` extra ``#SBATCH`` options
    (``{"account": "lab", "qos": "high"}``); ``cluster`` "slurm", or "local" for submitit's local executor.
    """

    name = "slurm"

    def __init__(
        self,
        folder: str | Path,
        *,
        partition: str | None = None,
        gpus_per_task: int | None = None,
        time_min: int = 240,
        sbatch: dict[str, str] | None = None,
        cluster: str = "slurm",
    ) -> None:
        self.folder = Path(folder)
        self.partition, self.gpus_per_task, self.time_min = partition, gpus_per_task, time_min
        self.sbatch, self.cluster = dict(sbatch or {}), cluster

    def executor(self, n_tasks: int) -> Any:
        try:
            import submitit
        except ImportError as error:
            raise UserError("--launcher slurm needs submitit: pip install 'vlm-quant[slurm]'.") from error
        executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster=self.cluster)
        parameters: dict[str, Any] = {
            "name": "vlmq-sweep",
            "timeout_min": self.time_min,
            "slurm_array_parallelism": n_tasks,
            "slurm_partition": self.partition,
            "slurm_gpus_per_task": self.gpus_per_task,
            "slurm_additional_parameters": self.sbatch or None,
        }
        executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
        return executor

    def run(self, jobs: Sequence[ChildJob], record: Callable[[ChildResult], None]) -> None:
        """Submit the array, record each task's result as it ends; on Ctrl-C cancel (scancel) the tasks
        still queued or running and re-raise."""
        tasks = self.executor(len(jobs)).map_array(run_child, list(jobs))
        print(f"[sweep] slurm: array {tasks[0].job_id.split('_')[0]}, {len(tasks)} tasks, logs in "
              f"{self.folder}", flush=True)  # fmt: skip
        waiting = dict(zip(tasks, jobs))
        try:
            last = ""
            while waiting:
                for task in [t for t in waiting if t.done()]:
                    record(task_result(task, waiting.pop(task)))
                line = progress_line(tasks, len(waiting))
                if line != last:
                    print(line, file=sys.stderr, flush=True)
                    last = line
                if waiting:
                    time.sleep(POLL_S[self.cluster])
        except KeyboardInterrupt:
            for task in waiting:
                task.cancel(check=False)
            raise


def progress_line(tasks: Sequence[Any], n_waiting: int) -> str:
    """``[sweep] slurm: 1/3 done; RUNNING 2`` (states as SLURM, or the local executor, reports them)."""
    states: dict[str, int] = {}
    for task in tasks:
        if not task.done():
            states[task.state] = states.get(task.state, 0) + 1
    detail = ", ".join(f"{state} {n}" for state, n in sorted(states.items()))
    return f"[sweep] slurm: {len(tasks) - n_waiting}/{len(tasks)} done" + (f"; {detail}" if detail else "")


def task_result(task: Any, job: ChildJob) -> ChildResult:
    """The array task's `ChildResult`, or one without exit status when the task itself failed (time
    limit, node failure, cancelled): the reason is submitit's last line about it."""
    try:
        return task.result()
    except Exception as error:  # submitit raises FailedJobError / UncompletedJobError with the log tail
        now = time.time()
        lines = [line for line in str(error).splitlines() if line.strip()]
        reason = f"SLURM task {task.job_id} failed: {lines[0] if lines else type(error).__name__}"
        return ChildResult(job.quant, None, reason, socket.gethostname(), None, now, now)


def parse_time_min(text: str) -> int:
    """SLURM's time limit as minutes: '90' -> 90, '02:30:00' -> 150, '1-00:00:00' -> 1440."""
    try:
        days, _, clock = text.rpartition("-")
        parts = [int(p) for p in clock.split(":")]
        if len(parts) == 1:
            minutes = parts[0]
        else:
            hours, mins, secs = ([0] * (3 - len(parts)) + parts)[-3:]
            minutes = hours * 60 + mins + (1 if secs else 0)
        minutes += int(days or 0) * 24 * 60
    except ValueError as error:
        raise UserError(f"--slurm-time {text!r}: give minutes (90) or [D-]HH:MM:SS (02:30:00).") from error
    if minutes <= 0:
        raise UserError(f"--slurm-time {text!r}: the time limit must be positive.")
    return minutes


def parse_sbatch(text: str) -> dict[str, str]:
    """'account=lab,qos=high' -> {'account': 'lab', 'qos': 'high'} (extra #SBATCH --key=value lines)."""
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--slurm-sbatch {item!r}: give key=value pairs, e.g. 'account=lab,qos=high'.")
        options[key.strip().lstrip("-")] = value.strip()
    return options
