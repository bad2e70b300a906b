"""Caption metrics against pycocoevalcap's own pipeline (COCOEvalCap), run offline in the test.

The PTB tokenizer and METEOR are Java programs: METEOR takes ~20 s to start on two cores, so the
module shares one METEOR process and each test here batches its cases into as few calls as it can.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from vlm_quant.errors import UserError
from vlm_quant.tasks import caption_metrics
from vlm_quant.tasks.caption_metrics import (
    STANDARD_KEYS,
    missing_spice_jars,
    score_caption_files,
    score_captions,
)

COCO_MINI = Path(__file__).resolve().parents[3] / "shared" / "coco_val2017_mini"
REFERENCE_KEYS = {  # pycocoevalcap's names -> ours
    "Bleu_1": "bleu_1",
    "Bleu_2": "bleu_2",
    "Bleu_3": "bleu_3",
    "Bleu_4": "bleu_4",
    "METEOR": "meteor",
    "ROUGE_L": "rouge_l",
    "CIDEr": "cider",
}
N_IMAGES = 20


# --- the real COCO slice vs COCOEvalCap -------------------------------------------------------------


@pytest.fixture(scope="module")
def coco_case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """20 seeded images of the slice: caption #1 is the 'prediction', captions #2.. the references."""
    annotation_file = COCO_MINI / "annotations" / "captions_val2017.json"
    if not annotation_file.is_file():
        pytest.skip(
            f"real COCO slice not found at ../shared/coco_val2017_mini ({annotation_file.name} missing)"
        )
    coco = json.loads(annotation_file.read_text())
    by_image: dict[int, list[dict]] = {}
    for ann in sorted(coco["annotations"], key=lambda a: a["id"]):
        by_image.setdefault(ann["image_id"], []).append(ann)
    image_ids = random.Random(0).sample(sorted(by_image), N_IMAGES)
    predictions = {i: by_image[i][0]["caption"] for i in image_ids}
    references = {i: [a["caption"] for a in by_image[i][1:]] for i in image_ids}

    folder = tmp_path_factory.mktemp("coco_case")
    annotations_path = folder / "captions_subset.json"
    annotations_path.write_text(
        json.dumps(
            {
                "images": [im for im in coco["images"] if im["id"] in predictions],
                "annotations": [a for i in image_ids for a in by_image[i][1:]],
            }
        )
    )
    results_path = folder / "results.json"
    results_path.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in predictions.items()]))
    return {
        "predictions": predictions,
        "references": references,
        "annotations_path": annotations_path,
        "results_path": results_path,
    }


class _NoSpice:
    """Stands in for pycocoevalcap's Spice, whose constructor downloads CoreNLP (offline: fails)."""

    def compute_score(self, gts, res):
        return float("nan"), [float("nan")] * len(gts)

    def method(self):
        return "SPICE (removed)"


@pytest.fixture(scope="module")
def reference_eval(coco_case: dict) -> object:
    """COCOEvalCap.evaluate() on the same files, as its example script runs it, SPICE removed."""
    import pycocoevalcap.eval as reference
    from pycocotools.coco import COCO

    coco = COCO(str(coco_case["annotations_path"]))
    coco_result = coco.loadRes(str(coco_case["results_path"]))
    evaluator = reference.COCOEvalCap(coco, coco_result)
    evaluator.params["image_id"] = coco_result.getImgIds()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reference, "Spice", _NoSpice)
        # Same Meteor class and jar; only its ~20 s JVM start is shared with the code under test.
        patch.setattr(reference, "Meteor", caption_metrics._meteor_instance)
        evaluator.evaluate()
    return evaluator


