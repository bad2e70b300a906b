"""The local launcher: children on this machine, one after another, or one per GPU at a time.

Without GPUs given, children run one after another (the sweep's behaviour before launchers existed).
With ``gpus=["0", "1", ...]`` a `concurrent.futures.ThreadPoolExecutor` with one worker per GPU runs
them, each worker taking a free GPU id from a queue for the length of one child, so no two children
share a GPU and every GPU stays busy while configurations remain.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from vlm_quant.study.launchers.child import ChildJob, ChildResult, run_child, stop_all


class LocalLauncher:
    """Runs children on this machine; ``gpus`` None: one at a time with the sweep's own devices."""

    name = "local"

    def __init__(self, gpus: Sequence[str] | None = None) -> None:
        self.gpus = list(gpus) if gpus else None

    def run(self, jobs: Sequence[ChildJob], record: Callable[[ChildResult], None]) -> None:
        """Call ``record`` with each child's result as it ends. On Ctrl-C the running children end on
        their SIGINT (`stop_all`), queued ones never start, and KeyboardInterrupt propagates: the sweep
        marks every unrecorded job KILLED."""
        if not self.gpus:
            for job in jobs:
                record(run_child(job))
            return
        free: queue.Queue[str] = queue.Queue()
        for gpu in self.gpus:
            free.put(gpu)
        with ThreadPoolExecutor(max_workers=len(self.gpus), thread_name_prefix="vlmq-child") as pool:
            futures = [pool.submit(on_free_gpu, job, free) for job in jobs]
            try:
                for future in as_completed(futures):
                    record(future.result())
            except KeyboardInterrupt:
                for future in futures:
                    future.cancel()
                stop_all()
                raise


def on_free_gpu(job: ChildJob, free: queue.Queue[str]) -> ChildResult:
    """Run ``job`` on a GPU taken from ``free`` and give it back when the child ends."""
    gpu = free.get()
    try:
        return run_child(job, gpu=gpu)
    finally:
        free.put(gpu)
