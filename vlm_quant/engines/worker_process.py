"""How an input-pipeline worker process lives: at a lower priority, never longer than its parent, and deaf
to the signals a terminal or a job scheduler sends to the whole process group.

- **Dies with its parent.** A worker blocked writing a prepared batch to its parent outlives a parent
  killed with ``kill -9`` (parent pid 1, the model's pages and the store's file handles held). On Linux
  the worker asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); a parent
  that died before that request is caught by comparing ``os.getppid()`` with the pid it had at fork.
  (The kernel sends it when the parent *thread* that forked the worker ends: the DataLoader is iterated
  on the main thread.)
- **Leaves SIGINT and SIGTERM to the main process.** Ctrl-C, ``timeout`` and a cluster's job cancel
  signal the whole process group; a worker that died of the signal first made the main process fail
  ("DataLoader worker (pid ...) is killed by signal") instead of finishing the batch in flight and
  ending the run KILLED (`vlm_quant.run.interrupts`). The main process shuts its workers down.
- **Lower CPU priority** (``nice``): where the model computes on the CPU the workers take the cores only
  when its threads wait, instead of slowing its matmuls.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from dataclasses import dataclass

WORKER_NICENESS = 10
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PR_GET_PDEATHSIG = 2
LEFT_TO_PARENT = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class WorkerInit:
    """DataLoader ``worker_init_fn``; ``parent_pid``: the pid of the process creating the loader."""

    parent_pid: int

    def __call__(self, worker_id: int) -> None:
        die_with_parent(self.parent_pid)
        if threading.current_thread() is threading.main_thread():  # (a forked worker's only thread)
            for signum in LEFT_TO_PARENT:
                signal.signal(signum, signal.SIG_IGN)
        os.nice(WORKER_NICENESS)


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux); if it already has, die now."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent_pid:  # the parent died between the fork and the request above
        os.kill(os.getpid(), signal.SIGKILL)


def parent_death_signal() -> int:
    """The signal this process gets when its parent dies (0: none; Linux only), for checks and tests."""
    libc = ctypes.CDLL(None, use_errno=True)
    value = ctypes.c_int(0)
    if libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_GET_PDEATHSIG): {os.strerror(errno)}")
    return value.value
