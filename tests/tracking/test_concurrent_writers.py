"""Two `vlm-quant evaluate` processes started at once on one fresh sqlite store both finish complete runs.

Fresh store and a new experiment: both processes race to create the database (MLflow's schema
migrations), then the experiment, then write params, metrics and artifacts at the same time.
"""

from __future__ import annotations

import pytest
from crash_helpers import build_vqa, child_env, child_log, evaluate_args, runs_of, start_child

from vlm_quant.tracking.tracker import is_transient, with_retries


@pytest.mark.slow  # two full processes: ~35 s on 2 cores (imports, migrations, model, scoring)
def test_two_evaluate_processes_share_one_fresh_sqlite_store(tmp_path, tiny_vlm_dirs, coco_dir):
    uri = f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"
    (tmp_path / "shared").mkdir()
    data = build_vqa(tmp_path / "vqav2", coco_dir, n_images=4)
    env = child_env(uri)
    procs = [
        start_child(
            evaluate_args(
                tiny_vlm_dirs["llava"], data, experiment="together", n_samples=4, batch_size=2, seed=seed
            ),
            env,
            tmp_path,
            f"writer{seed}",
            slow=False,
        )
        for seed in (1, 2)
    ]
    for proc in procs:
        proc.wait(timeout=300)
    for seed, proc in zip((1, 2), procs):
        assert proc.returncode == 0, child_log(tmp_path, f"writer{seed}")[-3000:]

    import mlflow

    client = mlflow.MlflowClient(uri)
    runs = runs_of(client, "together")
    assert len(runs) == 2 and {r.data.params["seed"] for r in runs} == {"1", "2"}
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.metrics["n_samples_evaluated"] == 4 and "vqa_accuracy" in run.data.metrics
        assert {"model_family", "ids_hash", "engine_resolved"} <= set(run.data.params)
        listed = {f.path for f in client.list_artifacts(run.info.run_id, "predictions")}
        assert {"predictions/predictions.jsonl", "predictions/partial.jsonl"} <= listed


def test_transient_store_errors_are_retried_with_backoff(monkeypatch):
    import vlm_quant.tracking.tracker as tracking

    monkeypatch.setattr(tracking, "RETRY_DELAYS_S", (0.0, 0.0, 0.0))
    calls = []

    def flaky(value):
        calls.append(value)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return value * 2

    assert with_retries(flaky, 21) == 42 and len(calls) == 3

    def always_locked():
        raise RuntimeError("database is locked")

    with pytest.raises(RuntimeError, match="locked"):
        with_retries(always_locked)

    def broken():
        calls.append("broken")
        raise ValueError("a real error")

    calls.clear()
    with pytest.raises(ValueError):
        with_retries(broken)
    assert calls == ["broken"]  # not transient: no retry
    assert not is_transient(ValueError("x")) and is_transient(RuntimeError("Database is locked"))
