"""The team setup end to end: a throwaway PostgreSQL cluster, `mlflow server` on it with proxied artifacts,
then evaluate (twice, plus a crash and a resume) and compare against http://127.0.0.1:PORT.

Needs `initdb`/`pg_ctl` (apt package postgresql; .ci/install-postgres.sh) and psycopg2; skips otherwise.
Everything listens on 127.0.0.1 only; every wait is bounded; both servers are stopped at the end.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from crash_helpers import build_vqa, evaluate_args, last_json, runs_of

import vlm_quant.run.quality_pass as quality_pass
from vlm_quant.cli.commands import main

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def pg_binary(name: str) -> str | None:
    """`name` on PATH, else in Debian's versioned folder /usr/lib/postgresql/<v>/bin (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates else None


def postgres_prerequisites() -> tuple[str, str, list[str]]:
    """(initdb, pg_ctl, prefix to run them as a non-root user), or pytest.skip with the reason."""
    try:
        import psycopg2  # noqa: F401  (SQLAlchemy's driver for postgresql+psycopg2://)
    except ImportError:
        pytest.skip("psycopg2 is not installed (pip install psycopg2-binary; see .ci/install-postgres.sh)")
    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the cluster as")
        if not shutil.which("runuser"):
            pytest.skip("running as root and `runuser` is missing (needed to start PostgreSQL as 'postgres')")
        prefix = ["runuser", "-u", "postgres", "--"]
    return initdb, pg_ctl, prefix


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"mlflow server not healthy within {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop_group(proc: subprocess.Popen, timeout_s: float = 20) -> None:
    """SIGTERM the server's process group (uvicorn workers included), SIGKILL after ``timeout_s``."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def team_server():
    """PostgreSQL on 127.0.0.1:<free port> + `mlflow server` on 127.0.0.1:<free port>; yields the http URI."""
    initdb, pg_ctl, as_postgres = postgres_prerequisites()
    work = Path(tempfile.mkdtemp(prefix="vlmq-pg-", dir="/tmp"))  # not under pytest's root-only tmp
    if as_postgres:
        shutil.chown(work, user="postgres")
    data, pg_port, port = work / "data", free_port(), free_port()
    run = lambda cmd, t: subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=t)  # noqa: E731
    server = None
    pg_started = False
    try:
        run(
            [
                *as_postgres,
                initdb,
                "-D",
                str(data),
                "-U",
                "mlflow",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            120,
        )
        options = f"-c listen_addresses=127.0.0.1 -p {pg_port} -k {work} -c fsync=off"
        run(
            [
                *as_postgres,
                pg_ctl,
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(work / "pg.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            90,
        )
        pg_started = True
        artifacts = work / "artifacts"
        log = work / "mlflow.log"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job-runner processes
        env.pop("MLFLOW_TRACKING_URI", None)
        with open(log, "w") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server",
                 "--backend-store-uri", f"postgresql+psycopg2://mlflow@127.0.0.1:{pg_port}/postgres",
                 "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "1"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True,
            )  # fmt: skip
        uri = f"http://127.0.0.1:{port}"
        wait_until_healthy(uri, server, log, timeout_s=180)
        yield {"uri": uri, "artifacts": artifacts}
    finally:
        if server is not None:
            stop_group(server)
        if pg_started:
            subprocess.run(
                [*as_postgres, pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(work, ignore_errors=True)


def test_evaluate_resume_and_compare_against_a_postgres_backed_server(
    team_server, tiny_vlm_dirs, coco_dir, tmp_path, monkeypatch
):
    uri = team_server["uri"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # as a user would export it
    monkeypatch.chdir(tmp_path)
    data = build_vqa(tmp_path / "vqav2", coco_dir, n_images=3)
    runner = CliRunner()
    for quant in ("fp16", "bf16"):
        args = evaluate_args(
            tiny_vlm_dirs["llava"], data, experiment="team", n_samples=3, batch_size=1, quant=quant
        )
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output

    # a crash, then resume=auto, through the server's artifact proxy
    real, calls = quality_pass.generate_prepared, []

    def crash_on_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("crash on the team server")
        return real(*a, **k)

    args = evaluate_args(tiny_vlm_dirs["llava"], data, experiment="team-crash", n_samples=3, batch_size=1)
    monkeypatch.setattr(quality_pass, "generate_prepared", crash_on_second)
    assert isinstance(runner.invoke(main, args).exception, RuntimeError)
    monkeypatch.setattr(quality_pass, "generate_prepared", real)
    resumed = runner.invoke(main, [*args, "--resume", "auto"])
    assert resumed.exit_code == 0, resumed.output

    report = tmp_path / "report"
    compared = runner.invoke(
        main, ["compare", "--experiment", "team", "--out-dir", str(report), "--bootstrap", "50"]
    )
    assert compared.exit_code == 0, compared.output
    assert (report / "results.csv").is_file() and (report / "report.html").is_file()

    client = mlflow.MlflowClient(uri)
    runs = runs_of(client, "team")
    kinds = sorted(r.data.tags.get("vlm_quant.kind") for r in runs)
    assert kinds == ["compare", "evaluate", "evaluate"] and all(r.info.status == "FINISHED" for r in runs)
    (crashed,) = runs_of(client, "team-crash")
    assert crashed.info.status == "FINISHED" and crashed.data.metrics["n_samples_resumed"] == 1
    assert crashed.info.run_id == last_json(resumed.output)["run_id"]
    stored = list(team_server["artifacts"].rglob("predictions.jsonl"))  # proxied to --artifacts-destination
    assert len(stored) == 3


def test_a_ray_sweep_against_the_postgres_backed_server(
    team_server, tiny_vlm_dirs, coco_dir, tmp_path, monkeypatch
):
    """The cross-machine set-up of docs/launchers.md: Ray tasks write their child runs to the team server."""
    ray = pytest.importorskip("ray", reason="pip install 'vlm-quant[ray]'")
    uri = team_server["uri"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    data = build_vqa(tmp_path / "vqav2", coco_dir, n_images=2)
    args = ["sweep", "--quants", "fp16,bf16", "--launcher", "ray"]
    args += evaluate_args(tiny_vlm_dirs["llava"], data, experiment="team-ray", n_samples=2)[3:]  # no --json
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False)
    try:
        result = CliRunner().invoke(main, args)
    finally:
        ray.shutdown()
    assert result.exit_code == 0, result.output
    client = mlflow.MlflowClient(uri)
    runs = runs_of(client, "team-ray")
    (parent,) = [r for r in runs if r.data.tags.get("vlm_quant.kind") == "sweep"]
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.params["quant"] for r in kids) == ["bf16", "fp16"]
    assert all(r.info.status == "FINISHED" and r.data.params["launcher"] == "ray" for r in kids)
