"""A real browser on `mlflow ui`: two offline runs, the experiment page and a run page in headless
Chromium, and the REST API behind them: run names, dataset digest, logged model and description.

Skipped when Chromium is absent (`.ci/run` installs it from Debian).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from vlm_quant.config import ExperimentConfig
from vlm_quant.run.runner import prepare_experiment, run_experiment
from vlm_quant.tracking.run_story import TAG_NOTE
from vlm_quant.tracking.tracker import open_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FAST_COST = dict(cost_samples=2, cost_iterations=1, cost_warmup=0, cost_new_tokens=2, idle_seconds=0)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def chromium(url: str, tmp: Path, *extra: str) -> str:
    profile = tmp / f"profile-{time.monotonic_ns()}"  # a fresh user-data-dir per page
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
         "--window-size=1500,1000", *extra, url],
        capture_output=True, text=True, timeout=180,
    )
    return done.stdout


@pytest.fixture()
def ui(tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path):
    runs = {}
    for quant in ("fp16", "int8"):
        cfg = ExperimentConfig.from_mapping(dict(
            model=str(tiny_vlm_dirs["idefics3"]), data_dir=str(coco_dir), quant=quant, n_samples=2,
            batch_size=2, max_new_tokens=3, experiment="browser", **FAST_COST,
        ))
        from vlm_quant.cli.commands import default_run_name

        prepared = prepare_experiment(cfg)
        with open_run(cfg.experiment, default_run_name(cfg, prepared)) as tracker:
            run_experiment(prepared, tracker, progress=False)
        runs[quant] = tracker.run_id
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # the server imports for ~10 s idle, minutes on a loaded CI box
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow ui did not start (exit status {server.poll()})")
                time.sleep(1)
        yield base, runs
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_mlflow_ui_shows_names_dataset_logged_model_and_description(ui, tiny_vlm_dirs, tmp_path):
    base, runs = ui
    experiment = api(base, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=browser")["experiment"]
    eid = experiment["experiment_id"]
    found = api(base, "/api/2.0/mlflow/runs/search", {"experiment_ids": [eid]})["runs"]
    name = tiny_vlm_dirs["idefics3"].name
    names = {f"{name} · fp16 (fp32 on cpu)", f"{name} · int8 (fp32 on cpu)"}  # float32 on this CPU
    assert {r["info"]["run_name"] for r in found} == names
    for run in found:
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        digests = {d["dataset"]["name"]: d["dataset"]["digest"] for d in run["inputs"]["dataset_inputs"]}
        assert digests["coco-val2017"] == params["ids_hash"]
        assert "CIDER" in tags[TAG_NOTE] and "RANDOM" not in tags[TAG_NOTE]
    assert len({json.dumps(sorted(r["inputs"]["dataset_inputs"][0]["dataset"].items())) for r in found}) == 1
    models = api(base, "/api/2.0/mlflow/logged-models/search", {"experiment_ids": [eid]})["models"]
    assert {m["info"]["source_run_id"] for m in models} == set(runs.values())

    # The pages themselves, as a browser renders them (React; --dump-dom after the scripts ran).
    runs_page = chromium(f"{base}/#/experiments/{eid}/runs", tmp_path, "--dump-dom")
    assert f"{name} · int8 (fp32 on cpu)" in runs_page and "coco-val2017" in runs_page
    run_page = chromium(f"{base}/#/experiments/{eid}/runs/{runs['int8']}", tmp_path, "--dump-dom")
    assert f"{name} · int8" in run_page and "CIDER" in run_page  # the description box
