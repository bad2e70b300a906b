"""The prediction journal: every batch durable locally at once, the upload periodic, resume merges both."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vlm_quant.run import partial_predictions
from vlm_quant.run.partial_predictions import ARTIFACT_PATH, PredictionStream, journal_folder


class UploadCounter:
    """A tracker whose uploads are counted; `read_text` returns what was last uploaded."""

    def __init__(self, run_id: str = "0123456789abcdef0123456789abcdef", fail: bool = False):
        self.run_id = self.journal_key = run_id
        self.uploads: list[str] = []
        self.fail = fail

    def log_file(self, local_path, artifact_dir=None):
        if self.fail:
            raise OSError("store unreachable")
        assert f"{artifact_dir}/{Path(local_path).name}" == ARTIFACT_PATH
        self.uploads.append(Path(local_path).read_text())

    def read_text(self, artifact_path):
        return self.uploads[-1] if self.uploads and artifact_path == ARTIFACT_PATH else None


@pytest.fixture()
def journals(tmp_path, monkeypatch):
    monkeypatch.setenv("VLM_QUANT_JOURNAL_DIR", str(tmp_path / "journals"))
    return tmp_path / "journals"


def rows_on_disk(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_batch_is_durable_in_the_journal_at_once_and_uploads_stay_periodic(journals, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(partial_predictions.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    tracker = UploadCounter()
    stream = PredictionStream.open(tracker)
    stream.every_batches, stream.every_seconds = 10, float("inf")
    assert stream.path == journal_folder(tracker.run_id) / "partial.jsonl"
    assert stream.path.parent.parent == journals
    fsyncs_at_open = len(synced)
    for batch in range(3):
        stream.add_prediction(f"s{batch}a", "a cat", 2, 0.5)
        stream.add_prediction(f"s{batch}b", "a dog", 3, 0.5)
        stream.batch_done()
        # what a SIGKILL right now would leave: every row of every finished batch, on disk
        assert len(rows_on_disk(stream.path)) == 2 * (batch + 1)
    assert len(synced) - fsyncs_at_open == 3  # one fsync per batch
    assert tracker.uploads == []  # 3 < 10 batches: nothing uploaded yet
    stream.close()
    assert len(tracker.uploads) == 1 and len(tracker.uploads[0].splitlines()) == 6
    assert not stream.folder.exists()  # everything reached the run: the journal is gone


def test_upload_every_n_batches(journals):
    tracker = UploadCounter()
    stream = PredictionStream.open(tracker)
    stream.every_batches, stream.every_seconds = 2, float("inf")
    for batch in range(5):
        stream.add_prediction(batch, "x", 1, 0.1)
        stream.batch_done()
    assert [len(u.splitlines()) for u in tracker.uploads] == [2, 4]
    stream.close()
    assert [len(u.splitlines()) for u in tracker.uploads] == [2, 4, 5]


def test_a_killed_attempts_journal_is_merged_with_the_upload_by_sample_id(journals):
    tracker = UploadCounter()
    first = PredictionStream.open(tracker)
    first.every_batches = 2
    for sample_id in (1, 2, 3):  # batches of one; the upload after 2 batches holds samples 1 and 2
        first.add_prediction(sample_id, f"p{sample_id}", 1, 0.25)
        first.batch_done()
    first._handle.write('{"sample_id": 4, "predic')  # SIGKILL mid-write of the batch in flight
    first._handle.flush()
    # (no close: the process is gone) -- the journal has 1, 2, 3 and a torn line; the run has 1, 2
    assert len(tracker.uploads) == 1

    second = PredictionStream.open(tracker)  # the resumed attempt, same machine
    assert sorted(second.restored.predictions) == [1, 2, 3]
    assert second.restored.seconds == pytest.approx(0.75)  # each sample once, not once per copy
    assert second.n_from_journal == 1
    assert [r["sample_id"] for r in rows_on_disk(second.path)] == [1, 2, 3]  # torn line dropped
    second.add_prediction(4, "p4", 1, 0.25)
    second.batch_done()
    second.close()
    assert [json.loads(line)["sample_id"] for line in tracker.uploads[-1].splitlines()] == [1, 2, 3, 4]


def test_upload_made_elsewhere_and_a_stale_journal_both_count(journals):
    """A journal left here by attempt 1 and an upload by attempt 2 on another machine: the union."""
    tracker = UploadCounter()
    folder = journal_folder(tracker.run_id)
    folder.mkdir(parents=True)
    (folder / "partial.jsonl").write_text(
        json.dumps({"sample_id": "a", "prediction": "p", "new_tokens": 1, "seconds": 1.0}) + "\n"
        + json.dumps({"sample_id": "b", "image_file": "b.jpg", "skipped": "OSError: truncated"}) + "\n"
    )
    tracker.uploads.append(
        json.dumps({"sample_id": "b", "prediction": "q", "new_tokens": 2, "seconds": 1.0}) + "\n"
        + json.dumps({"sample_id": "c", "prediction": "r", "new_tokens": 2, "seconds": 1.0}) + "\n"
    )
    stream = PredictionStream.open(tracker)
    assert stream.restored.predictions == {"a": "p", "b": "q", "c": "r"}  # a prediction wins over a skip
    assert stream.restored.skipped == {}
    stream.close()


def test_a_failed_upload_keeps_the_journal_for_resume(journals):
    tracker = UploadCounter(fail=True)
    stream = PredictionStream.open(tracker)
    stream.add_prediction(1, "p", 1, 0.1)
    stream.batch_done()
    stream.close()
    assert stream.path.is_file() and rows_on_disk(stream.path)[0]["sample_id"] == 1
    again = PredictionStream.open(UploadCounter())
    assert list(again.restored.predictions) == [1]
    again.close()


def test_a_tracker_without_a_store_run_journals_in_a_temporary_folder(journals):
    plain = UploadCounter()
    plain.journal_key = None  # e.g. an in-memory tracker: nothing could find its journal again
    stream = PredictionStream.open(plain)
    assert journals not in stream.path.parents
    stream.close()
