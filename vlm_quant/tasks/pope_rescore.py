"""POPE from files, without a model: published questions + answers -> POPE's metrics (`score pope`).

Questions: POPE's format, JSON lines of ``question_id``, ``image``, ``text``, ``label`` (one
``coco_pope_<split>.json``). Answers: JSON lines of ``question_id`` and ``text`` (LLaVA's answer files;
``answer``, the field POPE's evaluate.py reads, is taken when ``text`` is missing). Answers are matched to
questions by ``question_id`` (POPE's script pairs them by line order) and read by POPE's evaluate.py rule
(`pope_metrics.read_as_published`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlm_quant.errors import UserError
from vlm_quant.tasks.pope_data import read_pope_file
from vlm_quant.tasks.pope_metrics import is_doubtful, parse_yes_no, read_as_published, score_pope

RATIOS = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def read_answers(path: str | Path) -> dict[str, str]:
    """Answer text by question id (as a string), from JSON lines; UserError naming the bad line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"predictions file not found: {path}")
    answers: dict[str, str] = {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            key, text = str(entry["question_id"]), entry.get("text", entry.get("answer"))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{path}:{line_no} is not an answer line (question_id, text): {exc!r}") from exc
        if not isinstance(text, str):
            raise UserError(f"{path}:{line_no}: no answer text (field 'text' or 'answer')")
        if key in answers:
            raise UserError(f"{path}:{line_no}: question_id {key} answered twice")
        answers[key] = text
    return answers


def score_pope_files(predictions: str | Path, questions: str | Path) -> dict[str, Any]:
    """POPE's metrics (0-1) for answers to one question file; an undefined ratio is null, with a reason."""
    asked = read_pope_file(questions, lambda image_id, name: name)
    answers = read_answers(predictions)
    keys = [str(q.question_id) for q in asked]
    if len(set(keys)) != len(keys):
        raise UserError(f"{questions}: a question_id appears twice (give one split's file)")
    unanswered = [k for k in keys if k not in answers]
    unknown = sorted(set(answers) - set(keys))
    if unanswered or unknown:
        raise UserError(
            f"{predictions} does not answer {questions}: {len(unanswered)} questions unanswered "
            f"(first: {unanswered[:1]}), {len(unknown)} answers to unknown question ids "
            f"(first: {unknown[:1]})"
        )
    texts = [answers[k] for k in keys]
    scores = score_pope((q.label, read_as_published(t)) for q, t in zip(asked, texts, strict=True))
    strict = score_pope((q.label, parse_yes_no(t)) for q, t in zip(asked, texts, strict=True))
    result: dict[str, Any] = {name: getattr(scores, name) for name in RATIOS}
    absent = {name: "nothing to divide by (no 'yes' answer, or no true positive for f1)"
              for name in RATIOS if result[name] is None}
    result.update({
        "n": scores.n, "tp": scores.tp, "fp": scores.fp, "tn": scores.tn, "fn": scores.fn,
        "doubtful_n": sum(map(is_doubtful, texts)),
        "strict_accuracy": strict.accuracy, "strict_unparsed_n": strict.n_unparsed,
        "answer_rule": "POPE's evaluate.py: 'no' when the first sentence has the word No, no or not",
    })
    if absent:
        result["absent_reason"] = absent
    return result
