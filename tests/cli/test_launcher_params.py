"""No silent parameter under `mlflow run`: experiment, run_name and tracking-uri either take effect or fail
before any work, naming the launcher's own option. (The launcher is simulated here by creating its run and
setting MLFLOW_RUN_ID as `mlflow run` does; test_mlflow_run_experiment_param_* runs the real launcher.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from vlm_quant.cli.commands import main
from vlm_quant.errors import UserError
from vlm_quant.tracking.tracker import check_launcher_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def launcher_run(tracking_uri, monkeypatch):
    """A run created the way `mlflow run` creates it (experiment Default, a random name), attached via env."""
    client = mlflow.MlflowClient(tracking_uri)
    run = client.create_run("0", run_name="bemused-cat-123")
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "0")
    return client, run.info.run_id


@pytest.mark.parametrize("source", ["option", "config file"])
def test_an_experiment_the_launcher_did_not_use_fails_before_any_work(launcher_run, tmp_path, source):
    client, run_id = launcher_run
    args = ["evaluate", "--model", str(tmp_path / "no-such-model"), "--data-dir", str(tmp_path)]
    if source == "option":
        args += ["--experiment", "study1"]
    else:
        (tmp_path / "study.yaml").write_text("experiment: study1\n")
        args += ["--config", str(tmp_path / "study.yaml")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "--experiment-name study1" in result.output and "'Default'" in result.output
    # before any work: not even the (missing) model was looked at, nothing was logged, no experiment made
    assert "no-such-model" not in result.output
    run = client.get_run(run_id)
    assert run.data.params == {} and "vlm_quant.config_hash" not in run.data.tags
    assert client.get_experiment_by_name("study1") is None
    assert "--experiment-name study1" in run.data.tags["vlm_quant.failure"]  # the FAILED run says why


def test_the_same_experiment_or_none_given_passes_and_a_run_name_renames(launcher_run):
    client, run_id = launcher_run
    check_launcher_run("Default")
    check_launcher_run(None)
    assert client.get_run(run_id).data.tags["mlflow.runName"] == "bemused-cat-123"  # no name given: kept
    check_launcher_run(None, "smolvlm-int8")
    assert client.get_run(run_id).data.tags["mlflow.runName"] == "smolvlm-int8"


def test_a_tracking_uri_without_the_launchers_run_names_mlflow_tracking_uri(
    launcher_run, tmp_path, empty_store_template
):
    shutil.copy(empty_store_template, tmp_path / "other.db")
    with pytest.raises(UserError, match="MLFLOW_TRACKING_URI"):
        check_launcher_run(None, tracking_uri=f"sqlite:///{tmp_path / 'other.db'}")


def test_outside_mlflow_run_nothing_is_checked(monkeypatch):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    check_launcher_run("anything", "any-name", tracking_uri="sqlite:////nonexistent/dir/x.db")


@pytest.mark.slow
def test_mlflow_run_experiment_param_without_experiment_name_fails_naming_it(tracking_uri, tmp_path):
    """The real launcher: `mlflow run . -e evaluate -P experiment=study1` (no --experiment-name)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_RUN_ID")},
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "evaluate", "--env-manager", "local",
               "-P", "experiment=study1", "-P", f"data_dir={tmp_path}", "-P", "n_samples=2"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode != 0
    assert "--experiment-name study1" in done.stderr, done.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri)
    assert client.get_experiment_by_name("study1") is None
    (run,) = client.search_runs(["0"])
    assert run.info.status == "FAILED" and "--experiment-name" in run.data.tags["vlm_quant.failure"]


def test_resume_auto_under_mlflow_run_looks_only_in_the_launchers_experiment(launcher_run, monkeypatch):
    from vlm_quant.config import ExperimentConfig
    from vlm_quant.run.resume import config_key, latest_unfinished

    client, _ = launcher_run
    cfg = ExperimentConfig(resume="auto", data_dir="/data/coco")
    elsewhere = client.create_experiment("vlm-quant")  # the config's default experiment, not the launcher's
    tags = {"vlm_quant.config_hash": config_key(cfg), "vlm_quant.kind": "evaluate"}
    twin = client.create_run(elsewhere, tags=tags)
    client.set_terminated(twin.info.run_id, "FAILED")
    assert latest_unfinished(client, cfg) is None  # the launcher's run is in Default: start a new run there
    monkeypatch.delenv("MLFLOW_RUN_ID")
    assert latest_unfinished(client, cfg).run_id == twin.info.run_id  # `vlm-quant evaluate` resumes it
