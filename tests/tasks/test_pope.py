"""POPE: construction (deterministic, balanced, negatives absent), the answer parser, the metrics."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.tasks.coco_instances import CocoInstances, read_instances
from vlm_quant.tasks.pope import PopeTask
from vlm_quant.tasks.pope_data import build_pope, negatives, object_statistics, read_pope_file
from vlm_quant.tasks.pope_metrics import parse_yes_no, score_pope

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


def test_popular_and_adversarial_negatives_by_hand():
    frequency, together = object_statistics(TOY.objects)
    assert frequency["person"] == 3 and together[("car", "person")] == 2
    present = TOY.categories_of(4)  # {cat}: nothing co-occurs with it
    popular = negatives(present, 2, "popular", TOY.categories, frequency, together, None)
    assert popular == ["person", "car"]  # 3 images, then 2
    present = TOY.categories_of(1)  # dog, person, frisbee: car co-occurs with person twice
    adversarial = negatives(present, 2, "adversarial", TOY.categories, frequency, together, None)
    assert adversarial == ["car", "traffic light"]


def test_construction_is_deterministic_balanced_and_negatives_are_absent():
    ids = [1, 2, 3, 4]
    first = build_pope(TOY, FILES, ids, k=3, seed=7)
    assert first == build_pope(TOY, FILES, ids, k=3, seed=7)
    counts = Counter((s.pope_split, s.label) for s in first)
    for split in ("random", "popular", "adversarial"):
        assert counts[(split, "yes")] == counts[(split, "no")] == 3 + 2 + 3 + 1
    for s in first:
        assert (s.object in TOY.categories_of(s.image_id)) == (s.label == "yes")
        assert s.question == f"Is there a {s.object} in the image?"
    positives = {(s.pope_split, s.image_id): s.object for s in first if s.label == "yes"}
    assert {k[0] for k in positives} == {"random", "popular", "adversarial"}
    seeds = {tuple(s.object for s in build_pope(TOY, FILES, ids, k=1, seed=seed)) for seed in range(8)}
    assert len(seeds) > 1  # the seed matters


def test_real_slice_construction(coco_dir):
    instances = read_instances(coco_dir / "annotations" / "instances_val2017.json")
    files = {i: f"val2017/{n}" for i, n in instances.file_names.items()}
    questions = build_pope(instances, files, sorted(instances.objects), k=3, seed=0)
    assert all((s.object in instances.categories_of(s.image_id)) == (s.label == "yes") for s in questions)
    per_split = Counter((s.pope_split, s.label) for s in questions)
    assert per_split[("adversarial", "yes")] == per_split[("adversarial", "no")] > 3 * 60


def test_task_prepare_selects_images_and_logs_construction(coco_dir):
    cfg = ExperimentConfig.from_mapping({"task": "pope", "data_dir": str(coco_dir), "n_samples": 5})
    task = PopeTask()
    data = task.prepare(cfg)
    assert len({data.samples[i].image_id for i in data.ids}) == 5
    assert [data.samples[i].pope_split for i in data.ids] == sorted(
        (data.samples[i].pope_split for i in data.ids), key=("random", "popular", "adversarial").index
    )
    assert data.ids == PopeTask().prepare(cfg).ids
    assert "built from" in data.params["pope_source"] and cfg.max_new_tokens == 16


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
