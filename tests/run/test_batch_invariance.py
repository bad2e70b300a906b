"""Batch invariance: a seeded subset regenerated at batch 1 and compared with the batched predictions.

A fake generate() whose text depends on the batch it is called with (samples whose id is a multiple of
3 "drift" whenever the batch has more than one row) exposes a wrong formula, a regeneration that is
not at batch 1, and a subset that depends on the batch size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from vlm_quant.config import ExperimentConfig
from vlm_quant.engines.generate import GenerationSettings, single_image_request
from vlm_quant.run import batch_invariance as bi
from vlm_quant.run.quality_pass import run_quality_pass
from vlm_quant.run.runner import prepare_experiment, run_experiment
from vlm_quant.tasks.base import TaskData, TaskScores
from vlm_quant.tracking import run_schema as rs
from vlm_quant.tracking.tracker import InMemoryTracker

SETTINGS = GenerationSettings(4)


@dataclass(frozen=True)
class FakeSample:
    sample_id: int
    image_file: str


class FakeTask:
    """A VQA-named task: accuracy = share of predictions that did not drift."""

    name = "vqa"
    table_columns = ("sample_id", "prediction")

    def __init__(self, fail_scoring: bool = False) -> None:
        self.fail_scoring = fail_scoring

    def request(self, data, sample, image):
        return single_image_request(image, str(sample.sample_id))

    def score(self, data, predictions):
        if self.fail_scoring:
            raise RuntimeError("no scorer here")
        ok = [text.endswith("ok") for text in predictions.values()]
        return TaskScores({"vqa_accuracy": sum(ok) / len(ok)}, [])

    def log_extras(self, tracker, data, scores):
        pass


def drifts(sample_id: int) -> bool:
    return sample_id % 3 == 0


class FakeProcessor:
    """Model inputs that carry each row's sample id (its prompt), and new ids that decode to text."""

    tokenizer = SimpleNamespace(padding_side="right", pad_token_id=0)

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        return messages[0]["content"][1]["text"]  # the request's text: the sample id

    def __call__(self, text, images, padding, return_tensors, **kwargs):
        return {"input_ids": torch.tensor([[int(t)] for t in text])}

    def batch_decode(self, new_ids, skip_special_tokens):
        return [f"{i} {'drift' if drifted else 'ok'}" for i, drifted in new_ids.tolist()]


class FakeModel(torch.nn.Module):
    generation_config = SimpleNamespace(eos_token_id=None, pad_token_id=0)

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))  # the quality pass reads the device from it


