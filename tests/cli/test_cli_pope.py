"""`vlm-quant score pope`: POPE's question and answer files in, POPE's metrics out; user errors exit 2."""

import json

import pytest
from click.testing import CliRunner

from vlm_quant.cli.commands import main

LABELS = ["yes", "yes", "yes", "no", "no", "no"]
# evaluate.py reads: yes, yes ("NO" is no word of its list), yes (first sentence only), no, yes, no
ANSWERS = ["Yes.", "NO", "There is a dog. There is no cat.", "No, there is not.", "I cannot tell.", "no"]


def write_lines(path, entries):
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


@pytest.fixture()
def questions(tmp_path):
    return write_lines(tmp_path / "coco_pope_random.json", [
        {"question_id": q, "image": "COCO_val2014_000000310196.jpg", "text": f"Is there a thing {q}?",
         "label": label}
        for q, label in enumerate(LABELS, 1)
    ])


def score(predictions, questions):
    return CliRunner().invoke(main, ["score", "pope", "--predictions", str(predictions),
                                     "--questions", str(questions)])


def test_scores_by_the_published_rule(tmp_path, questions):
    answers = [{"question_id": q, "text": a} for q, a in reversed(list(enumerate(ANSWERS, 1)))]
    result = score(write_lines(tmp_path / "answers.jsonl", answers), questions)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert (out["tp"], out["fp"], out["tn"], out["fn"]) == (3, 1, 2, 0)
    assert out["accuracy"] == pytest.approx(5 / 6) and out["precision"] == pytest.approx(3 / 4)
    assert out["recall"] == 1.0 and out["f1"] == pytest.approx(6 / 7)
    assert out["yes_ratio"] == pytest.approx(4 / 6) and out["doubtful_n"] == 3


def test_no_yes_leaves_precision_and_f1_absent_and_a_missing_answer_is_an_error(tmp_path, questions):
    never = write_lines(tmp_path / "never.jsonl", [{"question_id": q, "text": "No."} for q in range(1, 7)])
    out = json.loads(score(never, questions).output)
    assert out["precision"] is None and out["f1"] is None and out["accuracy"] == 0.5
    assert set(out["absent_reason"]) == {"precision", "f1"}
    short = write_lines(tmp_path / "short.jsonl", [{"question_id": 1, "text": "yes"}])
    result = score(short, questions)
    assert result.exit_code == 2 and "5 questions unanswered" in result.output
