"""Wall-clock timing that counts the GPU's work, and the "both N iterations and T seconds" loop.

CUDA kernels run asynchronously: a host clock read right after a launch measures the launch, not
the work. ``DeviceTimer`` therefore synchronizes the device before reading the clock at both ends of
a span. We use ``synchronize + time.perf_counter`` rather than CUDA events because what we time is
``generate()``, a host-driven loop (tokenizer, sampling, Python between kernels): the user waits for
all of it, and events would only bracket the device part. On CPU the synchronize is a no-op.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], float]  # seconds, monotonic


def _no_sync() -> None:
    """CPU work is synchronous: nothing to wait for."""


@dataclass
class Span:
    """One timed span; ``elapsed_s`` is set when the ``with`` block exits (even on an exception)."""

    elapsed_s: float | None = None

    @property
    def elapsed_ms(self) -> float | None:
        """The span in milliseconds, None while it is still open."""
        return None if self.elapsed_s is None else self.elapsed_s * 1000.0


class DeviceTimer:
    """Times spans of work on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``).

    ``synchronize`` defaults to ``torch.cuda.synchronize(device)`` on CUDA and a no-op elsewhere;
    ``clock`` defaults to ``time.perf_counter`` (seconds). Both are injectable for tests.
    """

    def __init__(
        self,
        device: Any = "cpu",
        *,
        clock: Clock = time.perf_counter,
        synchronize: Callable[[], None] | None = None,
    ) -> None:
        self.device = str(device)
        self.clock = clock
        self.synchronize = synchronize if synchronize is not None else _synchronizer_for(self.device)

    def now(self) -> float:
        """The clock (s) once the device has finished all queued work: a time stamp of work done."""
        self.synchronize()
        return self.clock()

    @contextmanager
    def span(self) -> Iterator[Span]:
        """Context manager yielding a ``Span`` whose ``elapsed_s`` covers the block's device work."""
        span = Span()
        self.synchronize()  # earlier queued work must not be billed to this span
        start = self.clock()
        try:
            yield span
        finally:
            self.synchronize()
            span.elapsed_s = self.clock() - start


class TokenTimestamps:
    """A logits processor that time-stamps every new token of one ``generate()`` call.

    transformers calls each logits processor once per generated token, right after the forward pass
    that produced that token's logits (the prefill for the first token, one decode step for each
    later one) and before the token is picked. Synchronizing the device there (as optimum-benchmark's
    latency logits processor does) makes ``stamps_s[k]`` the moment token ``k``'s logits were ready,
    so time to first token and every decode step come from the same call. It returns the scores
    unchanged, so greedy outputs are identical with and without it.
    """

    def __init__(self, timer: DeviceTimer) -> None:
        self.timer = timer
        self.stamps_s: list[float] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.stamps_s.append(self.timer.now())
        return scores


def run_until(
    fn: Callable[[], object],
    *,
    min_iterations: int,
    min_seconds: float,
    warmup: int,
    clock: Clock = time.perf_counter,
    synchronize: Callable[[], None] = _no_sync,
) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then time it until BOTH conditions hold.

    The conditions (optimum-benchmark's rule) are: at least ``min_iterations`` timed calls, and at
    least ``min_seconds`` seconds since the first timed call began. N alone under-samples fast
    configurations; T alone under-samples slow ones. Returns the per-iteration durations in
    seconds. Pass ``synchronize=DeviceTimer(device).synchronize`` when ``fn`` launches GPU work.
    """
    if min_iterations < 1:
        raise ValueError(f"min_iterations must be >= 1, got {min_iterations}")
    if min_seconds < 0 or warmup < 0:
        raise ValueError(f"min_seconds and warmup must be >= 0, got {min_seconds}, {warmup}")
    for _ in range(warmup):
        fn()
    durations_s: list[float] = []
    synchronize()
    loop_start = clock()
    while True:
        start = clock()
        fn()
        synchronize()
        end = clock()
        durations_s.append(end - start)
        if len(durations_s) >= min_iterations and end - loop_start >= min_seconds:
            return durations_s


def _synchronizer_for(device: str) -> Callable[[], None]:
    """``torch.cuda.synchronize`` bound to a CUDA device, a no-op for any other device."""
    if not device.startswith("cuda"):
        return _no_sync
    import torch  # only CUDA timing needs torch; the CPU path stays importable without it

    def synchronize() -> None:
        torch.cuda.synchronize(device)

    return synchronize
