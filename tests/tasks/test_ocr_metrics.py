"""DocVQA's ANLS and ChartQA's relaxed accuracy against hand-derived reference cases (tests/tasks/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlm_quant.tasks.anls import anls, anls_question
from vlm_quant.tasks.relaxed_accuracy import relaxed_correct, relaxed_question

DATA = Path(__file__).parent / "data"
ANLS_CASES = json.loads((DATA / "anls_reference.json").read_text())["cases"]
RELAXED_CASES = json.loads((DATA / "relaxed_accuracy_reference.json").read_text())["cases"]


@pytest.mark.parametrize("case", ANLS_CASES, ids=[c["name"] for c in ANLS_CASES])
def test_anls_matches_the_hand_derived_value(case):
    assert anls_question(case["prediction"], case["answers"]) == pytest.approx(case["anls"], abs=1e-12)


def test_corpus_anls_is_the_mean_over_questions():
    expected = sum(c["anls"] for c in ANLS_CASES) / len(ANLS_CASES)
    got = anls([c["prediction"] for c in ANLS_CASES], [c["answers"] for c in ANLS_CASES])
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("case", RELAXED_CASES, ids=[c["name"] for c in RELAXED_CASES])
def test_relaxed_correctness_matches_the_reference_rule(case):
    assert relaxed_correct(case["prediction"], case["target"]) is case["correct"]


def test_relaxed_question_takes_the_best_target():
    assert relaxed_question("47", ["1,000", "45"]) == 1.0
    assert relaxed_question("47", ["1,000"]) == 0.0
