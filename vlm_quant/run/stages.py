"""One terminal line per stage of a run (load, quantize, quality pass, cost pass per batch size,
checkpoint), written when the stage ends, with its wall time in seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("vlm_quant.stage")


@contextmanager
def stage(name: str) -> Iterator[dict[str, str]]:
    """Time the block; the yielded dict's ``"note"`` (set inside the block) ends the line."""
    started = time.perf_counter()
    info: dict[str, str] = {}
    yield info
    note = f" ({info['note']})" if info.get("note") else ""
    log.info("%-34s %7.1f s%s", name, time.perf_counter() - started, note)
