"""CHAIR against hand-computed values, and on the slice's human captions."""

from __future__ import annotations

import pytest

from vlm_quant.tasks.captioning_data import read_local_coco
from vlm_quant.tasks.chair import caption_categories, caption_objects, ground_truth_objects, score_chair
from vlm_quant.tasks.chair_vocabulary import SYNONYMS
from vlm_quant.tasks.coco_instances import read_instances


def test_vocabulary_is_the_80_coco_categories():
    assert len(SYNONYMS) == 80 and all(words[0] == name for name, words in SYNONYMS.items())


@pytest.mark.parametrize(
    "caption, expected",
    [
        ("A hot dog on a bun.", ["hot dog"]),  # a two-word object: no dog in it
        ("Two dogs chase a hot dog.", ["dog", "hot dog"]),
        ("Puppies on a sofa.", ["dog", "couch"]),  # synonyms, plural
        ("Three giraffes and some people.", ["giraffe", "person"]),  # plural, irregular plural
        ("Wine glasses next to a cell phone.", ["wine glass", "cell phone"]),  # "glass" is not "glas"
        ("A baby elephant by the train track.", ["elephant"]),  # no person, no train
        ("Two buses at a stop sign.", ["bus", "stop sign"]),
        ("The seat of the toilet is up.", ["toilet"]),  # a toilet's seat is no chair
        ("A chair and a TELEVISION.", ["chair", "tv"]),
        ("A sunny afternoon.", []),
    ],
)
def test_mentions(caption, expected):
    assert [category for _, category in caption_objects(caption)] == expected


def test_ground_truth_adds_reference_mentions_to_instances():
    assert ground_truth_objects(["dog"], ["A man with his puppy.", "A bike."]) == {"dog", "person", "bicycle"}


def test_corpus_chair_matches_hand_computation():
    instances = {1: ["dog", "dog", "person", "bench"], 2: [], 3: ["tie", "person"]}  # 4: not annotated
    references = {1: ["A man walks his dog."], 2: ["Bikes parked on a street."], 3: [], 4: ["A cat."]}
    captions = {
        1: "A man and two dogs eat a hot dog near a cat.",  # person, dog, hot dog*, cat*
        2: "Three bicycles and a car.",  # bicycle (from the references), car*
        3: "A man in a bow tie.",  # person, tie
        4: "A cat on a mat.",  # unknown objects: left out
    }
    result = score_chair(captions, instances, references)
    assert result.n_images == 3 and result.n_unannotated == 1
    assert result.chair_i == pytest.approx(3 / 8)  # 3 hallucinated of 8 mentions
    assert result.chair_s == pytest.approx(2 / 3)
    assert result.object_recall == pytest.approx(5 / 6)  # {person, dog} of 3, {bicycle} of 1, both of 2
    assert result.per_image[1].hallucinated == ("hot dog", "cat")
    assert 4 not in result.per_image
    metrics = result.metrics()
    assert metrics["chair_n_images"] == 3 and metrics["chair_i"] == result.chair_i


def test_nothing_to_divide_by_is_absent_not_zero():
    result = score_chair({1: "A sunny day."}, {}, {})
    assert result.n_images == 0 and result.n_unannotated == 1
    assert "chair_i" not in result.metrics() and "chair_s" not in result.metrics()
    assert caption_categories("") == set()


def test_human_captions_of_the_slice_against_the_reference_counts(coco_dir):
    """One human caption as the candidate, the other four as references (issue 13).

    The counts are those of the reference chair.py (Rohrbach et al.) run on the same 79 images and
    captions (issue 21): 4 of 131 mentions hallucinated, in 4 of 79 captions, 125 of 310 objects recalled.
    """
    instances = read_instances(coco_dir / "annotations" / "instances_val2017.json")
    split = read_local_coco(coco_dir)
    annotated = [i for i in split.samples if i in instances.objects]
    candidates = {i: split.samples[i].references[0] for i in annotated}
    references = {i: split.samples[i].references[1:] for i in annotated}
    result = score_chair(candidates, instances.objects, references)
    assert result.n_images == len(annotated) == 79 and result.n_unannotated == 0
    assert (result.n_hallucinated, result.n_mentions) == (4, 131)
    assert sum(bool(r.hallucinated) for r in result.per_image.values()) == 4
    assert (result.n_recalled, result.n_objects) == (125, 310)
    assert result.chair_i == 4 / 131 and result.chair_s == 4 / 79 and result.object_recall == 125 / 310
