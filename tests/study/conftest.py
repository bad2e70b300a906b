"""Fixtures of the report tests: one tracking store per session holding every experiment, and the
caption sweep's report built from it once."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from report_store import (
    StoreWriter,
    build_caption_store,
    build_cpu_store,
    build_labels_store,
    build_mismatch_store,
    build_other_gpu_store,
    build_vqa_store,
)

from vlm_quant.study.report.build import compare


@pytest.fixture(scope="session", autouse=True)
def _quiet_artifact_downloads():
    # One tqdm bar per downloaded artifact drowns the test output; restored after the session.
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    yield
    if before is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = before


@pytest.fixture(scope="session")
def store_writer(tmp_path_factory):
    # One sqlite database for all experiments: creating its tables (MLflow's migrations) is the slow
    # part, and about twice as fast in RAM where /dev/shm exists (no fsync per DDL statement).
    shm = Path("/dev/shm")
    in_ram = shm.is_dir() and os.access(shm, os.W_OK)
    db_dir = Path(tempfile.mkdtemp(prefix="vlm_quant_report_db_", dir=shm)) if in_ram else None
    yield StoreWriter(tmp_path_factory.mktemp("tracking"), db_dir)
    if db_dir is not None:
        shutil.rmtree(db_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def caption_store(store_writer):
    return build_caption_store(store_writer)


@pytest.fixture(scope="session")
def vqa_store(store_writer):
    return build_vqa_store(store_writer)


@pytest.fixture(scope="session")
def mismatch_store(store_writer):
    return build_mismatch_store(store_writer)


@pytest.fixture(scope="session")
def cpu_store(store_writer):
    return build_cpu_store(store_writer)


@pytest.fixture(scope="session")
def labels_store(store_writer):
    return build_labels_store(store_writer)


@pytest.fixture(scope="session")
def other_gpu_store(store_writer):
    return build_other_gpu_store(store_writer)


@pytest.fixture(scope="session")
def caption_report(caption_store, tmp_path_factory):
    """The full report of the caption sweep, selected by experiment name."""
    out_dir = tmp_path_factory.mktemp("caption_report")
    return compare(
        out_dir, experiment=caption_store.experiment, tracking_uri=caption_store.uri, n_resamples=1000
    )


@pytest.fixture(scope="session")
def caption_study(caption_store, tmp_path_factory):
    """The caption sweep as the paper and slides see it (compare report written under a temp folder)."""
    from vlm_quant.study.paper.build import load_study

    out_dir = tmp_path_factory.mktemp("caption_paper")
    return load_study(
        out_dir, experiment=caption_store.experiment, tracking_uri=caption_store.uri, n_resamples=1000
    )
