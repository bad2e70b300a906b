"""POPE against its published rules (github.com/RUCAIBox/POPE), on the real slice's 79 annotated images.

The references below are written from a reading of POPE's ``utils.py`` (``pope``, ``create_question``,
``generate_ground_truth_objects``, ``compute_co_occurrence``), ``main.py`` (the >= sample_num filter) and
``evaluate.py`` (the answer rule), kept in their shape (lists, history, insertion-ordered dicts, stable
sorts) and independent of the package's code. Only the inputs POPE's code takes from outside are the
package's: each image's object list (POPE's segmentation file; here the seeded order of `image_objects`)
and the random stream of each image and split (POPE uses one unseeded stream).
"""

from __future__ import annotations

import random

import pytest

from vlm_quant.tasks.coco_instances import read_instances
from vlm_quant.tasks.pope_construction import (
    POPE_SPLITS,
    build_questions,
    eligible_images,
    image_objects,
)
from vlm_quant.tasks.pope_metrics import is_doubtful, read_as_published

SAMPLE_NUM = 3


def reference_pope(segment_results: list[dict], neg_strategy: str, seed: int) -> list[tuple]:
    """POPE's ``pope()`` for one strategy: (image, object, label) in its file order."""
    gt_objects: dict[str, int] = {}
    co_occur: dict[str, dict[str, int]] = {}
    for image in segment_results:
        for o in image["objects"]:
            gt_objects[o] = gt_objects.get(o, 0) + 1
            co_occur.setdefault(o, {})
            for other_o in image["objects"]:
                if o != other_o:
                    co_occur[o][other_o] = co_occur[o].get(other_o, 0) + 1
    gt_objects_list = list(gt_objects)
    sorted_objects = sorted(gt_objects.items(), key=lambda x: x[1], reverse=True)
    sorted_co_occur = {o: [k for k, _ in sorted(v.items(), key=lambda x: x[1], reverse=True)]
                       for o, v in co_occur.items()}
    out = []
    for image in segment_results:
        rng = random.Random(f"pope-{seed}-{image['image']}-{neg_strategy}")
        history = []
        for i in range(SAMPLE_NUM):
            pos = image["objects"][i]
            history.append(pos)
            out.append((image["image"], pos, "yes"))
            ranked = {"popular": [o for o, _ in sorted_objects], "adversarial": sorted_co_occur[pos]}
            picked = next((o for o in ranked.get(neg_strategy, [])
                           if o not in history and o not in image["objects"]), None)
            while picked is None:
                candidate = rng.choice(gt_objects_list)
                if candidate not in history and candidate not in image["objects"]:
                    picked = candidate
            history.append(picked)
            out.append((image["image"], picked, "no"))
    return out


def reference_text(obj: str) -> str:
    """``create_question``'s article choice, with the template text POPE's files hold."""
    return f"Is there {'an' if obj[0] in ['a', 'e', 'i', 'o', 'u'] else 'a'} {obj} in the image?"


def reference_answer(text: str) -> str:
    """``evaluate.py``'s reading of one answer."""
    if text.find(".") != -1:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if "No" in words or "not" in words or "no" in words else "yes"


@pytest.fixture(scope="module")
def slice_instances(coco_dir):
    return read_instances(coco_dir / "annotations" / "instances_val2017.json")


@pytest.mark.parametrize("seed, n_images", [(0, 50), (1, 30)])  # all eligible images; a run's n_samples=30
def test_construction_matches_published_rules_on_every_image(slice_instances, seed, n_images):
    files = {i: f"val2017/{n}" for i, n in slice_instances.file_names.items()}
    eligible = eligible_images(slice_instances, files, SAMPLE_NUM)
    # main.py keeps images with >= sample_num objects: 50 of the 79 (29 have 1 or 2 categories)
    assert len(eligible) == sum(len(set(objs)) >= 3 for objs in slice_instances.objects.values()) == 50
    images = random.Random(seed).sample(eligible, n_images)  # POPE's order: its random sample's
    built, _ = build_questions(slice_instances, images, k=SAMPLE_NUM, seed=seed)
    segment_results = [{"image": i, "objects": list(image_objects(slice_instances, i, seed))} for i in images]
    for split in POPE_SPLITS:
        ours = [(q.image_id, q.object, q.label) for q in built if q.pope_split == split]
        reference = reference_pope(segment_results, split, seed)
        mismatched = {r[0] for r, o in zip(reference, ours, strict=True) if r != o}
        assert not mismatched, f"{split}: {len(mismatched)} of {len(images)} images differ"
    assert all(q.question == reference_text(q.object) for q in built)
    texts = {q.question for q in built}
    assert {"Is there an oven in the image?", "Is there a person in the image?"} <= texts


EDGE_ANSWERS = [
    "Yes", "Yes.", "yes, there is a dog", "No", "No.", "no", "NO", "Nope", "No!", "not", "Not really.",
    "There is a dog. There is no cat.", "There is no dog.", "There isn't a dog.", "I cannot tell.", "",
    "Yes, but no cat", "no,there is none", "No\nthere is not", "Yes there is not", "   No", "YES",
    "There is not a dog in the image", "A dog.",
]


@pytest.mark.parametrize("answer", EDGE_ANSWERS)
def test_answer_reading_matches_evaluate_py(answer):
    assert read_as_published(answer) == reference_answer(answer)


def test_doubtful_answers_are_those_without_an_agreeing_leading_yes_or_no():
    doubtful = [a for a in EDGE_ANSWERS if is_doubtful(a)]
    assert doubtful == [
        "NO", "Nope", "No!", "not", "Not really.", "There is a dog. There is no cat.", "There is no dog.",
        "There isn't a dog.", "I cannot tell.", "", "Yes, but no cat", "no,there is none",
        "Yes there is not", "There is not a dog in the image", "A dog.",
    ]
