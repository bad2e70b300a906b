"""In-process crash safety: a crash mid-pass keeps its predictions and ends FAILED; a signal ends KILLED;
`resume` reopens the run and reaches the uninterrupted result; a live or finished run is never taken over.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from click.testing import CliRunner
from crash_helpers import evaluate_args, last_json, partial_rows, predictions, runs_of

import vlm_quant.run.quality_pass as quality_pass
from vlm_quant.cli.commands import main
from vlm_quant.run.resume import liveness
from vlm_quant.tracking.tracker import utc_now

N = 5
CAPTION_KEYS = ("cider", "bleu_1", "bleu_4", "meteor", "rouge_l", "n_samples_evaluated")


def failing_generate(fail_on_call: int, error: BaseException):
    """generate() that raises ``error`` on its n-th call (1-based) and works otherwise."""
    real, calls = quality_pass.generate_prepared, []

    def generate(*args, **kwargs):
        calls.append(1)
        if len(calls) == fail_on_call:
            raise error
        return real(*args, **kwargs)

    return generate


def test_crash_keeps_predictions_then_resume_auto_equals_an_uninterrupted_run(
    tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path, monkeypatch
):
    args = evaluate_args(
        tiny_vlm_dirs["llava"], coco_dir, experiment="crash", task="captioning", n_samples=N, batch_size=1
    )
    real = quality_pass.generate_prepared
    crash = failing_generate(3, RuntimeError("simulated crash"))
    monkeypatch.setattr(quality_pass, "generate_prepared", crash)
    crashed = CliRunner().invoke(main, args)
    assert isinstance(crashed.exception, RuntimeError)
    client = mlflow.MlflowClient(tracking_uri)
    (run,) = runs_of(client, "crash")
    assert run.info.status == "FAILED"
    assert run.data.tags["vlm_quant.failure"] == "RuntimeError: simulated crash"
    rows = partial_rows(run)
    assert [r["sample_id"] for r in rows] == _ids(client, run)[:2]  # the 2 predictions made before it

    monkeypatch.setattr(quality_pass, "generate_prepared", real)  # not undo(): it drops the store's env
    resumed = CliRunner().invoke(main, [*args, "--resume", "auto"])
    assert resumed.exit_code == 0, resumed.output
    assert last_json(resumed.output)["run_id"] == run.info.run_id
    done = client.get_run(run.info.run_id)
    assert done.info.status == "FINISHED" and done.data.metrics["n_samples_resumed"] == 2
    assert done.data.tags["vlm_quant.previous_failure"] == "RuntimeError: simulated crash"
    assert len(partial_rows(done)) == N

    same = evaluate_args(
        tiny_vlm_dirs["llava"], coco_dir, experiment="reference", task="captioning", n_samples=N, batch_size=1
    )
    reference = CliRunner().invoke(main, same)  # the same config, uninterrupted
    assert reference.exit_code == 0, reference.output
    ref_id = last_json(reference.output)["run_id"]
    ref = client.get_run(ref_id)
    for key in CAPTION_KEYS:
        assert done.data.metrics[key] == pytest.approx(ref.data.metrics[key], abs=1e-12), key
    assert predictions(client, run.info.run_id, tmp_path / "a") == predictions(client, ref_id, tmp_path / "b")


def _ids(client, run) -> list:
    return json.loads(Path(client.download_artifacts(run.info.run_id, "split/ids.json")).read_text())["ids"]


def test_a_signal_mid_pass_finishes_the_batch_marks_killed_and_restores_handlers(
    tiny_vlm_dirs, coco_dir, tracking_uri, monkeypatch
):
    before = signal.getsignal(signal.SIGTERM)
    real, calls = quality_pass.generate_prepared, []

    def generate(*args, **kwargs):  # SIGTERM arrives while the 2nd batch is being generated
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(quality_pass, "generate_prepared", generate)
    args = evaluate_args(
        tiny_vlm_dirs["llava"], coco_dir, experiment="sig", task="captioning", n_samples=6, batch_size=2
    )
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 128 + signal.SIGTERM, result.output
    assert "interrupted by SIGTERM" in result.output
    assert signal.getsignal(signal.SIGTERM) is before  # the CLI's handlers are gone again
    (run,) = runs_of(mlflow.MlflowClient(tracking_uri), "sig")
    assert run.info.status == "KILLED" and run.data.tags["vlm_quant.signal"] == "SIGTERM"
    # batch 2 was finished and saved; batch 3 never ran
    assert len(calls) == 2 and len(partial_rows(run)) == 4


def test_resume_refuses_a_different_config_a_finished_run_and_an_unknown_id(
    tiny_vlm_dirs, coco_dir, tracking_uri, monkeypatch
):
    args = evaluate_args(
        tiny_vlm_dirs["llava"], coco_dir, experiment="refuse", task="captioning", n_samples=3, batch_size=1
    )
    real = quality_pass.generate_prepared
    monkeypatch.setattr(quality_pass, "generate_prepared", failing_generate(2, RuntimeError("boom")))
    CliRunner().invoke(main, args)
    monkeypatch.setattr(quality_pass, "generate_prepared", real)
    client = mlflow.MlflowClient(tracking_uri)
    (run,) = runs_of(client, "refuse")
    assert run.info.status == "FAILED"
    snapshot = (run.data.params, run.data.metrics, run.data.tags, run.info.status)

    changed = [*args, "--seed", "7", "--max-new-tokens", "5", "--resume", run.info.run_id]
    result = CliRunner().invoke(main, changed)
    assert result.exit_code == 2
    assert "differs from the run's in 2 key(s)" in result.output
    assert "seed (run: 1, now: 7)" in result.output and "max_new_tokens (run: 4, now: 5)" in result.output
    unknown = CliRunner().invoke(main, [*args, "--resume", "0" * 32])
    assert unknown.exit_code == 2 and "no such run" in unknown.output
    again = client.get_run(run.info.run_id)
    assert (again.data.params, again.data.metrics, again.data.tags, again.info.status) == snapshot

    client.set_terminated(run.info.run_id, "FINISHED")
    finished = CliRunner().invoke(main, [*args, "--resume", run.info.run_id])
    assert finished.exit_code == 2 and "is FINISHED" in finished.output


def fake_run(status: str, **tags: str) -> SimpleNamespace:
    return SimpleNamespace(info=SimpleNamespace(status=status), data=SimpleNamespace(tags=tags))


def test_liveness_of_running_runs():
    here = socket.gethostname()
    assert liveness(fake_run("RUNNING", **{"vlm_quant.host": here, "vlm_quant.pid": str(os.getpid())}))
    gone = 2**22 + 12345  # above the default pid_max: no such process
    assert not liveness(fake_run("RUNNING", **{"vlm_quant.host": here, "vlm_quant.pid": str(gone)}))
    fresh = {"vlm_quant.host": "elsewhere", "vlm_quant.pid": "1", "vlm_quant.heartbeat": utc_now()}
    assert "heartbeat" in liveness(fake_run("RUNNING", **fresh))
    stale = {**fresh, "vlm_quant.heartbeat": "2020-01-01T00:00:00+00:00"}
    assert not liveness(fake_run("RUNNING", **stale))
    assert not liveness(fake_run("RUNNING"))  # no tags at all (killed before they were written)
    assert not liveness(fake_run("FAILED", **fresh))


def test_a_crash_after_the_pass_resumes_without_generating_again(
    tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path, monkeypatch
):
    from crash_helpers import build_vqa

    from vlm_quant.tasks.vqa import VqaTask

    data = build_vqa(tmp_path / "vqav2", coco_dir, n_images=3)
    args = evaluate_args(tiny_vlm_dirs["llava"], data, experiment="late", n_samples=3, batch_size=2)
    real_score = VqaTask.score

    def broken_score(self, *a, **k):
        raise OSError("disk full while scoring")

    monkeypatch.setattr(VqaTask, "score", broken_score)
    assert isinstance(CliRunner().invoke(main, args).exception, OSError)
    (run,) = runs_of(mlflow.MlflowClient(tracking_uri), "late")
    assert run.info.status == "FAILED" and len(partial_rows(run)) == 3

    monkeypatch.setattr(VqaTask, "score", real_score)
    rows_per_call = []
    real_generate = quality_pass.generate_prepared

    def counted(model, inputs, *a, **k):
        rows_per_call.append(inputs["input_ids"].shape[0])
        return real_generate(model, inputs, *a, **k)

    monkeypatch.setattr(quality_pass, "generate_prepared", counted)
    resumed = CliRunner().invoke(main, [*args, "--resume", run.info.run_id])
    assert resumed.exit_code == 0, resumed.output
    # every prediction came from the partial file: the only generations are the batch-invariance check's
    # (never reached by the crashed attempt), each of its 3 samples alone
    assert rows_per_call == [1, 1, 1]
    done = mlflow.MlflowClient(tracking_uri).get_run(run.info.run_id)
    assert done.info.status == "FINISHED" and done.data.metrics["n_samples_resumed"] == 3
    assert "batch_invariance_agreement" in done.data.metrics
    assert done.data.metrics["n_samples_evaluated"] == 3 and "vqa_accuracy" in done.data.metrics


def test_heartbeat_refreshes_until_stopped(monkeypatch):
    import threading
    import time

    import vlm_quant.tracking.tracker as tracking

    monkeypatch.setattr(tracking, "HEARTBEAT_S", 0.02)
    beats = []
    client = SimpleNamespace(set_tag=lambda run_id, key, value: beats.append((run_id, key)))
    stop = threading.Event()
    thread = threading.Thread(target=tracking._heartbeat, args=(client, "r1", stop))
    thread.start()
    time.sleep(0.3)
    stop.set()
    thread.join(timeout=2)
    assert not thread.is_alive() and len(beats) >= 3 and beats[0] == ("r1", "vlm_quant.heartbeat")


def test_a_cost_pass_crash_keeps_the_quality_metrics_and_instrument_tags_in_the_failed_run(
    tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path, monkeypatch
):
    from crash_helpers import build_vqa

    import vlm_quant.run.runner as runner

    data = build_vqa(tmp_path / "vqav2", coco_dir, n_images=2)
    args = evaluate_args(tiny_vlm_dirs["llava"], data, experiment="cost-crash", n_samples=2, batch_size=2)

    def crashing_cost_pass(*args, **kwargs):
        raise RuntimeError("simulated cost-pass crash")

    monkeypatch.setattr(runner, "cost_pass", crashing_cost_pass)
    result = CliRunner().invoke(main, args)
    assert isinstance(result.exception, RuntimeError)
    (run,) = runs_of(mlflow.MlflowClient(tracking_uri), "cost-crash")
    assert run.info.status == "FAILED"
    assert run.data.tags["vlm_quant.failure"] == "RuntimeError: simulated cost-pass crash"
    metrics = run.data.metrics
    assert 0.0 <= metrics["vqa_accuracy"] <= 1.0 and metrics["n_samples_evaluated"] == 2
    assert metrics["quality_pass_s"] > 0 and "latency_ms_p50" not in metrics
    assert "no CUDA" in run.data.tags["vlm_quant.energy_absent_reason"]  # the instruments' tags, too
