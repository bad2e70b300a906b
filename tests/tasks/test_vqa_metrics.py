"""Official VQA accuracy: cases written from the rules of GT-Vision-Lab/VQA vqaEval.py.

Expected values come from the official definition (mean over the 10 leave-one-out subsets of
min(1, matches/3)), worked by hand in the comments; the official script prints them x100.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlm_quant.errors import UserError
from vlm_quant.tasks.vqa_metrics import (
    VqaAnnotation,
    normalize_answer,
    process_digit_article,
    process_punctuation,
    score_vqa,
    score_vqa_files,
    vqa_accuracy,
)


def _humans(*groups: tuple[str, int]) -> list[str]:
    answers = [answer for answer, count in groups for _ in range(count)]
    assert len(answers) == 10
    return answers


# --- the accuracy formula ----------------------------------------------------------------------


def test_maintainers_worked_case_8_yes_2_no() -> None:
    humans = _humans(("yes", 8), ("no", 2))
    # "no": 8 subsets keep both "no" (2/3), 2 subsets keep one (1/3): (8*2/3 + 2*1/3)/10 = 0.6
    assert vqa_accuracy("no", humans) == pytest.approx(0.6)
    assert vqa_accuracy("yes", humans) == pytest.approx(1.0)
    assert vqa_accuracy("maybe", humans) == 0.0


@pytest.mark.parametrize(
    ("matches", "expected"),
    # ((10-k) * min(1, k/3) + k * min(1, (k-1)/3)) / 10
    [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0)],
)
def test_min_one_third_rule_with_leave_one_out(matches: int, expected: float) -> None:
    humans = ["cat"] * matches + [f"other{n}" for n in range(10 - matches)]
    assert vqa_accuracy("cat", humans) == pytest.approx(expected)


def test_other_answer_counts_are_refused() -> None:
    with pytest.raises(UserError, match="got 3"):
        vqa_accuracy("yes", ["yes"] * 3)


# --- normalisation, one rule at a time ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("yes!", "yes "),  # mark not touching a space -> a space (process_digit_article collapses it)
        ("black/white", "black white"),
        ("yes , no", "yes  no"),  # mark touching a space -> deleted (the double space stays here)
        ("1,000", "1000"),  # digit-comma-digit: commas deleted, not spaced
        ("1,000 (approx)", "1000 approx"),  # ... and then *every* mark is deleted
        ("red,blue", "red blue"),  # a comma between letters becomes a space
        ("2.5", "2.5"),  # a period before a digit stays
        ("no.", "no"),
        ("a.m.", "am"),
        ("it's", "it's"),  # the apostrophe is not in the punctuation list
    ],
)
def test_process_punctuation(raw: str, expected: str) -> None:
    assert process_punctuation(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("two", "2"),
        ("None", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),  # the map stops at ten
        ("a dog", "dog"),
        ("an apple", "apple"),
        ("the red one", "red 1"),
        ("another", "another"),  # whole words only
        ("dont", "don't"),
        ("isnt", "isn't"),
        ("Im", "im"),  # table key "Im" is capitalised, the text lower-cased first: never matches
        ("YES", "yes"),
    ],
)
def test_process_digit_article(raw: str, expected: str) -> None:
    assert process_digit_article(raw) == expected


def test_normalize_answer_chains_all_rules() -> None:
    assert normalize_answer("  The Two dogs.\n") == "2 dogs"


def test_each_rule_decides_a_match_when_humans_disagree() -> None:
    # Humans disagree, so both sides are normalised: 3 humans give the normalised form -> 0.9.
    cases = {
        "1,000": "1000",
        "Two": "2",
        "the dog": "dog",
        "dont": "don't",
        "Yes.": "yes",
        "black/white": "black white",
    }
    for prediction, normalised in cases.items():
        humans = _humans((normalised, 3), ("something else", 7))
        assert vqa_accuracy(prediction, humans) == pytest.approx(0.9), prediction


def test_normalisation_is_skipped_when_all_humans_agree() -> None:
    humans = ["yes"] * 10
    assert vqa_accuracy("yes", humans) == 1.0
    assert vqa_accuracy(" yes\n", humans) == 1.0  # whitespace is always cleaned
    assert vqa_accuracy("Yes", humans) == 0.0  # but case and punctuation are not
    assert vqa_accuracy("yes.", humans) == 0.0
    # The same prediction earns credit once a single human disagrees (normalisation switches on).
    assert vqa_accuracy("Yes.", _humans(("yes", 9), ("no", 1))) == pytest.approx(1.0)
    # Humans "2" x5 and "two" x5 disagree as strings, agree once normalised.
    assert vqa_accuracy("two", _humans(("2", 5), ("two", 5))) == pytest.approx(1.0)


# Exact answers that normalisation rewrites: "none" -> "0", "two" -> "2", "the beach" -> "beach",
# "t-shirt" -> "t shirt". vqaEval.py compares them raw with ten identical raw humans: 1.0.
REWRITTEN_BY_NORMALISATION = ("none", "two", "the beach", "t-shirt")


@pytest.mark.parametrize("answer", REWRITTEN_BY_NORMALISATION)
def test_exact_answer_to_unanimous_humans_scores_one_when_predictions_are_normalised(answer: str) -> None:
    humans = [answer] * 10
    assert normalize_answer(answer) != answer  # the case only matters because normalisation rewrites it
    assert vqa_accuracy(answer, humans) == 1.0  # the official script, raw strings
    # The evaluate path: the prediction normalised up front (and again inside), humans the same way.
    assert vqa_accuracy(normalize_answer(answer), humans, normalize_prediction=True) == 1.0
    assert vqa_accuracy(answer, humans, normalize_prediction=True) == 1.0
    # ... while a wrong answer still scores 0, and the normalised form of another answer does not match.
    assert vqa_accuracy("something else", humans, normalize_prediction=True) == 0.0


def test_normalised_mode_equals_official_whenever_humans_disagree() -> None:
    # Normalisation is idempotent, so on disagreeing humans normalising the prediction first changes
    # nothing: the official number of the normalised prediction.
    human_sets = [
        _humans(("none", 4), ("0", 3), ("zero", 3)),
        _humans(("the beach", 5), ("beach", 2), ("sand", 3)),
        _humans(("t-shirt", 2), ("shirt", 8)),
        _humans(("Two", 1), ("2", 2), ("two dogs", 7)),
        _humans(("yes", 9), ("no", 1)),
    ]
    predictions = [*REWRITTEN_BY_NORMALISATION, "Yes.", "2 dogs", " T-Shirt\n", "1,000", "no."]
    for humans in human_sets:
        for prediction in predictions:
            assert normalize_answer(normalize_answer(prediction)) == normalize_answer(prediction)
            official = vqa_accuracy(normalize_answer(prediction), humans)
            normalised_mode = vqa_accuracy(prediction, humans, normalize_prediction=True)
            assert normalised_mode == official, (prediction, humans)


def test_score_vqa_normalised_mode_scores_unanimous_rewritten_answers() -> None:
    annotations = {n: VqaAnnotation(n, (answer,) * 10) for n, answer in enumerate(REWRITTEN_BY_NORMALISATION)}
    predictions = {n: normalize_answer(answer) for n, answer in enumerate(REWRITTEN_BY_NORMALISATION)}
    assert score_vqa(predictions, annotations, normalize_prediction=True).accuracy == 1.0
    # The bug the mode fixes: normalised predictions against raw unanimous humans all score 0.
    assert score_vqa(predictions, annotations).accuracy == 0.0


def test_empty_prediction_is_scored() -> None:
    assert vqa_accuracy("", _humans(("yes", 10))) == 0.0
    assert vqa_accuracy("", _humans(("", 3), ("yes", 7))) == pytest.approx(0.9)


# --- aggregation --------------------------------------------------------------------------------


def _annotation(qid: int, answers: list[str], answer_type: str, question_type: str) -> VqaAnnotation:
    return VqaAnnotation(
        qid, tuple(answers), answer_type=answer_type, question_type=question_type, image_id=qid // 10
    )


ANNOTATIONS = {
    10: _annotation(10, _humans(("yes", 8), ("no", 2)), "yes/no", "is the"),
    11: _annotation(11, _humans(("no", 10)), "yes/no", "is there"),
    20: _annotation(20, _humans(("2", 5), ("3", 5)), "number", "how many"),
    30: _annotation(30, _humans(("red", 1), ("blue", 9)), "other", "what color is the"),
    40: _annotation(40, _humans(("cat", 10)), "other", "what is the"),  # never predicted: not scored
}
PREDICTIONS = {10: "no", 11: "no", 20: "two", 30: "red"}
# 10: 0.6 (worked case); 11: 1.0; 20: "two" -> "2", 5 humans -> 1.0; 30: 1 human -> 0.3
EXPECTED = {10: 0.6, 11: 1.0, 20: 1.0, 30: 0.3}


def test_score_vqa_aggregates_by_answer_and_question_type() -> None:
    scores = score_vqa(PREDICTIONS, ANNOTATIONS)

    assert scores.n_questions == 4
    assert scores.per_question == pytest.approx(EXPECTED)
    assert scores.accuracy == pytest.approx((0.6 + 1.0 + 1.0 + 0.3) / 4)
    assert scores.per_answer_type == pytest.approx({"yes/no": 0.8, "number": 1.0, "other": 0.3})
    assert scores.per_question_type == pytest.approx(
        {"is the": 0.6, "is there": 1.0, "how many": 1.0, "what color is the": 0.3}
    )


def test_score_vqa_input_errors() -> None:
    with pytest.raises(UserError, match="empty"):
        score_vqa({}, ANNOTATIONS)
    with pytest.raises(UserError, match="99"):
        score_vqa({99: "yes"}, ANNOTATIONS)
    short = {1: VqaAnnotation(1, ("yes",) * 9)}
    with pytest.raises(UserError, match="question_id 1 has 9 human answers"):
        score_vqa({1: "yes"}, short)


# --- files --------------------------------------------------------------------------------------


def _official_files(folder: Path) -> tuple[Path, Path, Path]:
    annotations = {
        "annotations": [
            {
                "question_id": a.question_id,
                "image_id": a.image_id,
                "question_type": a.question_type,
                "answer_type": a.answer_type,
                "multiple_choice_answer": a.answers[0],
                "answers": [
                    {"answer": x, "answer_confidence": "yes", "answer_id": n + 1}
                    for n, x in enumerate(a.answers)
                ],
            }
            for a in ANNOTATIONS.values()
        ]
    }
    questions = {
        "questions": [
            {"question_id": a.question_id, "image_id": a.image_id, "question": f"question {a.question_id}?"}
            for a in ANNOTATIONS.values()
        ]
    }
    results = [{"question_id": q, "answer": answer} for q, answer in PREDICTIONS.items()]
    return (
        _write(folder / "results.json", results),
        _write(folder / "annotations.json", annotations),
        _write(folder / "questions.json", questions),
    )


def _write(path: Path, payload: object) -> Path:
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


def test_score_vqa_files_matches_score_vqa(tmp_path: Path) -> None:
    results, annotations, questions = _official_files(tmp_path)
    expected = score_vqa(PREDICTIONS, ANNOTATIONS).to_dict()

    assert score_vqa_files(results, annotations) == expected
    assert score_vqa_files(results, annotations, questions) == expected
    empty_answer = _write(tmp_path / "empty.json", [{"question_id": 11, "answer": ""}])
    assert score_vqa_files(empty_answer, annotations)["accuracy"] == 0.0


def test_score_vqa_files_errors_name_file_and_id(tmp_path: Path) -> None:
    results, annotations, questions = _official_files(tmp_path)
    bad_results = {
        "absent.json": ([{"question_id": 99, "answer": "yes"}], "absent.json.*99"),
        "dup.json": ([{"question_id": 10, "answer": "yes"}] * 2, "dup.json.*10"),
        "no_answer.json": ([{"question_id": 10}], "no_answer.json"),
        "number.json": ([{"question_id": 10, "answer": 2}], "number.json.*10"),
        "malformed.json": ("[{", "malformed.json"),
        "not_list.json": ({"question_id": 10, "answer": "yes"}, "not_list.json"),
    }
    for name, (payload, pattern) in bad_results.items():
        with pytest.raises(UserError, match=pattern):
            score_vqa_files(_write(tmp_path / name, payload), annotations)
    with pytest.raises(UserError, match="missing.json"):
        score_vqa_files(tmp_path / "missing.json", annotations)

    data = json.loads(annotations.read_text())
    data["annotations"][2]["answers"] = data["annotations"][2]["answers"][:3]
    with pytest.raises(UserError, match="short.json.*question_id 20 has 3 human answers"):
        score_vqa_files(results, _write(tmp_path / "short.json", data))
    with pytest.raises(UserError, match="ann_bad.json"):
        score_vqa_files(results, _write(tmp_path / "ann_bad.json", {"questions": []}))

    q = json.loads(questions.read_text())
    extra = {"questions": [*q["questions"], {"question_id": 77, "image_id": 7, "question": "?"}]}
    with pytest.raises(UserError, match="question_id 77"):
        score_vqa_files(results, annotations, _write(tmp_path / "q_extra.json", extra))
    moved = {"questions": [{**x, "image_id": 999} if x["question_id"] == 30 else x for x in q["questions"]]}
    with pytest.raises(UserError, match="q_moved.json.*question_id 30.*999"):
        score_vqa_files(results, annotations, _write(tmp_path / "q_moved.json", moved))
