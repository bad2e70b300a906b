"""Graceful SIGINT/SIGTERM for the command-line process: finish the batch, flush, end the run KILLED.

`graceful_signals()` is entered by the CLI only (a library caller keeps its own handlers; without
them Ctrl-C stays Python's KeyboardInterrupt, which `open_run` also records as KILLED). While it is
active, the first signal:

- inside a `deferred()` block (the quality pass's generation loop) only sets a flag; the loop calls
  `raise_if_requested()` after each batch, once that batch's predictions are flushed;
- anywhere else (loading, scoring, cost pass) raises `RunInterrupted` at once.

A second signal during a deferred block stops the batch now (the flushed predictions are kept); a
signal that arrives while the run is already being closed is ignored, so the KILLED status gets
written. The previous handlers are restored on exit.

A terminal's Ctrl-C and ``timeout`` signal the whole process group; the input-pipeline workers run in
a process group of their own (`vlm_quant.engines.worker_process`), so the signal is handled here alone
and the main process shuts its workers down.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

HANDLED = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped by a signal; ``signal_name`` is e.g. 'SIGTERM'."""

    def __init__(self, signal_name: str, detail: str = ""):
        self.signal_name = signal_name
        self.signum = int(getattr(signal, signal_name, signal.SIGINT))
        super().__init__(f"interrupted by {signal_name}" + (f" ({detail})" if detail else ""))

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number (130, 143)."""
        return 128 + self.signum


class _State:
    def __init__(self) -> None:
        self.installed = False
        self.deferring = 0
        self.shielding = 0
        self.received: list[str] = []
        self.raised = False

    def reset(self) -> None:
        self.__init__()


_state = _State()


def requested() -> str | None:
    """Name of the first signal received and not yet acted on, else None."""
    return _state.received[0] if _state.received and not _state.raised else None


def raise_if_requested(detail: str = "") -> None:
    """Raise RunInterrupted when a signal is pending (a no-op without `graceful_signals`)."""
    name = requested()
    if name:
        _state.raised = True
        raise RunInterrupted(name, detail)


@contextmanager
def deferred() -> Iterator[None]:
    """A block whose unit of work (one batch) is finished before a signal takes effect."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1


@contextmanager
def shielded() -> Iterator[None]:
    """A block that a signal must not cut short (writing the run's final status): signals are ignored."""
    _state.shielding += 1
    try:
        yield
    finally:
        _state.shielding -= 1


def _handler(signum: int, frame: Any) -> None:
    name = signal.Signals(signum).name
    _state.received.append(name)
    if _state.raised or _state.shielding:
        log.warning("%s received while the run is being closed; ignored so its status gets written", name)
        return
    if _state.deferring and len(_state.received) == 1:
        log.warning("%s received: finishing the current batch, then saving and stopping (again: now)", name)
        return
    _state.raised = True
    raise RunInterrupted(name)


@contextmanager
def graceful_signals() -> Iterator[None]:
    """Install the SIGINT/SIGTERM handlers for the duration of the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread() or _state.installed:
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    _state.reset()
    _state.installed = True
    for signum in HANDLED:
        signal.signal(signum, _handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _state.reset()
