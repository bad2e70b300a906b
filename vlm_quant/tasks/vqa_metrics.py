"""The official VQA accuracy (VQAv2, and the VizWiz / TextVQA variants that reuse it).

A port of ``VQAEval`` from GT-Vision-Lab/VQA, ``PythonEvaluationTools/vqaEvaluation/vqaEval.py``
(current master), rule for rule:

* both the prediction and the human answers lose ``\\n``/``\\t`` (-> space) and outer whitespace;
* only when the human answers are *not* all identical are all of them and the prediction normalised
  (``process_punctuation`` then ``process_digit_article``); when the humans agree, the comparison is
  exact and case-sensitive: humans "yes" x10 vs "Yes" scores 0, as in the official script;
* accuracy of one question = mean over the leave-one-out subsets of the humans of
  min(1, #humans in the subset who gave the prediction / 3).

(An older revision of vqaEval.py normalised the prediction always and the humans with punctuation
only; results in the literature come from the current rule, which is what we port.)

``normalize_prediction=True`` (the ``evaluate`` path and ``score vqa --normalize-predictions``): the
prediction is normalised up front with the official normalisation above (so a chat model's "Yes." is
not lost), and then the human answers are normalised *always*, unanimous or not. This is not the
official script (which compares unanimous humans raw), nor lmms-eval (which normalises the prediction
with EvalAI's processor, then the humans only when they disagree): it is the official rule on
normalised answers, never below the official number on the same prediction.
Comparing a normalised prediction with raw unanimous answers would turn an exact answer into a miss
("none" -> "0" against ten raw "none"; likewise "two", "the beach", "t-shirt"), scoring 0 what the
official script scores 1. Normalisation is idempotent, so on questions where the humans disagree this
mode gives exactly the official number for the normalised prediction.

Scale: every accuracy here is a fraction in 0-1, unrounded. The official script reports
``round(100 * acc, 2)``, i.e. percent with two decimals: multiply by 100 to compare.

Number of human answers: exactly 10 per question is required (VQAv2, VizWiz, TextVQA, OK-VQA all
have 10). The min(1, n/3) rule was calibrated for 10 annotators; with another count the number is
a different quantity, so other counts are refused rather than silently scored.

Differences from the official script, all on inputs it does not define: it requires predictions
for every annotated question (``loadRes`` asserts set equality); we score the predicted subset,
which gives the same per-question numbers because VQA accuracy is per question. Its leave-one-out
drops answers by dict inequality; we drop by position, the same thing for official files, whose
``answer_id`` values are distinct.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm_quant.errors import UserError
from vlm_quant.tasks.results_files import load_json, read_results

QuestionId = int | str

N_HUMAN_ANSWERS = 10
UNSPECIFIED_TYPE = "unspecified"  # question_type / answer_type when an annotation file has none

# --- tables, verbatim from GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py ----
# Quirks kept on purpose ("somebody'd" -> "somebodyd"; capitalised keys such as "Im" can never match
# because process_digit_article lower-cases first): the official numbers depend on them.
# fmt: off
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
    "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've",
    "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock",
    "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
    "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've",
    "youll": "you'll", "youre": "you're", "youve": "you've",
}
MANUAL_MAP = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = ("a", "an", "the")
# The official pattern is "(?!<=\d)(\.)(?!\d)": "(?!<=" is a negative *lookahead* for "<=", not a
# lookbehind, so in effect it drops every "." not followed by a digit ("2.5" keeps its point,
# "3." and "a.m." lose theirs).
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
PUNCTUATION = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
    ">", "<", "@", "`", ",", "?", "!",
)
# vqaEval.py calls periodStrip.sub("", text, re.UNICODE): the flag lands in sub()'s *count* slot,
# so at most re.UNICODE == 32 periods are removed. Kept for exactness (it matters only past 32).
_PERIOD_STRIP_COUNT = int(re.UNICODE)
# fmt: on


# The headline score's definition, in the words the glossary and the paper use.
METRIC_DEFINITION = (
    "VQA accuracy is the official rule (mean over the ten leave-one-out subsets of the human answers of "
    "min(1, matches/3)) applied after the official answer normalisation of the prediction and of all ten "
    "human answers, unanimous ones included; it is never below the official script's number on the raw "
    "answers, which is logged beside it as vqa_accuracy_official"
)


# --- normalisation --------------------------------------------------------------------------


def clean_whitespace(text: str) -> str:
    """Newlines and tabs to spaces, outer whitespace stripped: applied to every answer, always."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """vqaEval.processPunctuation: drop or space out punctuation, drop periods not before a digit.

    A mark is deleted when it touches a space anywhere in the text ("yes !" -> "yes "), or when the
    text contains a digit-comma-digit anywhere ("1,000" -> "1000"; then every mark is deleted);
    otherwise it becomes a space ("black/white" -> "black white").
    """
    out = text
    has_digit_comma = COMMA_STRIP.search(text) is not None
    for mark in PUNCTUATION:
        # The tests look at the *input* text, not at the text as rewritten so far (as the official).
        if mark + " " in text or " " + mark in text or has_digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """vqaEval.processDigitArticle: lower-case, number words -> digits, articles out, contractions in."""
    words = [MANUAL_MAP.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(text: str) -> str:
    """The full official normalisation of one answer (whitespace, punctuation, digits/articles).

    Note that ``vqa_accuracy`` applies it only when the human answers disagree, unless told to
    normalise the prediction (then to the humans as well, always).
    """
    return process_digit_article(process_punctuation(clean_whitespace(text)))


# --- accuracy -----------------------------------------------------------------------------------


def vqa_accuracy(prediction: str, human_answers: Sequence[str], normalize_prediction: bool = False) -> float:
    """Official VQA accuracy of one predicted answer against the 10 human answers, in 0-1.

    Mean over the 10 leave-one-out subsets of min(1, matching humans / 3): an answer given by 3 or
    more humans scores 1.0, by 2 scores 0.6, by 1 scores 0.3, by none 0.0.
    ``normalize_prediction``: normalise the prediction and, therefore, the humans always (module doc).
    """
    if len(human_answers) != N_HUMAN_ANSWERS:
        raise UserError(f"VQA accuracy needs {N_HUMAN_ANSWERS} human answers, got {len(human_answers)}.")
    humans = [clean_whitespace(answer) for answer in human_answers]
    predicted = clean_whitespace(prediction)
    # A normalised prediction is compared with humans normalised the same way, never with raw ones.
    if normalize_prediction or len(set(humans)) > 1:
        humans = [process_digit_article(process_punctuation(answer)) for answer in humans]
        predicted = process_digit_article(process_punctuation(predicted))
    per_subset = []
    for left_out in range(len(humans)):
        matches = sum(1 for n, answer in enumerate(humans) if n != left_out and answer == predicted)
        per_subset.append(min(1, float(matches) / 3))
    return float(sum(per_subset)) / len(per_subset)


@dataclass(frozen=True)
class VqaAnnotation:
    """One annotated question: its 10 human answers and the official type labels."""

    question_id: QuestionId
    answers: tuple[str, ...]
    answer_type: str = UNSPECIFIED_TYPE  # VQAv2: "yes/no", "number", "other"
    question_type: str = UNSPECIFIED_TYPE  # VQAv2: the question's first words, e.g. "what color is the"
    image_id: Any = None
    multiple_choice_answer: str = ""
    question: str = ""


@dataclass(frozen=True)
class VqaScores:
    """VQA accuracy over a set of questions; every value is a fraction in 0-1 (official: percent).

    ``accuracy`` is the mean of ``per_question``; ``per_answer_type`` and ``per_question_type`` are
    the means over the questions of each type (the official grouping).
    """

    accuracy: float
    per_answer_type: dict[str, float]
    per_question_type: dict[str, float]
    per_question: dict[QuestionId, float]
    n_questions: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready summary (no per-question values)."""
        return {
            "accuracy": self.accuracy,
            "per_answer_type": dict(self.per_answer_type),
            "per_question_type": dict(self.per_question_type),
            "n_questions": self.n_questions,
        }


