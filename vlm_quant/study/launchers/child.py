"""One sweep configuration as a child process: the job every launcher runs, wherever it runs it.

The sweep builds each child's command line once (`ChildJob`); a launcher only decides where and when
`run_child` is called (this process's pool, a Ray worker, a SLURM array task). The child's stderr is
streamed line by line, prefixed with its preset so that parallel children stay readable, and its last
lines are kept for the failure reason. Where it ran (host, the CUDA_VISIBLE_DEVICES it saw) and when
(wall-clock seconds since the epoch, so intervals of children on different processes compare) come back
in the `ChildResult`.
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STDERR_TAIL_LINES = 400  # enough for a traceback; the full stream was already printed
LIVE: set[subprocess.Popen] = set()  # children of this process that have not been waited for yet


@dataclass(frozen=True)
class ChildJob:
    """One configuration to evaluate: its preset, config hash, the shared config (YAML text, written to
    a file where the child runs: a cluster node may not see the sweep's temporary folder) and the
    `vlm-quant evaluate` arguments that follow ``--config FILE``."""

    quant: str
    config_hash: str
    config_yaml: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class ChildResult:
    """How one child ended: exit status (None: it never started or was cancelled), where and when it ran.

    ``started_unix_s``/``ended_unix_s`` are wall-clock seconds since the epoch (time.time()) around the
    child process; ``gpu`` is the CUDA_VISIBLE_DEVICES it was given (None: none was set).
    """

    quant: str
    returncode: int | None
    stderr_tail: str
    host: str
    gpu: str | None
    started_unix_s: float
    ended_unix_s: float


def run_child(job: ChildJob, gpu: str | None = None) -> ChildResult:
    """Run ``job`` to its end in a child process; ``gpu`` (or the CUDA_VISIBLE_DEVICES already set, as
    Ray and SLURM set it) is the devices it sees. Ctrl-C (KeyboardInterrupt) interrupts the child
    (SIGINT, so it marks its own run KILLED), waits for it, and re-raises."""
    env = child_environment()
    if gpu is None:
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    with tempfile.TemporaryDirectory(prefix="vlmq-child-") as tmp:
        config_file = Path(tmp) / "sweep_config.yaml"
        config_file.write_text(job.config_yaml)
        argv = [sys.executable, "-m", "vlm_quant", "evaluate", "--config", str(config_file), *job.args]
        started = time.time()
        returncode = stream(argv, env, job.quant, tail)
    return ChildResult(job.quant, returncode, "".join(tail), socket.gethostname(), gpu, started, time.time())


def child_environment() -> dict[str, str]:
    """This process's environment without MLFLOW_RUN_ID, so a child opens its own run, not the parent's.

    The environment of the process that runs the child (a Ray worker, a SLURM task), not the sweep's:
    PATH and the interpreter belong to the node."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}


def stream(argv: list[str], env: dict[str, str], quant: str, tail: collections.deque[str]) -> int:
    """Run ``argv``, echoing its stderr prefixed with ``[quant]`` and keeping the last lines in ``tail``."""
    process = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True, bufsize=1)
    LIVE.add(process)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            tail.append(line)
            sys.stderr.write(f"[{quant}] {line}")
            sys.stderr.flush()
        return process.wait()
    except KeyboardInterrupt:
        stop_all()
        raise
    finally:
        LIVE.discard(process)


def stop_all(own_s: float = 5.0, grace_s: float = 30.0) -> None:
    """End every live child of this process: each gets ``own_s`` to end on the terminal's own SIGINT
    (a terminal signals the whole process group); then SIGINT (it ends its run KILLED), then SIGKILL
    for one still there ``grace_s`` later. Two signals would make a child abandon its current batch."""
    processes = list(LIVE)
    for send, wait_s in ((None, own_s), (signal.SIGINT, grace_s), (signal.SIGKILL, grace_s)):
        alive = [p for p in processes if p.poll() is None]
        for process in alive:
            if send is not None:
                process.send_signal(send)
        deadline = time.monotonic() + wait_s
        for process in alive:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
