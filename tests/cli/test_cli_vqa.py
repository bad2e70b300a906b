"""`vlm-quant score vqa`: official-format files in, one JSON object out; user errors exit 2."""

import json
import re

import pytest
from click.testing import CliRunner

from vlm_quant.cli.vqa import score_vqa_command, spotcheck
from vlm_quant.tasks.vqa_metrics import score_vqa_files

ANSWERS = {
    1: ("yes/no", "is the", ["yes"] * 10),
    2: ("number", "how many", ["2"] * 5 + ["3"] * 5),
    3: ("other", "what color is the", ["red"] * 2 + ["blue"] * 8),
}


@pytest.fixture()
def files(tmp_path):
    annotations = {
        "annotations": [
            {
                "question_id": q,
                "image_id": 100 + q,
                "answer_type": at,
                "question_type": qt,
                "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)],
            }
            for q, (at, qt, answers) in ANSWERS.items()
        ]
    }
    questions = {"questions": [{"question_id": q, "image_id": 100 + q, "question": "?"} for q in ANSWERS]}
    predictions = [
        {"question_id": 1, "answer": "Yes."},
        {"question_id": 2, "answer": "two"},
        {"question_id": 3, "answer": "red"},
    ]
    paths = {name: tmp_path / f"{name}.json" for name in ("annotations", "questions", "predictions")}
    for name, payload in (
        ("annotations", annotations),
        ("questions", questions),
        ("predictions", predictions),
    ):
        paths[name].write_text(json.dumps(payload))
    return paths


def invoke(*args):
    return CliRunner().invoke(score_vqa_command, [str(a) for a in args])


def test_score_vqa_prints_the_official_accuracy_and_breakdowns(files):
    result = invoke(
        "--predictions",
        files["predictions"],
        "--annotations",
        files["annotations"],
        "--questions",
        files["questions"],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out == score_vqa_files(files["predictions"], files["annotations"], files["questions"])
    # "Yes." vs ten exact "yes" scores 0 officially; "two" -> "2" matches 5 humans; "red" matches 2 (0.6)
    assert out["accuracy"] == pytest.approx((0.0 + 1.0 + 0.6) / 3)
    assert out["per_answer_type"] == pytest.approx({"yes/no": 0.0, "number": 1.0, "other": 0.6})
    assert set(out["per_question_type"]) == {"is the", "how many", "what color is the"}
    assert out["n_questions"] == 3


def test_normalize_predictions_scores_like_the_vqa_task(files):
    result = invoke(
        "--predictions",
        files["predictions"],
        "--annotations",
        files["annotations"],
        "--normalize-predictions",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["per_answer_type"]["yes/no"] == 1.0


def test_normalize_predictions_normalises_unanimous_humans_too(files):
    # Ten humans "none" and the exact answer "none": officially 1.0; normalising only the prediction
    # ("none" -> "0") would make it 0.0.
    data = json.loads(files["annotations"].read_text())
    for answer in data["annotations"][0]["answers"]:
        answer["answer"] = "none"
    files["annotations"].write_text(json.dumps(data))
    files["predictions"].write_text(json.dumps([{"question_id": 1, "answer": "none"}]))
    for flags in ((), ("--normalize-predictions",)):
        result = invoke("--predictions", files["predictions"], "--annotations", files["annotations"], *flags)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["accuracy"] == 1.0, flags


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f["predictions"].unlink(), "error: file not found: .*predictions.json"),
        (lambda f: f["predictions"].write_text("[{"), "error: .*predictions.json is not valid JSON"),
        (
            lambda f: f["predictions"].write_text(json.dumps([{"question_id": 9, "answer": "x"}])),
            "error: .*question_id 9 is absent from .*annotations.json",
        ),
    ],
)
def test_user_errors_print_one_line_and_exit_2(files, change, message):
    change(files)
    result = invoke("--predictions", files["predictions"], "--annotations", files["annotations"])
    assert result.exit_code == 2
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert re.match(message, result.stderr)


def test_command_names_for_registration():
    assert score_vqa_command.name == "vqa"
    assert "import" in spotcheck.commands
