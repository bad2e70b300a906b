"""Predictions saved as they are made: a local journal every batch, `predictions/partial.jsonl` every N.

Two copies, because they cost differently:
- the journal: one JSON line per sample appended to a local file, flushed and fsynced after every
  batch (a few hundred bytes and one fsync: well under a millisecond on a local disk, against
  seconds of generation per batch). A SIGKILL or a power cut loses at most the batch in flight.
- the run's artifact `predictions/partial.jsonl`: the whole journal re-uploaded every FLUSH_BATCHES
  batches or FLUSH_SECONDS seconds, at the end, on an error or on a signal (an upload to a remote
  store can take seconds, so it is not done per batch). It is what a resume on ANOTHER machine sees.

Where the journal lives: ``$VLM_QUANT_JOURNAL_DIR/<run_id>/partial.jsonl``, by default
``$XDG_CACHE_HOME/vlm-quant/journals`` (``~/.cache/vlm-quant/journals``), keyed by the MLflow run id
(a UUID, unique across stores), so that `resume` of the same run on the same machine finds it. A run
without a store id (in-memory tracker, the NullTracker of ranks > 0) journals in a temporary folder
instead, as nothing could find it again. The journal is removed once its content has reached the
run; after a SIGKILL it stays until the run is resumed here.

Resume reads both and merges them by sample id (`merge_rows`: the journal first, then the uploaded
rows it lacks; a prediction wins over a skip), so neither a journal from an older attempt nor an
upload made on another machine hides a row the other has.

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
# Upload after this many batches or seconds, whichever comes first (environment overrides for tests and
# for slow remote stores: each upload sends the whole file). The local journal is synced every batch.
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


def journal_root() -> Path:
    """``$VLM_QUANT_JOURNAL_DIR``, else ``$XDG_CACHE_HOME/vlm-quant/journals`` (XDG default ~/.cache)."""
    explicit = os.environ.get("VLM_QUANT_JOURNAL_DIR")
    if explicit:
        return Path(explicit)
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "vlm-quant" / "journals"


def journal_folder(run_id: str) -> Path:
    """The folder of run ``run_id``'s journal (``<root>/<run_id>``; the id is a hex UUID, safe as a name)."""
    return journal_root() / "".join(c for c in str(run_id) if c.isalnum() or c in "-_")


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


def merge_rows(*sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per sample id from several copies, first source first; a prediction wins over a skip."""
    merged: dict[str, dict[str, Any]] = {}
    for rows in sources:
        for row in rows:
            key = str(row["sample_id"])
            if key not in merged or ("prediction" in row and "prediction" not in merged[key]):
                merged[key] = row
    return list(merged.values())


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


def write_durably(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically (temp file, fsync, rename), so a crash leaves old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class PredictionStream:
    """Append-only JSONL of one run's predictions: synced locally every batch, uploaded every N batches/T s.

    ``journal``: the folder of the local file (its name is ARTIFACT_NAME, as uploaded); None: a
    temporary folder (a run nothing could find again). ``previous``: the run's uploaded partial file.
    """

    def __init__(
        self,
        tracker: Any,
        previous: str | None = None,
        *,
        journal: Path | None = None,
        every_batches: int = FLUSH_BATCHES,
        every_seconds: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.tracker = tracker
        self.every_batches = max(1, every_batches)
        self.every_seconds = every_seconds
        self.clock = clock
        if journal is None:
            run_tag = "".join(c for c in str(getattr(tracker, "run_id", "run")) if c.isalnum())[:16]
            journal = Path(tempfile.mkdtemp(prefix=f"vlmq-{run_tag}-"))
        self.folder = Path(journal)
        self.path = self.folder / ARTIFACT_NAME
        journaled = parse_rows(self.path.read_text()) if self.path.is_file() else []
        uploaded = parse_rows(previous)
        rows = merge_rows(journaled, uploaded)
        self.restored = restore(rows)
        self.n_from_journal = len(rows) - len(merge_rows(uploaded))  # rows only the local journal had
        if self.n_from_journal:
            log.info("%d predictions restored from the local journal %s", self.n_from_journal, self.path)
        # rewritten, not appended to: a torn last line would swallow the next row
        write_durably(self.path, "".join(json.dumps(r, default=str) + "\n" for r in rows))
        self._handle = open(self.path, "a")  # noqa: SIM115 - closed in close()
        # rows the run's artifact lacks: the journal's own, re-uploaded at the first flush
        self.unflushed = self.n_from_journal
        self.batches_since_flush = 0
        self.last_flush = clock()
        self.flushes = 0
        self.syncs = 0

    @classmethod
    def open(cls, tracker: Any) -> PredictionStream:
        """A stream for ``tracker``'s run, from its local journal and uploaded partial file when present.

        The journal is kept under `journal_root()` only for a run of a tracking store (a tracker
        with ``journal_key``); other trackers journal in a temporary folder.
        """
        reader = getattr(tracker, "read_text", None)
        previous = reader(ARTIFACT_PATH) if reader else None
        if previous:
            log.info("run %s: continuing from %s", tracker.run_id, ARTIFACT_PATH)
        key = getattr(tracker, "journal_key", None)
        return cls(tracker, previous, journal=journal_folder(key) if key else None)

    def add_prediction(self, sample_id: Any, text: str, new_tokens: int, seconds: float) -> None:
        row = {"sample_id": sample_id, "prediction": text, "new_tokens": new_tokens, "seconds": seconds}
        self._write(row)

    def add_skipped(self, sample_id: Any, image_file: Any, reason: str) -> None:
        self._write({"sample_id": sample_id, "image_file": image_file, "skipped": reason})

    def _write(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row, default=str) + "\n")
        self.unflushed += 1

    def sync(self) -> None:
        """Make every row written so far durable in the local journal (flush + fsync; no upload)."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.syncs += 1

    def batch_done(self) -> None:
        """A finished batch: sync the journal now; upload when N batches or T seconds have passed."""
        self.sync()
        self.batches_since_flush += 1
        due = self.clock() - self.last_flush >= self.every_seconds
        if self.batches_since_flush >= self.every_batches or due:
            self.flush()

    def flush(self) -> None:
        """Sync, then re-log the whole journal as the run's partial.jsonl (a failed upload warns only)."""
        self.sync()
        self.batches_since_flush, self.last_flush = 0, self.clock()
        if not self.unflushed:
            return
        try:
            self.tracker.log_file(self.path, ARTIFACT_DIR)
        except Exception as error:  # the next flush retries; the local journal still has every line
            log.warning("partial predictions not saved to the run this time: %s", error)
            return
        self.unflushed = 0
        self.flushes += 1

    def close(self) -> None:
        """Final upload, then remove the journal (kept, and said so, when the run did not get every row)."""
        try:
            self.flush()
        finally:
            self._handle.close()
            if self.unflushed:
                log.error("%d predictions did not reach the run; they are in %s", self.unflushed, self.path)
            else:
                shutil.rmtree(self.folder, ignore_errors=True)
