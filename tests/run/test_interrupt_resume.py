"""Real `vlm-quant evaluate` processes stopped mid-pass (SIGINT, SIGKILL), then resumed to the same result.

Both children run at once on one sqlite store (so this is also a test of two concurrent writers); their
generate() is slowed to ~1 s per batch so the signal lands mid-pass, and both prepare their inputs in a
pipeline worker process. The SIGINT child gets the signal as a terminal's Ctrl-C sends it, to its whole
process group (its workers too), and uploads its predictions every batch; the SIGKILL child uploads
rarely (as on a real run: every 10 batches or 30 s), so what it keeps is what its local journal (synced
every batch) holds, and no process of it may outlive it.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import mlflow
import psutil
import pytest
from click.testing import CliRunner
from crash_helpers import (
    build_vqa,
    child_env,
    child_log,
    evaluate_args,
    journal_rows,
    last_json,
    partial_rows,
    predictions,
    runs_of,
    start_child,
    survivors,
    wait_for_rows,
)

from vlm_quant.cli.commands import main

N = 6
WORKER = {"num_workers": 1}  # one input-pipeline worker process (the default's count depends on the cores)
QUALITY_KEYS = ("vqa_accuracy", "vqa_accuracy_yes_no", "n_samples_evaluated", "n_samples_skipped")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_vlm_dirs, coco_dir, empty_store_template):
    root = tmp_path_factory.mktemp("crash-store")
    shutil.copy(empty_store_template, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    for name in ("sigint", "sigkill", "reference-bs1", "reference-bs2"):
        client.create_experiment(name, artifact_location=str(root / "artifacts" / name))
    return {
        "root": root,
        "uri": uri,
        "client": client,
        "model": tiny_vlm_dirs["llava"],
        "data": build_vqa(root / "vqav2", coco_dir, n_images=N),
    }


@pytest.fixture(scope="module")
def interrupted(setup):
    """Start two children at once; SIGINT the process group of one once it uploaded 2 rows, SIGKILL the
    other's main process once 2 batches are in its journal (none uploaded yet), its worker busy."""
    s = setup
    env = child_env(s["uri"], VLMQ_TEST_GENERATE_DELAY_S="1.0", VLM_QUANT_FLUSH_BATCHES="1")
    rare = {**env, "VLM_QUANT_FLUSH_BATCHES": "100", "VLM_QUANT_FLUSH_SECONDS": "600",
            "VLMQ_TEST_LOAD_STALL_AFTER": "3"}
    term = start_child(
        evaluate_args(s["model"], s["data"], experiment="sigint", n_samples=N, batch_size=2, **WORKER),
        env,
        s["root"],
        "term",
        group=True,
    )
    kill = start_child(
        evaluate_args(s["model"], s["data"], experiment="sigkill", n_samples=N, batch_size=1, **WORKER),
        rare,
        s["root"],
        "kill",
    )
    processes: dict[str, list[psutil.Process]] = {}
    try:
        run = wait_for_rows(s["client"], "sigint", term, 2, timeout_s=120)
        processes["term"] = psutil.Process(term.pid).children(recursive=True)
        os.killpg(term.pid, signal.SIGINT)  # the whole group, as Ctrl-C in a terminal
        term_at_signal = len(partial_rows(run))
        run = wait_for_rows(s["client"], "sigkill", kill, 2, timeout_s=120, read=journal_rows)
        processes["kill"] = psutil.Process(kill.pid).children(recursive=True)
        kill.send_signal(signal.SIGKILL)  # the main process alone, as the OOM killer or `kill -9 PID`
        kill_at_signal = len(journal_rows(run))
        term.wait(timeout=60)
        kill.wait(timeout=30)
        left = {name: survivors(procs, within_s=5.0) for name, procs in processes.items()}
    finally:
        for proc in (term, kill):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for process in [p for procs in processes.values() for p in procs]:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
    return {"term": term, "kill": kill, "term_at_signal": term_at_signal, "kill_at_signal": kill_at_signal,
            "processes": processes, "survivors": left}


def reference(setup, batch_size: int) -> tuple[dict, list]:
    """An uninterrupted run of the same configuration (another experiment): metrics and predictions."""
    args = evaluate_args(
        setup["model"],
        setup["data"],
        experiment=f"reference-bs{batch_size}",
        n_samples=N,
        batch_size=batch_size,
        **WORKER,
    )
    result = CliRunner().invoke(main, [*args, "--tracking-uri", setup["uri"]])
    assert result.exit_code == 0, result.output
    run_id = last_json(result.output)["run_id"]
    run = setup["client"].get_run(run_id)
    return run.data.metrics, predictions(setup["client"], run_id, setup["root"] / f"ref{batch_size}")


