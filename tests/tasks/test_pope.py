"""POPE: construction (deterministic, balanced, negatives absent), the answer parser, the metrics."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter

import pytest

from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.run.scoring import score_and_log
from vlm_quant.tasks.coco_instances import CocoInstances
from vlm_quant.tasks.pope import PopeTask
from vlm_quant.tasks.pope_construction import (
    build_questions,
    draw_negatives,
    eligible_images,
    object_statistics,
    pope_question,
)
from vlm_quant.tasks.pope_data import read_pope_file
from vlm_quant.tasks.pope_metrics import parse_yes_no, score_pope
from vlm_quant.tracking.tracker import InMemoryTracker

TOY = CocoInstances(
    "toy",
    {
        1: ("dog", "dog", "person", "frisbee"),
        2: ("person", "car"),
        3: ("person", "car", "traffic light"),
        4: ("cat",),
        5: (),
    },
    ("person", "car", "traffic light", "dog", "frisbee", "cat", "zebra"),
)
IMAGE_139 = "COCO_val2014_000000000139.jpg"  # POPE's files name val2014 images
FILES = {i: f"val2017/{i:012d}.jpg" for i in TOY.objects}


def test_negatives_by_hand():
    # images in order 1, 2, 3: person is in 3 images, car in 2 (seen after person), dog/frisbee/light in 1
    stats = object_statistics([("dog", "person", "frisbee"), ("person", "car"), ("person", "car", "light")])
    assert stats.popular[:2] == ("person", "car") and stats.co_occurring["person"][0] == "car"
    rng = random.Random(0)
    # popular: the most frequent absent objects, one per positive, never twice
    assert draw_negatives(("light", "dog"), 2, "popular", stats, rng, ()) == ["person", "car"]
    # adversarial: per positive; dog's co-occurring person and frisbee are absent from ("dog", "car")
    assert draw_negatives(("dog", "car"), 2, "adversarial", stats, rng, ()) == ["person", "light"]
    # nothing left among the seen objects: drawn from the file's categories
    every_seen = ("dog", "person", "frisbee", "car", "light")
    assert draw_negatives(every_seen, 1, "random", stats, rng, ("light", "zebra")) == ["zebra"]


def test_questions_use_an_before_vowels():
    assert pope_question("oven") == "Is there an oven in the image?"
    assert pope_question("traffic light") == "Is there a traffic light in the image?"


def test_construction_is_deterministic_balanced_and_negatives_are_absent():
    ids = [1, 3]
    first, _ = build_questions(TOY, ids, k=3, seed=7)
    assert first == build_questions(TOY, ids, k=3, seed=7)[0]
    counts = Counter((q.pope_split, q.label) for q in first)
    for split in ("random", "popular", "adversarial"):
        assert counts[(split, "yes")] == counts[(split, "no")] == 3 + 3
    for q in first:
        assert (q.object in TOY.categories_of(q.image_id)) == (q.label == "yes")
    with pytest.raises(ValueError, match="fewer than k=3"):
        build_questions(TOY, [1, 2], k=3, seed=7)
    assert eligible_images(TOY, FILES, 3) == [1, 3]


def test_task_asks_each_distinct_question_once_and_scores_it_in_every_split(coco_dir):
    cfg = ExperimentConfig.from_mapping({"task": "pope", "data_dir": str(coco_dir), "n_samples": 5})
    task = PopeTask()
    data = task.prepare(cfg)
    rows = list(data.samples.values())
    assert len({s.image_id for s in rows}) == 5 and len(rows) == 5 * 3 * 6
    asked = [(data.samples[i].image_id, data.samples[i].question) for i in data.ids]
    assert len(asked) == len(set(asked)) == len({(s.image_id, s.question) for s in rows})
    assert data.ids == PopeTask().prepare(cfg).ids
    # answer "yes" to positives, "NO" (read as yes by POPE's rule) to every negative
    predictions = {i: "Yes" if data.samples[i].label == "yes" else "NO" for i in data.ids}
    scores = task.score(data, predictions)
    assert len(scores.rows) == len(rows) and scores.corpus["pope_distinct_n"] == len(data.ids)
    for split in ("random", "popular", "adversarial"):
        assert scores.corpus[f"pope_{split}_n"] == 30 and scores.corpus[f"pope_{split}_yes_ratio"] == 1.0
        assert scores.corpus[f"pope_{split}_doubtful_n"] == 15
        strict = (scores.corpus[f"pope_strict_{split}_{m}"] for m in ("accuracy", "f1"))
        assert list(strict) == [1.0, 1.0]  # the strict reading takes "NO" as no
    negatives = {i for i in data.ids if data.samples[i].label == "no"}
    assert scores.corpus["pope_doubtful_answers_n"] == len(negatives)
    positive_rows = [r for r in scores.rows if r["label"] == "yes"]
    asked_in = {r["pope_split"] for r in positive_rows if r["distinct_question_id"] == r["sample_id"]}
    assert asked_in == {"random"}
    assert all(r["prediction"] == "Yes" and r["correct"] == 1.0 for r in positive_rows)


def test_published_file_is_read_as_is(coco_dir, tmp_path):
    lines = [
        {"question_id": 11, "image": IMAGE_139, "text": "Is there a tv?", "label": "yes"},
        {"question_id": 12, "image": IMAGE_139, "text": "Is there a cow?", "label": "no"},
    ]
    path = tmp_path / "coco_pope_popular.json"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    samples = read_pope_file(path, lambda image_id, name: f"val2017/{image_id:012d}.jpg")
    assert [(s.question_id, s.pope_split, s.image_id, s.question, s.label) for s in samples] == [
        (11, "popular", 139, "Is there a tv?", "yes"), (12, "popular", 139, "Is there a cow?", "no"),
    ]
    cfg = ExperimentConfig.from_mapping(
        {"task": "pope", "data_dir": str(coco_dir), "n_samples": 1, "pope_file": str(path)}
    )
    data = PopeTask().prepare(cfg)
    assert [data.samples[i].image_file for i in data.ids] == ["val2017/000000000139.jpg"] * 2
    missing = {"question_id": 13, "image": "COCO_val2014_000000000042.jpg", "text": "Is there a cat?"}
    missing["label"] = "no"
    path.write_text("".join(json.dumps(line) + "\n" for line in [*lines, missing]))
    with pytest.raises(UserError, match=r"1 of its 2 images are not in .*val2014.*pope_allow_subset=true"):
        PopeTask().prepare(cfg)
    subset = PopeTask().prepare(dataclasses.replace(cfg, pope_allow_subset=True))
    assert [subset.samples[i].question_id for i in subset.ids] == [11, 12]
    path.write_text('{"question_id": 1, "image": "x_1.jpg", "text": "Is there a cat?", "label": "maybe"}\n')
    with pytest.raises(UserError, match="neither yes nor no"):
        read_pope_file(path, lambda i, n: n)


@pytest.mark.parametrize(
    "answer, parsed",
    [
        ("Yes", "yes"), ("Yes.", "yes"), ("yes, there is", "yes"), ("YES! There is a dog.", "yes"),
        (" yeah", "yes"), ("There is a cat in the image.", "yes"), ("I can see a bus.", "yes"),
        ("No", "no"), ("No.", "no"), ("no, there isn't", "no"), ("There is no dog in the image.", "no"),
        ("There isn't any car.", "no"), ("I don't see a cat.", "no"), ("Not really.", "no"),
        ("The image doesn\u2019t show one.", "no"), ("Nope", "no"),
        ("", None), ("A dog.", None), ("maybe", None), ("...", None), ("Assistant:", None),
    ],
)
def test_answer_parser(answer, parsed):
    assert parse_yes_no(answer) == parsed


def test_metrics_by_hand():
    pairs = [("yes", "yes"), ("yes", "no"), ("yes", None), ("no", "yes"), ("no", "no"), ("no", None)]
    s = score_pope(pairs)
    assert (s.tp, s.fp, s.tn, s.fn, s.n_unparsed) == (1, 1, 1, 2, 2)
    assert s.accuracy == pytest.approx(2 / 6) and s.precision == pytest.approx(1 / 2)
    assert s.recall == pytest.approx(1 / 3) and s.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert s.yes_ratio == pytest.approx(2 / 6)
    never_yes = score_pope([("yes", "no"), ("no", "no")])
    assert never_yes.precision is None and "pope_x_precision" not in never_yes.metrics("pope_x")
    assert never_yes.metrics("pope_x")["pope_x_accuracy"] == 0.5


def test_lmms_lab_layout_through_datasets_is_read_as_is(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    rows = {
        "id": ["0", "1"], "question_id": ["7", "8"],
        "question": ["Is there a snowboard in the image?", "Is there a car in the image?"],
        "answer": ["yes", "no"], "image_source": ["COCO_val2014_000000310196", "COCO_val2014_000000310196"],
        "category": ["adversarial", "random"], "image": [Image.new("RGB", (8, 8))] * 2,
    }
    features = datasets.Features({
        **{k: datasets.Value("string") for k in rows if k != "image"}, "image": datasets.Image(),
    })
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "pope"))
    cfg = ExperimentConfig.from_mapping(
        {"task": "pope", "source": "hf", "hf_dataset": str(tmp_path / "pope"), "n_samples": 0}
    )
    task = PopeTask()
    data = task.prepare(cfg)
    samples = [data.samples[i] for i in data.ids]
    assert [(s.pope_split, s.question_id, s.image_id, s.label) for s in samples] == [
        ("random", "8", 310196, "no"), ("adversarial", "7", 310196, "yes"),
    ]
    assert data.open_image(samples[0]).size == (8, 8)
    assert "read as is" in data.params["pope_source"]


def test_scoring_screens_each_generated_answer_once(coco_dir):
    cfg = ExperimentConfig.from_mapping({"task": "pope", "data_dir": str(coco_dir), "n_samples": 2})
    task = PopeTask()
    data = task.prepare(cfg)
    predictions = {i: "Yes, mail me at someone@example.com" for i in data.ids}
    metrics = score_and_log(InMemoryTracker(), task, data, predictions)
    assert metrics["pope_n"] == 2 * 3 * 6 > metrics["safety_flagged_n"] == len(data.ids)