@pytest.mark.coco
def test_corpus_and_per_image_scores_equal_coco_eval_cap(coco_case: dict, reference_eval) -> None:
    ours = score_captions(coco_case["predictions"], coco_case["references"], spice="off")

    assert ours.n_images == N_IMAGES
    for ref_key, key in REFERENCE_KEYS.items():
        assert ours.corpus[key] == pytest.approx(reference_eval.eval[ref_key], rel=1e-9, abs=1e-12), key
    for image_id in coco_case["predictions"]:
        ref_row = reference_eval.imgToEval[image_id]
        for ref_key, key in REFERENCE_KEYS.items():
            assert ours.per_image[image_id][key] == pytest.approx(ref_row[ref_key], rel=1e-9, abs=1e-12)
    # Human captions scored against the other four: a plausible, non-degenerate range.
    assert 0.3 < ours.corpus["cider"] < 3.0 and 0.1 < ours.corpus["bleu_4"] < 0.6


@pytest.mark.coco
def test_file_scoring_equals_coco_eval_cap(coco_case: dict, reference_eval) -> None:
    scores = score_caption_files(coco_case["results_path"], coco_case["annotations_path"])

    for ref_key, key in REFERENCE_KEYS.items():
        assert scores[key] == pytest.approx(reference_eval.eval[ref_key], rel=1e-9, abs=1e-12), key
    assert scores["n_images"] == N_IMAGES
    assert ("spice" in scores) != ("spice_skipped_reason" in scores)
    json.dumps(scores)  # JSON-ready


# --- synthetic cases: perfect match, IDF, empty captions ----------------------------------------------

DISJOINT = {  # no word shared across images, so every n-gram has a non-zero IDF
    1: "brown puppy chasing yellow frisbee outdoors",
    2: "three red buses parked beside tall buildings",
    3: "woman slicing fresh bread inside kitchen",
}


def test_perfect_match_reaches_the_maximum_of_each_metric() -> None:
    references = {i: [caption, caption] for i, caption in DISJOINT.items()}
    scores = score_captions(dict(DISJOINT), references, spice="off")

    for row in [scores.corpus, *scores.per_image.values()]:
        assert row["cider"] == pytest.approx(10.0)  # CIDEr-D: cosine 1 on every n, x10
        for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l"):
            assert row[key] == pytest.approx(1.0, abs=1e-6)
        assert row["meteor"] > 0.95  # METEOR keeps a small fragmentation penalty even for exact matches
    assert scores.n_empty_predictions == 0


def test_cider_idf_depends_on_the_scored_image_set() -> None:
    """Same prediction, same references for image 1; only the *other* image differs.

    CIDEr weights n-grams by IDF over the scored images' references: "dog" is common when image 2
    (another dog) is in the set and rare when image 3 (a car) is. So CIDEr of image 1 changes with the
    id list, and configurations are comparable only on the identical list of ids.
    """
    references = {
        1: ["a dog runs on the grass", "a brown dog running in a field"],
        2: ["a dog sleeps on a bed", "the dog is lying on the bed"],
        3: ["a red car parked on the street", "a car next to a building"],
    }
    prediction = "a dog running on the grass"
    with_dog = score_captions({1: prediction, 2: "a dog on a bed"}, references, spice="off")
    with_car = score_captions({1: prediction, 3: "a red car on a street"}, references, spice="off")

    cider_dog, cider_car = with_dog.per_image[1]["cider"], with_car.per_image[1]["cider"]
    assert abs(cider_dog - cider_car) > 0.1, (cider_dog, cider_car)
    for key in ("bleu_4", "rouge_l", "meteor"):  # per-image, reference-set-independent metrics
        assert with_dog.per_image[1][key] == pytest.approx(with_car.per_image[1][key])


