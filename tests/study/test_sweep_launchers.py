"""The sweep's launchers on a tiny VLM: Ray (one module-scoped local Ray, two GPUs declared), SLURM through
submitit's local executor, and the refusals of a tracking store that other nodes could not reach.

VQA children (pure-Python scoring; captions would start a METEOR JVM in every child process).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from click.testing import CliRunner
from crash_helpers import FAST, build_vqa

from vlm_quant.cli.commands import main
from vlm_quant.study.launchers import store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray declaring two GPUs (Ray hands out GPU ids 0 and 1 on a CPU machine too)."""
    ray = pytest.importorskip("ray", reason="pip install 'vlm-quant[ray]'")
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=True)
    yield ray
    ray.shutdown()


def sweep_args(model: Path, data: Path, quants: str, *launch: str) -> list[str]:
    args = ["sweep", "--quants", quants, "--model", str(model), "--data-dir", str(data), "--task", "vqa"]
    args += ["--experiment", "launchers", "--n-samples", "2", "--batch-size", "2", "--spotcheck-n", "0"]
    for key, value in FAST.items():
        args += [f"--{key}", value]
    return [*args, *launch]


def summary(output: str) -> dict:
    start = output.rindex('{\n  "parent_run_id"')
    return json.JSONDecoder().raw_decode(output, start)[0]


def children(client, parent_id: str) -> dict[str, mlflow.entities.Run]:
    parent = client.get_run(parent_id)
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    return {run.data.params["quant"]: run for run in runs}


def kill_child_of(quant: str, stop: threading.Event) -> threading.Thread:
    """SIGKILL the evaluate process of ``quant`` as soon as it appears, as the kernel's OOM killer would.

    Only among this test process's own descendants (the Ray workers' children), never another process."""
    import psutil

    def target() -> psutil.Process | None:
        for process in psutil.Process().children(recursive=True):
            try:
                cmd = process.cmdline()
            except psutil.Error:
                continue
            if "evaluate" in cmd and "--quant" in cmd and cmd[cmd.index("--quant") + 1] == quant:
                return process
        return None

    def hunt() -> None:
        while not stop.is_set():
            process = target()
            if process is not None:
                with contextlib.suppress(psutil.Error):
                    process.kill()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=hunt, daemon=True)
    thread.start()
    return thread


def test_ray_sweep_two_gpus_a_killed_child_and_a_rerun_that_skips(
    local_ray, tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path
):
    data = build_vqa(tmp_path / "vqav2", coco_dir, n_images=2)
    model, runner, stop = tiny_vlm_dirs["llava"], CliRunner(), threading.Event()
    hunter = kill_child_of("bf16", stop)
    try:
        first = runner.invoke(main, sweep_args(model, data, "fp16,bf16,int8-ao", "--launcher", "ray"))
    finally:
        stop.set()
        hunter.join()
    assert first.exit_code == 1, first.output  # one configuration failed, the others went on
    outcome = summary(first.output)
    assert outcome["status"] == {"fp16": "finished", "bf16": "failed", "int8-ao": "finished"}
    assert "killed by SIGKILL" in outcome["reasons"]["bf16"]

    client = mlflow.MlflowClient(tracking_uri)
    runs = children(client, outcome["parent_run_id"])
    assert {q: r.info.status for q, r in runs.items()} == {
        "fp16": "FINISHED",
        "bf16": "FAILED",
        "int8-ao": "FINISHED",
    }
    assert "killed by SIGKILL" in runs["bf16"].data.tags["vlm_quant.failure"]
    assert len({r.data.params["ids_hash"] for q, r in runs.items() if q != "bf16"}) == 1
    for run in runs.values():
        assert run.data.params["launcher"] == "ray" and run.data.params["launch_host"]
        assert run.data.params["launch_cuda_visible_devices"] in {"0", "1"}  # one GPU each, set by Ray

    launched = json.loads(
        Path(client.download_artifacts(outcome["parent_run_id"], "sweep/outcome.json")).read_text()
    )["launched"]
    spans = [(v["started_unix_s"], v["ended_unix_s"], v["cuda_visible_devices"]) for v in launched.values()]
    for start, _, _ in spans:  # at the start of each child, at most two were running, on distinct GPUs
        running = [gpu for s, e, gpu in spans if s <= start < e]
        assert len(running) <= 2 and len(set(running)) == len(running)
    shared = {q: r.data.tags.get("vlm_quant.codecarbon_shared") for q, r in runs.items()}
    overlapped = [q for q, v in launched.items() if any(
        o != q and w["started_unix_s"] < v["ended_unix_s"] and v["started_unix_s"] < w["ended_unix_s"]
        for o, w in launched.items()
    )]  # fmt: skip
    assert overlapped and all(shared[q] and shared[q].startswith("shared with") for q in overlapped)

    again = runner.invoke(main, sweep_args(model, data, "fp16,int8-ao", "--launcher", "ray"))
    assert again.exit_code == 0, again.output
    rerun = summary(again.output)
    assert rerun["status"] == {"fp16": "skipped", "int8-ao": "skipped"}
    assert rerun["run_ids"] == {q: outcome["run_ids"][q] for q in ("fp16", "int8-ao")}


