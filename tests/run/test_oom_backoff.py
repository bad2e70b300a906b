"""CUDA OOM during the quality pass (injected: a CPU cannot run out like a GPU does)."""

from __future__ import annotations

import mlflow
import pytest
import torch
from click.testing import CliRunner
from crash_helpers import build_vqa, evaluate_args, runs_of

import vlm_quant.run.quality_pass as quality_pass
from vlm_quant.cli.commands import main
from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.run.oom import BatchBackoff
from vlm_quant.run.runner import prepare_experiment, run_experiment
from vlm_quant.tracking import run_schema as rs
from vlm_quant.tracking.tracker import InMemoryTracker


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory, coco_dir):
    return build_vqa(tmp_path_factory.mktemp("oom") / "vqav2", coco_dir, n_images=5)


def oom_above(limit: int, seen: list[int]):
    """generate() that raises torch.OutOfMemoryError for batches larger than ``limit``."""
    real = quality_pass.generate_prepared

    def generate(model, inputs, settings, **kwargs):
        rows = inputs["input_ids"].shape[0]
        seen.append(rows)
        if rows > limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {rows} GiB")
        return real(model, inputs, settings, **kwargs)

    return generate


def test_oom_halves_the_batch_down_to_what_fits_and_logs_it(tiny_vlm_dirs, vqa_dir, monkeypatch):
    seen: list[int] = []
    monkeypatch.setattr(quality_pass, "generate_prepared", oom_above(1, seen))
    cfg = ExperimentConfig.from_mapping(
        dict(
            model=str(tiny_vlm_dirs["llava"]),
            task="vqa",
            data_dir=str(vqa_dir),
            n_samples=5,
            batch_size=4,
            max_new_tokens=3,
            log_model=False,
            spotcheck_n=0,
            cost_samples=1,
            cost_iterations=1,
            cost_warmup=0,
            cost_new_tokens=2,
            idle_seconds=0,
        )
    )
    tracker = InMemoryTracker()
    summary = run_experiment(prepare_experiment(cfg), tracker, progress=False)
    assert summary.n_predictions == 5
    # batch [4]: 4 -> OOM, 2 -> OOM, then 1s; the last batch [1] runs at the reduced size directly
    assert seen == [4, 2, 1, 1, 1, 1, 1]
    assert tracker.metrics["oom_retries"] == 2 and tracker.metrics["quality_pass_final_batch_size"] == 1
    assert tracker.tags[rs.TAG_QUALITY_PASS_BATCH_SIZES] == "1"  # every prediction was made at batch 1
    assert tracker.params["batch_size"] == "4"  # what was asked stays the param; what ran is a metric


def test_oom_at_batch_size_one_fails_the_run_with_a_clear_message(
    tiny_vlm_dirs, vqa_dir, tracking_uri, monkeypatch
):
    monkeypatch.setattr(quality_pass, "generate_prepared", oom_above(0, []))
    args = evaluate_args(tiny_vlm_dirs["llava"], vqa_dir, experiment="oom", n_samples=3, batch_size=2)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    message = f"out of memory generating with batch_size=1 for model {tiny_vlm_dirs['llava']}"
    assert message in result.output and "started at batch_size=2, 1 halvings" in result.output
    (run,) = runs_of(mlflow.MlflowClient(tracking_uri), "oom")
    assert run.info.status == "FAILED" and message in run.data.tags["vlm_quant.failure"]


def test_backoff_keeps_order_and_only_catches_oom():
    calls = []

    def work(chunk):
        calls.append(list(chunk))
        if len(chunk) > 2:
            raise torch.OutOfMemoryError("oom")
        return [x * 10 for x in chunk]

    backoff = BatchBackoff(5, model="m")
    assert backoff.run(list(range(7)), work) == [x * 10 for x in range(7)]
    assert calls[:3] == [[0, 1, 2, 3, 4], [0, 1], [2, 3]] and (backoff.retries, backoff.batch_size) == (1, 2)
    with pytest.raises(ValueError):
        BatchBackoff(2).run([1, 2], lambda chunk: (_ for _ in ()).throw(ValueError("not an OOM")))
    with pytest.raises(UserError, match="batch_size=1 for model m"):
        BatchBackoff(1, model="m").run([1], lambda chunk: (_ for _ in ()).throw(torch.OutOfMemoryError("x")))


def test_the_backoff_records_every_batch_size_that_made_predictions():
    calls: list[int] = []

    def work(chunk):
        calls.append(len(chunk))
        if len(calls) == 2:  # the second batch of 4 runs out of memory
            raise torch.OutOfMemoryError("CUDA out of memory.")
        return list(chunk)

    backoff = BatchBackoff(4)
    assert backoff.run(list(range(10)), work) == list(range(10))
    assert calls == [4, 4, 2, 2, 2]  # 4 | OOM at 4 -> 2, 2 | the rest at 2
    assert backoff.sizes_used == [4, 2] and backoff.batch_size == 2 and backoff.retries == 1
