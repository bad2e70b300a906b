"""`tracking_uri` for the crash tests: a copy of one migrated empty sqlite store (creating and migrating
a fresh MLflow database costs 2-4 s on 2 cores; a file copy costs milliseconds)."""

from __future__ import annotations

import shutil

import mlflow
import pytest


@pytest.fixture(scope="session")
def empty_store_template(tmp_path_factory):
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
