"""The VQA task: prompt, seeded disjoint few-shot pool, interleaved requests, scoring, extras, a tiny run."""

import dataclasses
import json

import pytest
from vqa_layouts import build_vqav2

from vlm_quant.config import ExperimentConfig
from vlm_quant.engines.generate import single_image_request
from vlm_quant.errors import UserError
from vlm_quant.models.families import family_by_name
from vlm_quant.tasks.vqa import (
    DEFAULT_VQA_PROMPT,
    VqaTask,
    check_shots_supported,
    few_shot_ids,
    format_prompt,
    prompt_template,
)
from vlm_quant.tasks.vqa_metrics import normalize_answer, score_vqa
from vlm_quant.tracking.tracker import InMemoryTracker

ROW_KEYS = {
    "sample_id",
    "question_id",
    "image_id",
    "image_file",
    "question",
    "prompt",
    "prediction",
    "answers",
    "accuracy",
    "answer_type",
    "question_type",
}


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory, coco_dir):
    return build_vqav2(tmp_path_factory.mktemp("vqa") / "vqav2", coco_dir)["root"]


def prepared(vqa_dir, **values):
    cfg = ExperimentConfig.from_mapping({"task": "vqa", "data_dir": str(vqa_dir), "n_samples": 6, **values})
    task = VqaTask()
    return task, task.prepare(cfg)


def test_default_prompt_is_logged_as_a_template(vqa_dir):
    _, data = prepared(vqa_dir)
    assert data.params["prompt"] == "{question}\n" + DEFAULT_VQA_PROMPT
    assert (data.params["shots"], data.params["shot_ids"]) == (0, [])
    assert prompt_template("Short answer: {question}") == "Short answer: {question}"
    assert format_prompt("Q: {question} A:", "What is {this}? ") == "Q: What is {this}? A:"


def test_zero_shot_request_is_one_image_and_the_question(vqa_dir):
    task, data = prepared(vqa_dir)
    sample = data.samples[data.ids[0]]
    image = data.open_image(sample)
    request = task.request(data, sample, image)
    assert request == single_image_request(image, f"{sample.question}\n{DEFAULT_VQA_PROMPT}")


def test_few_shot_pool_is_seeded_and_disjoint_from_the_evaluated_questions_and_images(vqa_dir):
    _, data = prepared(vqa_dir, shots=3, seed=4)
    shots, ids = data.params["shot_ids"], data.ids
    assert len(shots) == 3 and not set(shots) & set(ids)
    evaluated_images = {data.samples[i].image_id for i in ids}
    assert not {data.samples[i].image_id for i in shots} & evaluated_images
    assert prepared(vqa_dir, shots=3, seed=4)[1].params["shot_ids"] == shots
    assert prepared(vqa_dir, shots=3, seed=5)[1].params["shot_ids"] != shots
    with pytest.raises(UserError, match="shots=2 needs 2 solved examples .* only 0 remain"):
        few_shot_ids(data.samples, sorted(data.samples), 2, seed=0)