def test_slurm_sweep_through_submitits_local_executor(tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path):
    pytest.importorskip("submitit", reason="pip install 'vlm-quant[slurm]'")
    data = build_vqa(tmp_path / "vqav2", coco_dir, n_images=2)
    folder = tmp_path / "slurm-logs"
    launch = ("--launcher", "slurm", "--slurm-cluster", "local", "--slurm-folder", str(folder))
    result = CliRunner().invoke(
        main, sweep_args(tiny_vlm_dirs["llava"], data, "fp16", *launch, "--slurm-time", "10")
    )
    assert result.exit_code == 0, result.output
    assert "[sweep] slurm: 1/1 done" in result.output
    outcome = summary(result.output)
    (child,) = children(mlflow.MlflowClient(tracking_uri), outcome["parent_run_id"]).values()
    assert child.info.status == "FINISHED" and child.data.params["launcher"] == "slurm"
    assert list(folder.rglob("*_submission.sh")) or list(folder.rglob("*.pkl"))  # submitit's own files


def test_slurm_refuses_a_sqlite_store_on_a_node_local_disk(tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path):
    data = build_vqa(tmp_path / "vqav2", coco_dir, n_images=2)
    result = CliRunner().invoke(main, sweep_args(tiny_vlm_dirs["llava"], data, "fp16", "--launcher", "slurm"))
    assert result.exit_code == 2
    assert "--launcher slurm: the tracking store is the sqlite file" in result.output
    assert "other nodes do not see" in result.output and "docs/tracking.md" in result.output
    client = mlflow.MlflowClient(tracking_uri)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_a_sqlite_store_on_nfs_is_accepted_for_slurm(tmp_path, monkeypatch):
    import psutil

    real = psutil.disk_partitions(all=True)
    nfs = SimpleNamespace(device="server:/export", mountpoint=str(tmp_path), fstype="nfs4")
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=True: [*real, nfs])
    store.check_slurm_store(f"sqlite:///{tmp_path / 'mlflow.db'}", "slurm")  # no error
    with pytest.raises(store.UserError, match="other nodes do not see"):
        store.check_slurm_store(f"sqlite:///{tmp_path.parent / 'mlflow.db'}", "slurm")
    store.check_slurm_store("http://mlflow.lab:5000", "slurm")  # a server: every node reaches it


def test_ray_refuses_a_sqlite_store_for_a_remote_cluster(tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path):
    data = build_vqa(tmp_path / "vqav2", coco_dir, n_images=2)
    launch = ("--launcher", "ray", "--ray-address", "ray://10.255.255.1:10001")
    result = CliRunner().invoke(main, sweep_args(tiny_vlm_dirs["llava"], data, "fp16", *launch))
    assert result.exit_code == 2
    assert "--ray-address ray://10.255.255.1:10001: the tracking store is the sqlite file" in result.output
    assert "docs/tracking.md" in result.output
    with pytest.raises(store.UserError, match=r"nodes on other machines \(10.255.255.2\)"):
        store.check_ray_store(tracking_uri, "auto", ["127.0.0.1", "10.255.255.2"])
    store.check_ray_store(tracking_uri, "auto", ["127.0.0.1"])  # a one-machine cluster may use sqlite


def test_local_pool_runs_one_child_per_gpu_and_keeps_each_childs_error():
    from vlm_quant.study.launchers.child import ChildJob
    from vlm_quant.study.launchers.local import LocalLauncher

    jobs = [ChildJob(q, "hash", "seed: 1\n", ("--quant", q)) for q in ("fp16", "bf16")]
    results = []
    LocalLauncher(["0", "1"]).run(jobs, results.append)
    assert sorted(r.quant for r in results) == ["bf16", "fp16"]
    for result in results:  # each child's own `error:` line (no data_dir), exit status 2 (a UserError)
        assert result.returncode == 2 and result.stderr_tail.startswith("error: data_dir is required")
    a, b = results  # two GPUs, two children: they ran at once, each on its own GPU
    assert a.started_unix_s < b.ended_unix_s and b.started_unix_s < a.ended_unix_s
    assert {a.gpu, b.gpu} == {"0", "1"}
