"""Shared fixtures: the real COCO slice (skips when absent), tiny VLMs of each family, a temp MLflow store."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# The suite is offline by design: without this, every unreachable Hub id costs ~20 s of retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Prediction journals of the tests' runs (and their child processes) go to a folder of this session,
# never to the user's ~/.cache (a SIGKILL'd test run leaves its journal behind on purpose).
os.environ.setdefault("VLM_QUANT_JOURNAL_DIR", tempfile.mkdtemp(prefix="vlmq-test-journals-"))
# Under pytest-xdist each worker (and each run it starts in a child process) gets its share of the
# cores for torch's intra-op pool: by default every worker would start one thread per core, so two
# workers on two cores ran four busy threads and spent the difference waiting on each other.
# Set before torch is imported (the variables are read once, at import).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _SHARE = str(max(1, (os.cpu_count() or 1) // _WORKERS))
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_variable, _SHARE)

REPO = Path(__file__).resolve().parents[1]
COCO_MINI = REPO.parent / "shared" / "coco_val2017_mini"


@pytest.fixture(scope="session")
def coco_dir() -> Path:
    """The real 159-image COCO val2017 slice beside the checkout (../shared/coco_val2017_mini)."""
    if not (COCO_MINI / "annotations" / "captions_val2017.json").is_file():
        pytest.skip(
            f"real COCO slice not found at {COCO_MINI} (../shared/coco_val2017_mini beside the checkout)"
        )
    return COCO_MINI


@pytest.fixture(scope="session")
def tiny_vlm_dirs(tmp_path_factory) -> dict[str, Path]:
    """A saved tiny random VLM per supported family, loadable offline through the Auto classes."""
    from tiny_vlms import build_tiny_vlm

    root = tmp_path_factory.mktemp("tiny-vlms")
    return {
        family: build_tiny_vlm(family, root / family)
        for family in ("idefics3", "qwen2_vl", "qwen2_5_vl", "llava")
    }


@pytest.fixture(scope="session")
def tiny_family_dirs(tmp_path_factory, tiny_vlm_dirs) -> dict[str, Path]:
    """A saved tiny random VLM of each family the offline family evaluates cover (issue 25): the seven
    built here and Qwen2.5-VL from ``tiny_vlm_dirs``; about 0.1 s each."""
    from tiny_vlms import build_tiny_vlm

    root = tmp_path_factory.mktemp("tiny-families")
    built = {
        family: build_tiny_vlm(family, root / family)
        for family in (
            "smolvlm",
            "gemma3",
            "qwen3_vl",
            "internvl",
            "llava_onevision",
            "idefics2",
            "paligemma",
        )
    }
    return {**built, "qwen2_5_vl": tiny_vlm_dirs["qwen2_5_vl"]}


@pytest.fixture(scope="session")
def empty_store_template(tmp_path_factory) -> Path:
    """One migrated empty sqlite store (creating and migrating a fresh MLflow database costs 2-4 s on
    2 cores; copying it costs milliseconds)."""
    import mlflow

    path = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture()
def tracking_uri(tmp_path, monkeypatch, empty_store_template) -> str:
    """A fresh (copied) sqlite MLflow store in a temp folder, exported so child processes use it too."""
    shutil.copy(empty_store_template, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # the default artifact root ./mlruns lands in the temp folder
    return uri