class BatchSensitiveGenerate:
    """generate() whose output for some samples changes when their batch has more than one row."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def __call__(self, model, inputs, settings, **kwargs):
        ids = inputs["input_ids"][:, 0].tolist()
        self.batch_sizes.append(len(ids))
        return torch.tensor([[i, int(len(ids) > 1 and drifts(i))] for i in ids])


MODEL, PROCESSOR = FakeModel(), FakeProcessor()


@pytest.fixture()
def fake_generate(monkeypatch):
    fake = BatchSensitiveGenerate()
    monkeypatch.setattr("vlm_quant.run.quality_pass.generate_prepared", fake)  # batched and batch 1 alike
    return fake


def fake_data(n: int = 20) -> TaskData:
    samples = {i: FakeSample(i, f"{i}.jpg") for i in range(n)}
    return TaskData("fake", "val", samples, list(range(n)), lambda s: Image.new("RGB", (8, 8)))


def batched_predictions(task, data, batch_size: int) -> dict[int, str]:
    result = run_quality_pass(
        MODEL, PROCESSOR, task, data, batch_size=batch_size, max_image_side=64, settings=SETTINGS,
        dtype=torch.float32, progress=False,
    )
    return result.predictions


def check(task, data, predictions, *, n: int = 6, seed: int = 0, batch_size: int = 4):
    return bi.check_batch_invariance(
        MODEL, PROCESSOR, task, data, predictions, batch_size=batch_size, n_samples=n, seed=seed,
        settings=SETTINGS, dtype=torch.float32, max_image_side=64,
    )


def test_agreement_and_delta_compare_batch_1_with_the_batched_predictions(fake_generate):
    task, data = FakeTask(), fake_data(20)
    predictions = batched_predictions(task, data, batch_size=4)  # 5 full batches: every id % 3 == 0 drifted
    fake_generate.batch_sizes.clear()
    result = check(task, data, predictions, n=6)

    subset = list(result.batch_1)
    assert len(subset) == 6 and fake_generate.batch_sizes == [1] * 6  # each one alone, nothing else
    drifted = sum(drifts(i) for i in subset)
    assert 0 < drifted < 6  # the seed's subset has both kinds, so the formula is exposed
    assert result.agreement == pytest.approx((6 - drifted) / 6)
    assert all(result.batch_1[i] == f"{i} ok" for i in subset)
    # Accuracy on the subset: 1 at batch 1, the non-drifted share batched.
    assert result.delta == pytest.approx(1 - (6 - drifted) / 6)
    rows = {row["sample_id"]: row for row in result.rows()}
    assert [rows[i]["identical"] for i in subset] == [not drifts(i) for i in subset]
    assert all(rows[i]["batched_prediction"] == predictions[i] for i in subset)


def test_subset_is_seeded_and_independent_of_the_batch_size(fake_generate):
    task, data = FakeTask(), fake_data(20)
    subsets = {
        b: list(check(task, data, batched_predictions(task, data, b), n=5, batch_size=b).batch_1)
        for b in (2, 5)
    }
    assert subsets[2] == subsets[5]
    assert bi.invariance_subset(list(range(20)), 5, seed=0) == subsets[2]
    assert bi.invariance_subset(list(range(20)), 5, seed=1) != subsets[2]
    assert bi.invariance_subset(list(reversed(range(20))), 5, seed=0) == list(reversed(subsets[2]))
    assert set(bi.invariance_subset(list(range(20)), 3, seed=0)) < set(subsets[2])  # sizes nest
    assert bi.invariance_subset([1, 2], 16, seed=0) == [1, 2]  # min(n, predicted)


def prepared_run(data: TaskData, task, **cfg):
    config = ExperimentConfig.from_mapping({"data_dir": "unused", "max_image_side": 64, **cfg})
    return SimpleNamespace(
        cfg=config, task=task, data=data, settings=SETTINGS, dtype=torch.float32, device=torch.device("cpu")
    )


@pytest.mark.parametrize(
    ("cfg", "n", "final", "reason"),
    [
        ({"batch_size": 1}, 20, 1, bi.AT_BATCH_1),
        ({"batch_size": 8}, 1, 8, bi.AT_BATCH_1),  # one sample: its batch had one row
        ({"batch_size": 4}, 20, 1, bi.AT_BATCH_1),  # the OOM back-off went down to batch 1
        ({"batch_size": 4, "invariance_samples": 0}, 20, 4, bi.DISABLED),
    ],
)
def test_nothing_compared_is_absent_with_a_reason(fake_generate, cfg, n, final, reason):
    data = fake_data(n)
    tracker = InMemoryTracker()
    quality = SimpleNamespace(predictions={i: f"{i} ok" for i in data.ids}, final_batch_size=final)
    loaded = SimpleNamespace(model=MODEL, processor=PROCESSOR)
    metrics = bi.measure_and_log(prepared_run(data, FakeTask(), **cfg), loaded, quality, tracker)
    assert metrics == {} and fake_generate.batch_sizes == []
    assert tracker.tags[rs.TAG_BATCH_INVARIANCE_ABSENT] == reason
    assert not any("batch_invariance" in key for key in tracker.metrics)
    assert rs.ARTIFACT_BATCH_INVARIANCE not in tracker.artifacts


def test_logged_when_batched_and_delta_absent_when_the_subset_cannot_be_scored(fake_generate):
    data = fake_data(12)
    task = FakeTask(fail_scoring=True)
    predictions = batched_predictions(task, data, batch_size=4)
    tracker = InMemoryTracker()
    metrics = bi.measure_and_log(
        prepared_run(data, task, batch_size=4, invariance_samples=8, seed=3),
        SimpleNamespace(model=MODEL, processor=PROCESSOR), SimpleNamespace(predictions=predictions), tracker,
    )
    agreement = metrics[rs.METRIC_BATCH_INVARIANCE_AGREEMENT]
    assert tracker.metrics[rs.METRIC_BATCH_INVARIANCE_AGREEMENT] == agreement < 1
    assert rs.batch_invariance_delta_metric("vqa") not in tracker.metrics
    assert "no scorer here" in tracker.tags[rs.TAG_BATCH_INVARIANCE_DELTA_ABSENT]
    assert tracker.params[rs.PARAM_BATCH_INVARIANCE_N] == "8"
    assert tracker.params[rs.PARAM_BATCH_INVARIANCE_BATCH_SIZE] == "4"
    assert len(tracker.artifacts[rs.ARTIFACT_BATCH_INVARIANCE].splitlines()) == 8


def test_a_tiny_vlm_run_logs_the_agreement_and_its_artifact(tiny_vlm_dirs, coco_dir):
    cfg = ExperimentConfig.from_mapping(
        dict(
            model=str(tiny_vlm_dirs["qwen2_vl"]), data_dir=str(coco_dir), n_samples=4, batch_size=2,
            max_new_tokens=4, invariance_samples=3, log_model=False, cost_samples=1, cost_iterations=1,
            cost_warmup=0, cost_new_tokens=2, idle_seconds=0,
        )
    )
    tracker = InMemoryTracker()
    run_experiment(prepare_experiment(cfg), tracker, progress=False)
    assert tracker.metrics["batch_invariance_s"] > 0
    delta = rs.batch_invariance_delta_metric("captioning")
    assert delta in tracker.metrics or rs.TAG_BATCH_INVARIANCE_DELTA_ABSENT in tracker.tags
    assert tracker.params[rs.PARAM_BATCH_INVARIANCE_N] == "3"
    assert tracker.params[rs.PARAM_BATCH_INVARIANCE_BATCH_SIZE] == "2"
    rows = [json.loads(line) for line in tracker.artifacts[rs.ARTIFACT_BATCH_INVARIANCE].splitlines()]
    logged = [json.loads(line) for line in tracker.artifacts[rs.ARTIFACT_PREDICTIONS_JSONL].splitlines()]
    logged = {r["image_id"]: r["prediction"] for r in logged}
    for row in rows:
        assert row["batched_prediction"] == logged[row["sample_id"]]
        assert row["identical"] == (row["batched_prediction"] == row["batch_1_prediction"])
    assert len(rows) == 3
    # The logged agreement is the share of the logged rows whose two predictions are identical.
    identical = sum(row["batched_prediction"] == row["batch_1_prediction"] for row in rows)
    assert tracker.metrics[rs.METRIC_BATCH_INVARIANCE_AGREEMENT] == identical / 3


def test_caption_subset_delta_is_scored_with_the_real_scorer(coco_dir):
    from vlm_quant.tasks.captioning import CaptioningTask

    task = CaptioningTask()
    data = task.prepare(ExperimentConfig.from_mapping({"data_dir": str(coco_dir), "n_samples": 4, "seed": 1}))
    batched = {i: data.samples[i].references[0] for i in data.ids}  # a human caption: high CIDEr
    batch_1 = {**batched, data.ids[0]: "a a a a"}
    delta, reason = bi.subset_delta(task, data, batched, batch_1)
    assert reason is None and delta < 0
    assert bi.subset_delta(task, data, batched, dict(batched)) == (0.0, None)


def test_the_delta_is_recomputed_from_the_logged_rows(fake_generate):
    """What `score run` does for a run whose subset could not be scored when it ran."""
    task, data = FakeTask(), fake_data(20)
    result = check(task, data, batched_predictions(task, data, batch_size=4), n=6)
    logged = [*result.rows(), {"sample_id": 99, "skipped": "unreadable image"}]  # a skipped row is no pair
    text = "".join(json.dumps(row) + "\n" for row in logged)
    assert bi.delta_from_rows(task, data, text) == (pytest.approx(result.delta), None)
    assert result.delta > 0  # the drifted samples score lower batched: a wrong pairing would show
    assert bi.delta_from_rows(task, data, "") == (None, "the logged check compared no sample of this split")
