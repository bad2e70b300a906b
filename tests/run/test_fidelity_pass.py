"""The runner logs fidelity to the unquantized model for a quantized plan, and nothing for a baseline."""

from __future__ import annotations

import pytest

from vlm_quant.config import ExperimentConfig
from vlm_quant.run.fidelity_pass import fidelity_candidates
from vlm_quant.run.runner import prepare_experiment, run_experiment
from vlm_quant.tasks.pope import PopeTask
from vlm_quant.tracking import run_schema
from vlm_quant.tracking.tracker import InMemoryTracker

FAST = dict(
    n_samples=3,
    batch_size=1,
    max_new_tokens=3,
    log_model=False,
    cost_samples=1,
    fidelity_samples=2,
    fidelity_new_tokens=3,
    cost_iterations=1,
    cost_warmup=0,
    cost_new_tokens=2,
    idle_seconds=0,
)


def _run(model_dir, coco_dir, quant):
    cfg = ExperimentConfig.from_mapping(
        dict(model=str(model_dir), data_dir=str(coco_dir), quant=quant, **FAST)
    )
    tracker = InMemoryTracker()
    run_experiment(prepare_experiment(cfg), tracker, progress=False)
    return tracker


def test_quantized_run_logs_fidelity_and_baseline_does_not(tiny_vlm_dirs, coco_dir):
    quantized = _run(tiny_vlm_dirs["idefics3"], coco_dir, "w8a8-ao")
    metrics = quantized.metrics
    assert set(run_schema.FIDELITY_METRICS) <= set(metrics)
    # Only the language model is quantized: the vision tower and projector are untouched, every token.
    for role in ("vision", "projector"):
        assert metrics[f"fidelity_{role}_cosine_token_p5"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["fidelity_logits_kl_nats_token_mean"] > 0.0
    artifact = quantized.artifacts["fidelity/fidelity.json"]
    rows = artifact["rows"]
    # Its own set: fidelity_samples=2 distinct images of the 3 evaluated (the cost micro-set has 1).
    assert len(rows) == 2 == metrics["fidelity_n_images"]
    assert len({row["image"] for row in rows}) == 2
    assert set(artifact["ids"]) <= set(quantized.artifacts["split/ids.json"]["ids"])
    # KL and top-1 pool every teacher-forced continuation position (up to fidelity_new_tokens=3 each).
    lengths = [len(row["continuation_ids"]) for row in rows]
    assert all(1 <= n <= 3 for n in lengths) and sum(lengths) == metrics["fidelity_n_positions"]
    assert sum(lengths) > 2  # more than the one first-token position per image of the old metric

    baseline = _run(tiny_vlm_dirs["idefics3"], coco_dir, "fp16")
    assert not set(run_schema.FIDELITY_METRICS) & set(baseline.metrics)


def test_pope_fidelity_set_is_one_question_per_distinct_image(coco_dir):
    # POPE asks many questions about each image: the fidelity set takes one question of each image.
    cfg = ExperimentConfig.from_mapping({"task": "pope", "data_dir": str(coco_dir), "n_samples": 5})
    data = PopeTask().prepare(cfg)
    assert len(data.ids) > 5 * 2
    candidates = fidelity_candidates(data.samples, data.ids, seed=0)
    assert set(candidates) <= set(data.ids)
    assert len(candidates) == len({data.samples[i].image_file for i in candidates}) == 5
