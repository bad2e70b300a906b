"""How an input-pipeline worker process lives: at a lower priority, never longer than its parent, and deaf
to the signals a terminal or a job scheduler sends to the whole process group.

- **Dies with its parent.** A worker blocked writing a prepared batch to its parent outlives a parent
  killed with ``kill -9`` (parent pid 1, the model's pages and the store's file handles held). On Linux
  the worker asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); a parent
  that died before that request is caught by comparing ``os.getppid()`` with the pid it had at fork.
  (The kernel sends it when the parent *thread* that forked the worker ends: the DataLoader is iterated
  on the main thread.)
- **Leaves the process group's signals to the main process.** Ctrl-C, ``timeout`` and ``kill -- -PGID``
  signal the whole process group; a worker that died of the signal first made the main process fail
  ("DataLoader worker (pid ...) is killed by signal") instead of finishing the batch in flight and
  ending the run KILLED (`vlm_quant.run.interrupts`). The worker moves to a process group of its own
  (``setpgid``), so those signals reach the main process alone, and ignores SIGINT besides. It does
  **not** ignore SIGTERM, and resets it to the default action (a fork inherits the main process's
  "finish the batch" handler): SIGTERM sent to the worker itself is how its parent ends it
  (``Process.terminate`` in the DataLoader's shutdown and in multiprocessing's exit handler, which then
  waits for it; a worker deaf to SIGTERM hung its parent at exit). A scheduler that signals every
  process of a job one by one (not through the group) still ends the workers first.
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


@dataclass(frozen=True)
class WorkerInit:
    """DataLoader ``worker_init_fn``; ``parent_pid``: the pid of the process creating the loader."""

    parent_pid: int

    def __call__(self, worker_id: int) -> None:
        die_with_parent(self.parent_pid)
        os.setpgid(0, 0)  # out of the terminal's / job's process group: its signals go to the parent
        if threading.current_thread() is threading.main_thread():  # (a forked worker's only thread)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's terminate() must end it
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
