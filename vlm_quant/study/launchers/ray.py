"""The Ray launcher: one Ray task per configuration, each evaluating in a child process of its worker.

Ray schedules (this module does not): a task asks for one GPU (``num_gpus=1``) when the cluster has
GPUs, and Ray sets CUDA_VISIBLE_DEVICES in the worker to the GPU it assigned, which `run_child` hands to
the child and reports. On a cluster without GPUs a task asks for one CPU instead, so as many children run
at once as the cluster has CPUs. Workers' stdout/stderr are streamed to the sweep's terminal by Ray.
``address`` is ``auto`` (the running cluster of this machine), ``ray://host:port`` (a remote cluster
through Ray Client) or None (connect to an already initialised Ray, else start a local one).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from vlm_quant.errors import UserError
from vlm_quant.study.launchers.child import ChildJob, ChildResult, run_child

CANCEL_WAIT_S = 60.0  # how long Ctrl-C waits for cancelled tasks to stop their children


class RayLauncher:
    """Runs each configuration as a Ray task (see the module docstring)."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.address = address or None

    def connect(self) -> Any:
        """The `ray` module, initialised: reuse a running driver connection, else connect or start."""
        try:
            import ray
        except ImportError as error:
            raise UserError("--launcher ray needs Ray: pip install 'vlm-quant[ray]'.") from error
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=True)
        return ray

    def nodes(self) -> list[str]:
        """Addresses of the cluster's alive nodes (connects first)."""
        ray = self.connect()
        return [node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")]

    def run(self, jobs: Sequence[ChildJob], record: Callable[[ChildResult], None]) -> None:
        """Submit every job, call ``record`` as each ends; on Ctrl-C cancel the tasks (each stops its
        child with SIGINT, so the child ends its run KILLED) and re-raise."""
        ray = self.connect()
        task = ray.remote(run_child).options(max_retries=0, **task_resources(ray.cluster_resources()))
        by_ref = {task.remote(job): job for job in jobs}
        pending = list(by_ref)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    record(task_result(ray, ref, by_ref[ref]))
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)  # KeyboardInterrupt inside the task: `run_child` stops its child
            ray.wait(pending, num_returns=len(pending), timeout=CANCEL_WAIT_S)
            raise


def task_resources(cluster: dict[str, float]) -> dict[str, float]:
    """One GPU per task on a cluster with GPUs, else one CPU (e.g. two children at once on 2 cores)."""
    return {"num_gpus": 1, "num_cpus": 0} if cluster.get("GPU", 0) >= 1 else {"num_cpus": 1}


def task_result(ray: Any, ref: Any, job: ChildJob) -> ChildResult:
    """The task's `ChildResult`, or one without exit status when Ray lost the task (worker died...)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        now = time.time()
        reason = f"Ray task failed: {type(error).__name__}: {str(error).strip().splitlines()[-1:]}"
        return ChildResult(job.quant, None, reason, socket.gethostname(), None, now, now)