def score_vqa(
    predictions: Mapping[QuestionId, str],
    annotations: Mapping[QuestionId, VqaAnnotation],
    normalize_prediction: bool = False,
) -> VqaScores:
    """Official VQA accuracy of ``predictions`` (question id -> answer) over the predicted questions.

    ``normalize_prediction``: see the module doc (predictions and humans both normalised, always).

    ``annotations`` may hold more questions than are predicted (a seeded subset of a split): only the
    predicted ones are scored. An empty predicted answer is scored like any other (0 unless humans
    answered "" too), as the official script does.
    """
    if not predictions:
        raise UserError("no predictions to score: the predictions mapping is empty.")
    per_question: dict[QuestionId, float] = {}
    by_answer_type: dict[str, list[float]] = {}
    by_question_type: dict[str, list[float]] = {}
    for question_id, answer in predictions.items():
        annotation = annotations.get(question_id)
        if annotation is None:
            raise UserError(f"question_id {question_id!r} has a prediction but no annotation.")
        if not isinstance(answer, str):
            raise UserError(
                f"prediction for question_id {question_id!r} is {type(answer).__name__}, not a string."
            )
        _check_answer_count(question_id, len(annotation.answers), "annotations")
        accuracy = vqa_accuracy(answer, annotation.answers, normalize_prediction)
        per_question[question_id] = accuracy
        by_answer_type.setdefault(annotation.answer_type, []).append(accuracy)
        by_question_type.setdefault(annotation.question_type, []).append(accuracy)
    return VqaScores(
        accuracy=_mean(list(per_question.values())),
        per_answer_type={key: _mean(values) for key, values in by_answer_type.items()},
        per_question_type={key: _mean(values) for key, values in by_question_type.items()},
        per_question=per_question,
        n_questions=len(per_question),
    )


def _mean(values: list[float]) -> float:
    return float(sum(values)) / len(values)


