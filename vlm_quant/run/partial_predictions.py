"""Predictions streamed into the run as they are produced: `predictions/partial.jsonl`.

The quality pass appends one JSON line per sample to a local file in a run-scoped work folder and
re-logs that file as the run's `predictions/partial.jsonl` every few batches or seconds, and once more
at the end, on an error or on a signal. A crash (even SIGKILL) thus keeps everything up to the last
flush, and `resume` reads the file back and skips those samples.

The lines hold predictions only, not per-sample scores: CIDEr's IDF comes from the whole scored
set, so per-sample caption scores exist only once every prediction does (the final, scored
`predictions/predictions.jsonl`).

Line shapes: ``{"sample_id", "prediction", "new_tokens", "seconds"}`` for a prediction;
``{"sample_id", "image_file", "skipped"}`` for a sample whose image could not be read.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ARTIFACT_DIR = "predictions"
ARTIFACT_NAME = "partial.jsonl"
ARTIFACT_PATH = f"{ARTIFACT_DIR}/{ARTIFACT_NAME}"
# Flush after this many batches or seconds, whichever comes first (environment overrides for tests and
# for slow remote stores: each flush uploads the whole file).
FLUSH_BATCHES = int(os.environ.get("VLM_QUANT_FLUSH_BATCHES", "10"))
FLUSH_SECONDS = float(os.environ.get("VLM_QUANT_FLUSH_SECONDS", "30"))


@dataclass
class Restored:
    """What an earlier attempt of the run had predicted (keyed by sample id as written)."""

    predictions: dict[Any, str] = field(default_factory=dict)
    new_tokens: dict[Any, int] = field(default_factory=dict)
    skipped: dict[Any, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def done(self) -> set[Any]:
        return set(self.predictions) | set(self.skipped)


def parse_rows(text: str | None) -> list[dict[str, Any]]:
    """The JSON lines of ``text``; a torn last line (killed mid-write) is dropped, not fatal."""
    rows = []
    for number, line in enumerate((text or "").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            log.warning("partial predictions: line %d is not JSON (torn write?); ignored", number)
            continue
        if isinstance(row, dict) and "sample_id" in row:
            rows.append(row)
    return rows


def restore(rows: list[dict[str, Any]]) -> Restored:
    restored = Restored()
    for row in rows:
        key = row["sample_id"]
        if "prediction" in row:
            restored.predictions[key] = row["prediction"]
            restored.new_tokens[key] = int(row.get("new_tokens", 0))
            restored.seconds += float(row.get("seconds", 0.0))
            restored.skipped.pop(key, None)
        elif "skipped" in row:
            restored.skipped[key] = {
                "sample_id": key,
                "image_file": row.get("image_file"),
                "reason": row["skipped"],
            }
    return restored


class PredictionStream:
    """Append-only JSONL of one run's predictions, re-logged to the run every N batches or T seconds."""

    def __init__(
        self,
        tracker: Any,
        previous: str | None = None,
        *,
        every_batches: int = FLUSH_BATCHES,
        every_seconds: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.tracker = tracker
        self.every_batches = max(1, every_batches)
        self.every_seconds = every_seconds
        self.clock = clock
        run_tag = "".join(c for c in str(getattr(tracker, "run_id", "run")) if c.isalnum())[:16]
        self.folder = Path(tempfile.mkdtemp(prefix=f"vlmq-{run_tag}-"))
        self.path = self.folder / ARTIFACT_NAME
        rows = parse_rows(previous)
        self.restored = restore(rows)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self._handle = open(self.path, "a")  # noqa: SIM115 - closed in close()
        self.unflushed = 0
        self.batches_since_flush = 0
        self.last_flush = clock()
        self.flushes = 0

    @classmethod
    def open(cls, tracker: Any) -> PredictionStream:
        """A stream for ``tracker``'s run, starting from the run's own partial file when it has one."""
        reader = getattr(tracker, "read_text", None)
        previous = reader(ARTIFACT_PATH) if reader else None
        if previous:
            log.info("run %s: continuing from %s", tracker.run_id, ARTIFACT_PATH)
        return cls(tracker, previous)

    def add_prediction(self, sample_id: Any, text: str, new_tokens: int, seconds: float) -> None:
        row = {"sample_id": sample_id, "prediction": text, "new_tokens": new_tokens, "seconds": seconds}
        self._write(row)

    def add_skipped(self, sample_id: Any, image_file: Any, reason: str) -> None:
        self._write({"sample_id": sample_id, "image_file": image_file, "skipped": reason})

    def _write(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row, default=str) + "\n")
        self.unflushed += 1

    def batch_done(self) -> None:
        """Count a finished batch; flush when N batches or T seconds have passed since the last flush."""
        self.batches_since_flush += 1
        due = self.clock() - self.last_flush >= self.every_seconds
        if self.batches_since_flush >= self.every_batches or due:
            self.flush()

    def flush(self) -> None:
        """Re-log the whole local file as the run's partial.jsonl (a failed upload warns, never stops)."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.batches_since_flush, self.last_flush = 0, self.clock()
        if not self.unflushed:
            return
        try:
            self.tracker.log_file(self.path, ARTIFACT_DIR)
        except Exception as error:  # the next flush retries; the local file still has every line
            log.warning("partial predictions not saved to the run this time: %s", error)
            return
        self.unflushed = 0
        self.flushes += 1

    def close(self) -> None:
        """Final flush, then remove the work folder (kept, and said so, when the run did not get it)."""
        try:
            self.flush()
        finally:
            self._handle.close()
            if self.unflushed:
                log.error("%d predictions did not reach the run; they are in %s", self.unflushed, self.path)
            else:
                shutil.rmtree(self.folder, ignore_errors=True)