def test_few_shot_request_interleaves_k_solved_turns_before_the_question(vqa_dir):
    task, data = prepared(vqa_dir, shots=2, max_image_side=64)
    sample = data.samples[data.ids[0]]
    image = data.open_image(sample)
    request = task.request(data, sample, image)
    roles = [m["role"] for m in request.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    users = [m for m in request.messages if m["role"] == "user"]
    assert all(m["content"][0] == {"type": "image"} for m in users)  # one image per user turn
    assert (
        sum(c["type"] == "image" for m in request.messages for c in m["content"]) == len(request.images) == 3
    )
    shots = [data.samples[i] for i in data.params["shot_ids"]]
    assert [m["content"][0]["text"] for m in request.messages if m["role"] == "assistant"] == [
        s.consensus_answer for s in shots
    ]
    assert users[0]["content"][1]["text"] == format_prompt(data.params["prompt"], shots[0].question)
    assert users[-1]["content"][1]["text"] == format_prompt(data.params["prompt"], sample.question)
    assert request.images[-1] is image and all(max(im.size) <= 64 for im in request.images[:2])


def test_check_shots_supported_by_family():
    check_shots_supported(family_by_name("idefics3"), 2)
    check_shots_supported("qwen2_vl", 4)
    check_shots_supported("llava", 0)
    with pytest.raises(UserError, match="shots=1 .* the llava family does not support several images"):
        check_shots_supported(family_by_name("llava"), 1)


def test_score_matches_score_vqa_on_normalised_answers(vqa_dir):
    task, data = prepared(vqa_dir, n_samples=12)
    guesses = ("Yes.", "2", "Red", "no", "purple", "Two")
    predictions = {i: guesses[n % len(guesses)] for n, i in enumerate(data.ids)}
    scores = task.score(data, predictions)
    annotations = {i: data.samples[i].annotation() for i in predictions}
    expected = score_vqa(
        {i: normalize_answer(p) for i, p in predictions.items()}, annotations, normalize_prediction=True
    )
    assert scores.corpus["vqa_accuracy"] == pytest.approx(expected.accuracy)
    for answer_type, value in expected.per_answer_type.items():
        assert scores.corpus[f"vqa_accuracy_{answer_type.replace('/', '_')}"] == pytest.approx(value)
    official = score_vqa(predictions, annotations)  # the official script on the raw answers
    assert scores.corpus["vqa_accuracy_official"] == pytest.approx(official.accuracy)
    assert scores.corpus["vqa_accuracy_official"] <= scores.corpus["vqa_accuracy"]  # never above
    assert set(scores.corpus) <= {
        "vqa_accuracy",
        "vqa_accuracy_official",
        "vqa_accuracy_yes_no",
        "vqa_accuracy_number",
        "vqa_accuracy_other",
    }
    assert all(0.0 <= v <= 1.0 for v in scores.corpus.values())
    rows = {r["sample_id"]: r for r in scores.rows}
    assert [r["sample_id"] for r in scores.rows] == list(predictions)
    for i, row in rows.items():
        assert ROW_KEYS <= set(row)
        assert row["accuracy"] == pytest.approx(expected.per_question[i])
        assert row["accuracy_official"] == pytest.approx(official.per_question[i])
        assert row["accuracy_official"] <= row["accuracy"]
        assert row["prediction"] == predictions[i] and len(row["answers"]) == 10
        assert row["prompt"] == format_prompt(data.params["prompt"], row["question"])
        json.dumps(row)


def test_unanimous_humans_accept_a_chat_models_punctuated_answer(vqa_dir):
    task, data = prepared(vqa_dir, n_samples=0)
    unanimous = next(i for i, s in data.samples.items() if set(s.answers) == {"no"})
    row = task.score(data, {unanimous: "No."}).rows[0]
    assert (row["accuracy"], row["accuracy_official"]) == (1.0, 0.0)
    assert score_vqa({unanimous: "No."}, {unanimous: data.samples[unanimous].annotation()}).accuracy == 0.0


@pytest.mark.parametrize("answer", ["none", "two", "the beach", "t-shirt"])
def test_exact_answer_to_unanimous_humans_scores_one(vqa_dir, answer):
    # The prediction is normalised ("none" -> "0"); the unanimous humans must be normalised the same
    # way, or an answer the official script scores 1.0 scores 0.0 here.
    task, data = prepared(vqa_dir, n_samples=1)
    sample_id = data.ids[0]
    data.samples[sample_id] = dataclasses.replace(data.samples[sample_id], answers=(answer,) * 10)
    row = task.score(data, {sample_id: answer}).rows[0]
    assert row["scored_answer"] == normalize_answer(answer) != answer
    assert row["accuracy"] == 1.0
    assert task.score(data, {sample_id: "wrong"}).rows[0]["accuracy"] == 0.0


def test_log_extras_writes_examples_question_types_few_shot_and_the_spotcheck(vqa_dir):
    task, data = prepared(vqa_dir, n_samples=8, shots=1, spotcheck_n=5)
    scores = task.score(data, {i: "yes" for i in data.ids})
    tracker = InMemoryTracker()
    task.log_extras(tracker, data, scores)
    examples = tracker.artifacts["predictions/examples_by_answer_type.json"]
    assert sum(v["n"] for v in examples.values()) == 8
    assert set(examples) == {data.samples[i].answer_type for i in data.ids}
    assert all(1 <= len(v["examples"]) <= 5 for v in examples.values())
    table = tracker.artifacts["vqa/accuracy_by_question_type.json"]
    assert sum(table["n"]) == 8 and table["n"] == sorted(table["n"], reverse=True)
    few_shot = tracker.artifacts["vqa/few_shot_examples.json"]
    assert [e["sample_id"] for e in few_shot["examples"]] == data.params["shot_ids"]
    csv_text = tracker.artifacts["spotcheck/spotcheck.csv"]
    assert len(csv_text.strip().splitlines()) == 1 + 5
    assert tracker.artifacts["spotcheck/spotcheck.html"].count("data:image/jpeg;base64,") == 5


# --- end to end: a tiny random VLM through the runner ------------------------------------------------


def _vqa_registered() -> bool:
    from vlm_quant.tasks.registry import make_task

    try:
        return isinstance(make_task("vqa"), VqaTask)
    except UserError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(
    not _vqa_registered(), reason="'vqa' is not registered in vlm_quant/tasks/registry.py yet"
)
def test_end_to_end_tiny_smolvlm_one_shot_vqa_run(request, vqa_dir):
    """The whole runner on a tiny random SmolVLM (idefics3), one-shot: two images per prompt."""
    family, shots = "idefics3", 1
    pytest.importorskip("tiny_vlms", reason="tests/tiny_vlms.py (tiny VLM builder) not available yet")
    runner = pytest.importorskip(
        "vlm_quant.run.runner", reason="the runner's model loading is not importable yet"
    )
    model_dir = request.getfixturevalue("tiny_vlm_dirs")[family]
    cfg = ExperimentConfig.from_mapping(
        {
            "task": "vqa",
            "model": str(model_dir),
            "data_dir": str(vqa_dir),
            "n_samples": 6,
            "batch_size": 2,
            "max_new_tokens": 4,
            "shots": shots,
            "log_model": False,
            "device": "cpu",
            "max_image_side": 64,
            "cost_samples": 2,
            "cost_iterations": 1,
            "cost_warmup": 0,
            "cost_new_tokens": 2,
        }
    )
    tracker = InMemoryTracker()
    summary = runner.run_experiment(runner.prepare_experiment(cfg), tracker, progress=False)
    assert summary.n_predictions + summary.n_skipped == 6 and summary.n_predictions > 0
    assert 0.0 <= tracker.metrics["vqa_accuracy"] <= 1.0
    assert tracker.params["prompt"] == "{question}\n" + DEFAULT_VQA_PROMPT
    assert tracker.params["shots"] == str(shots) and tracker.params["dataset"] == "vqav2"
    rows = [json.loads(line) for line in tracker.artifacts["predictions/predictions.jsonl"].splitlines()]
    assert len(rows) == summary.n_predictions and all(ROW_KEYS <= set(r) for r in rows)
    assert len(tracker.artifacts["spotcheck/spotcheck.csv"].strip().splitlines()) == 1 + summary.n_predictions
    assert ("vqa/few_shot_examples.json" in tracker.artifacts) == bool(shots)


@pytest.mark.slow
@pytest.mark.skipif(
    not _vqa_registered(), reason="'vqa' is not registered in vlm_quant/tasks/registry.py yet"
)
def test_few_shot_on_a_single_image_family_is_refused(request, vqa_dir):
    """Fails until the runner calls check_shots_supported (the lead wires it during integration)."""
    pytest.importorskip("tiny_vlms", reason="tests/tiny_vlms.py (tiny VLM builder) not available yet")
    runner = pytest.importorskip(
        "vlm_quant.run.runner", reason="the runner's model loading is not importable yet"
    )
    model_dir = request.getfixturevalue("tiny_vlm_dirs")["llava"]
    cfg = ExperimentConfig.from_mapping(
        {
            "task": "vqa",
            "model": str(model_dir),
            "data_dir": str(vqa_dir),
            "n_samples": 2,
            "shots": 1,
            "log_model": False,
            "device": "cpu",
            "max_new_tokens": 2,
            "max_image_side": 64,
            "cost_samples": 1,
            "cost_iterations": 1,
            "cost_warmup": 0,
            "cost_new_tokens": 1,
        }
    )
    with pytest.raises(UserError, match="llava family does not support several images"):
        runner.run_experiment(runner.prepare_experiment(cfg), InMemoryTracker(), progress=False)