def _check_answer_count(question_id: QuestionId, count: int, source: str) -> None:
    if count != N_HUMAN_ANSWERS:
        raise UserError(
            f"{source}: question_id {question_id!r} has {count} human answers; official VQA accuracy "
            f"needs exactly {N_HUMAN_ANSWERS} (min(1, matches/3) over leave-one-out subsets)."
        )


# --- files ----------------------------------------------------------------------------------------


def score_vqa_files(
    predictions_path: str | Path,
    annotations_path: str | Path,
    questions_path: str | Path | None = None,
    normalize_prediction: bool = False,
) -> dict[str, Any]:
    """Score an official-format results file; ``VqaScores.to_dict()`` of the predicted questions.

    ``predictions_path``: ``[{"question_id": ..., "answer": ...}, ...]``.
    ``annotations_path``: ``{"annotations": [{"question_id", "image_id", "question_type",
    "answer_type", "answers": [{"answer", ...} x10], "multiple_choice_answer"}, ...]}``; a missing
    ``question_type`` / ``answer_type`` (VizWiz, TextVQA conversions) groups under "unspecified".
    ``questions_path`` (optional): ``{"questions": [{"question_id", "image_id", "question"}, ...]}``,
    checked to cover the same question ids with the same image ids as the annotations.
    """
    predictions_path, annotations_path = Path(predictions_path), Path(annotations_path)
    annotations = read_vqa_annotations(annotations_path)
    if questions_path is not None:
        annotations = _with_questions(annotations, Path(questions_path), annotations_path)
    predictions = _read_vqa_results(predictions_path)
    for question_id in predictions:
        if question_id not in annotations:
            raise UserError(
                f"{predictions_path}: question_id {question_id!r} is absent from {annotations_path}."
            )
    return score_vqa(predictions, annotations, normalize_prediction).to_dict()


def _read_vqa_results(path: Path) -> dict[QuestionId, str]:
    """``[{"question_id", "answer"}, ...]`` -> {question_id: answer}; one answer per question."""
    return read_results(path, "question_id", "answer", "VQA")


def read_vqa_annotations(path: Path) -> dict[QuestionId, VqaAnnotation]:
    """An official VQA annotations file -> {question_id: VqaAnnotation}; every question checked."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise UserError(f"{path}: expected an official VQA annotations file: {{'annotations': [...]}}.")
    annotations: dict[QuestionId, VqaAnnotation] = {}
    for n, entry in enumerate(data["annotations"]):
        if (
            not isinstance(entry, dict)
            or "question_id" not in entry
            or not isinstance(entry.get("answers"), list)
        ):
            raise UserError(f"{path}: annotation {n} lacks 'question_id' or an 'answers' list.")
        question_id = entry["question_id"]
        if question_id in annotations:
            raise UserError(f"{path}: question_id {question_id!r} is annotated more than once.")
        answers = entry["answers"]
        if not all(isinstance(a, dict) and isinstance(a.get("answer"), str) for a in answers):
            raise UserError(f"{path}: question_id {question_id!r} has an answer without a string 'answer'.")
        _check_answer_count(question_id, len(answers), str(path))
        annotations[question_id] = VqaAnnotation(
            question_id=question_id,
            answers=tuple(a["answer"] for a in answers),
            answer_type=str(entry.get("answer_type", UNSPECIFIED_TYPE)),
            question_type=str(entry.get("question_type", UNSPECIFIED_TYPE)),
            image_id=entry.get("image_id"),
            multiple_choice_answer=str(entry.get("multiple_choice_answer", "")),
        )
    return annotations


def _with_questions(
    annotations: dict[QuestionId, VqaAnnotation], path: Path, annotations_path: Path
) -> dict[QuestionId, VqaAnnotation]:
    """Check a questions file against the annotations (same ids, same image ids); attach the text."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise UserError(f"{path}: expected an official VQA questions file: {{'questions': [...]}}.")
    questions: dict[QuestionId, dict[str, Any]] = {}
    for n, entry in enumerate(data["questions"]):
        if not isinstance(entry, dict) or "question_id" not in entry:
            raise UserError(f"{path}: question {n} lacks 'question_id'.")
        questions[entry["question_id"]] = entry
    only_questions = [q for q in questions if q not in annotations]
    only_annotations = [q for q in annotations if q not in questions]
    if only_questions or only_annotations:
        side, ids = (
            (f"in {path} but not in {annotations_path}", only_questions)
            if only_questions
            else (f"in {annotations_path} but not in {path}", only_annotations)
        )
        raise UserError(f"question ids differ: question_id {ids[0]!r} ({len(ids)} such ids) is {side}.")
    out = {}
    for question_id, annotation in annotations.items():
        question = questions[question_id]
        if question.get("image_id") != annotation.image_id:
            raise UserError(
                f"{path}: question_id {question_id!r} is on image_id {question.get('image_id')!r}, "
                f"but {annotations_path} says {annotation.image_id!r}."
            )
        out[question_id] = dataclasses.replace(annotation, question=str(question.get("question", "")))
    return out