def test_empty_and_multiline_predictions_are_scored_not_dropped() -> None:
    """ "" and punctuation-only captions tokenize to nothing: scored 0 and counted, never a crash.

    A carriage return inside a caption would break the PTB tokenizer's line alignment (Java splits
    lines at "\\r" too); it must score exactly like the same caption with a space.
    """
    refs = ["a dog runs on the grass", "a brown dog running in a field"]
    references = {1: refs, 2: refs, 3: ["a cat on a sofa", "a sleeping cat"], 4: ["a bus", "a red bus"]}
    predictions = {1: "a dog\ron the grass", 2: "a dog on the grass", 3: "", 4: "..."}
    scores = score_captions(predictions, references, spice="auto")

    assert scores.n_images == 4 and scores.n_empty_predictions == 2
    assert scores.per_image[1] == pytest.approx(scores.per_image[2])
    assert scores.per_image[1]["cider"] > 1.0
    for image_id in (3, 4):
        assert all(value == 0.0 for value in scores.per_image[image_id].values()), scores.per_image[image_id]
    # The empties count in the corpus mean: CIDEr is the plain mean of the per-image scores.
    assert scores.corpus["cider"] == pytest.approx(sum(r["cider"] for r in scores.per_image.values()) / 4)
    assert all(math.isfinite(v) for v in scores.corpus.values())
    if missing_spice_jars():
        assert "spice" not in scores.corpus
        assert "stanford-corenlp-3.6.0" in scores.spice_skipped_reason
    else:
        assert "spice" in scores.corpus or scores.spice_skipped_reason.startswith("SPICE failed")
    assert set(scores.corpus) >= set(STANDARD_KEYS)


# --- validation (no Java needed) ---------------------------------------------------------------------


def test_input_errors_are_user_errors_naming_the_id() -> None:
    with pytest.raises(UserError, match="empty"):
        score_captions({}, {1: ["a dog"]})
    with pytest.raises(UserError, match="42"):
        score_captions({42: "a dog"}, {1: ["a dog"]})
    with pytest.raises(UserError, match="7"):
        score_captions({7: "a dog"}, {7: []})
    with pytest.raises(UserError, match="spice"):
        score_captions({1: "a dog"}, {1: ["a dog"]}, spice="maybe")
    with pytest.raises(UserError, match="5"):
        score_captions({5: None}, {5: ["a dog"]})  # type: ignore[dict-item]


@pytest.mark.skipif(not missing_spice_jars(), reason="SPICE's CoreNLP jars are installed here")
def test_spice_on_without_jars_is_a_user_error() -> None:
    with pytest.raises(UserError, match="stanford-corenlp"):
        score_captions({1: "a dog"}, {1: ["a dog"]}, spice="on")


def _write(path: Path, payload: object) -> Path:
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


def test_file_errors_name_the_file_and_the_id(tmp_path: Path) -> None:
    annotations = _write(
        tmp_path / "ann.json",
        {
            "images": [{"id": 1}, {"id": 2}],
            "annotations": [
                {"id": 10, "image_id": 1, "caption": "a dog"},
                {"id": 11, "image_id": 2, "caption": "a cat"},
            ],
        },
    )
    cases = {
        "missing.json": (None, "missing.json"),
        "bad.json": ("[{", "bad.json"),
        "no_caption.json": ([{"image_id": 1}], "no_caption.json"),
        "dup.json": ([{"image_id": 1, "caption": "x"}, {"image_id": 1, "caption": "y"}], "dup.json.*1"),
        "absent.json": ([{"image_id": 999, "caption": "x"}], "absent.json.*999"),
        "not_list.json": ({"image_id": 1, "caption": "x"}, "not_list.json"),
    }
    for name, (payload, pattern) in cases.items():
        path = tmp_path / name if payload is None else _write(tmp_path / name, payload)
        with pytest.raises(UserError, match=pattern):
            score_caption_files(path, annotations)
    good = _write(tmp_path / "good.json", [{"image_id": 1, "caption": "a dog"}])
    with pytest.raises(UserError, match="missing_ann.json"):
        score_caption_files(good, tmp_path / "missing_ann.json")
    with pytest.raises(UserError, match="ann_bad.json"):
        score_caption_files(good, _write(tmp_path / "ann_bad.json", {"images": []}))