def resume(setup, experiment: str, batch_size: int, how: str) -> tuple[dict, float]:
    args = evaluate_args(
        setup["model"], setup["data"], experiment=experiment, n_samples=N, batch_size=batch_size, **WORKER
    )
    started = time.perf_counter()
    result = CliRunner().invoke(main, [*args, "--tracking-uri", setup["uri"], "--resume", how])
    assert result.exit_code == 0, result.output
    return last_json(result.output), time.perf_counter() - started


def assert_same_result(setup, run_id: str, ref_metrics: dict, ref_predictions: list, tag: str) -> None:
    run = setup["client"].get_run(run_id)
    for key in QUALITY_KEYS:
        assert run.data.metrics[key] == pytest.approx(ref_metrics[key], abs=1e-12), key
    rows = predictions(setup["client"], run_id, setup["root"] / f"resumed-{tag}")
    assert [(r["question_id"], r["prediction"]) for r in rows] == [
        (r["question_id"], r["prediction"]) for r in ref_predictions
    ]


def test_ctrl_c_to_the_process_group_finishes_the_batch_saves_marks_killed_and_resumes(setup, interrupted):
    term = interrupted["term"]
    log = child_log(setup["root"], "term")
    # the workers got the SIGINT too: they leave it to the main process instead of dying of it first
    assert term.returncode == 128 + signal.SIGINT, log[-3000:]
    assert "interrupted by SIGINT" in log and "DataLoader worker" not in log
    assert interrupted["processes"]["term"] and interrupted["survivors"]["term"] == []
    (run,) = runs_of(setup["client"], "sigint")
    assert run.info.status == "KILLED"
    assert run.data.tags["vlm_quant.signal"] == "SIGINT"
    assert "SIGINT" in run.data.tags["vlm_quant.failure"]
    rows = partial_rows(run)
    # the batch in progress was finished and saved: whole batches of 2, at least what was there at the signal
    assert len(rows) % 2 == 0 and interrupted["term_at_signal"] <= len(rows) < N
    assert all(r["prediction"] is not None for r in rows)

    out, seconds = resume(setup, "sigint", batch_size=2, how=run.info.run_id)
    assert out["run_id"] == run.info.run_id
    resumed = setup["client"].get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.metrics["n_samples_resumed"] == len(rows)
    assert "vlm_quant.failure" not in resumed.data.tags and "vlm_quant.signal" not in resumed.data.tags
    assert "SIGINT" in resumed.data.tags["vlm_quant.previous_failure"]
    assert resumed.data.tags["vlm_quant.resume_count"] == "1"
    ref_metrics, ref_predictions = reference(setup, batch_size=2)
    assert_same_result(setup, run.info.run_id, ref_metrics, ref_predictions, "term")
    print(f"SIGINT: {len(rows)} of {N} rows kept; resume took {seconds:.1f} s")


def test_sigkill_loses_at_most_the_batch_in_flight_and_resume_auto_takes_the_run_over(setup, interrupted):
    kill = interrupted["kill"]
    assert kill.returncode == -signal.SIGKILL
    # no process of the run outlives it: its input-pipeline worker (busy opening an image) died with it
    assert interrupted["processes"]["kill"], "the run had no worker process: the check below checks nothing"
    assert interrupted["survivors"]["kill"] == []
    (run,) = runs_of(setup["client"], "sigkill")
    assert run.info.status == "RUNNING"  # nothing ran after SIGKILL; the pid tag says whose it was
    assert run.data.tags["vlm_quant.pid"] == str(kill.pid)
    # no upload had happened yet: without the journal, every prediction would be lost (measured before
    # the journal: n_samples_resumed = 0 after 2 of 10 samples)
    assert partial_rows(run) == []
    kept = journal_rows(run)
    assert interrupted["kill_at_signal"] <= len(kept) < N and interrupted["kill_at_signal"] >= 2

    out, seconds = resume(setup, "sigkill", batch_size=1, how="auto")  # its process is gone: resumable
    assert out["run_id"] == run.info.run_id
    resumed = setup["client"].get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED"
    # batches of 1: every batch finished before the kill was kept (the journal at the kill, at least)
    assert resumed.data.metrics["n_samples_resumed"] >= interrupted["kill_at_signal"]
    assert resumed.data.metrics["n_samples_resumed"] == len(kept)
    assert journal_rows(resumed) == []  # everything reached the run: the journal is gone
    assert len(runs_of(setup["client"], "sigkill")) == 1  # reopened, not a new run
    ref_metrics, ref_predictions = reference(setup, batch_size=1)
    assert_same_result(setup, run.info.run_id, ref_metrics, ref_predictions, "kill")
    print(f"SIGKILL: {len(kept)} of {N} rows kept (0 uploaded); resume took {seconds:.1f} s")
