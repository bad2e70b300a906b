"""Rescoring DocVQA / ChartQA answers from files (`vlm-quant score vqa --dataset docvqa|chartqa`).

Predictions: ``[{"question_id": ..., "answer": ...}, ...]`` (DocVQA: its ``questionId``; ChartQA: the
row's 0-based index in the annotation file). Annotations: the official file (DocVQA's ``val_v1.0.json``
layout; one ChartQA ``test_human.json`` / ``test_augmented.json``). The predicted questions are
scored (each score is per question, so a subset scores as the evaluate run would); a prediction for a
question the file lacks is an error naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlm_quant.errors import UserError
from vlm_quant.tasks.chartqa_data import parse_chartqa
from vlm_quant.tasks.docvqa_data import parse_docvqa
from vlm_quant.tasks.ocr_vqa import METRIC, score_function
from vlm_quant.tasks.results_files import load_json, read_results


def score_ocr_files(
    dataset: str, predictions_path: str | Path, annotations_path: str | Path
) -> dict[str, Any]:
    """{<metric>: score (0-1), "n_questions": scored, "n_annotated": in the file} for docvqa / chartqa."""
    predictions_path, annotations_path = Path(predictions_path), Path(annotations_path)
    data = load_json(annotations_path)
    if dataset == "docvqa":
        samples = parse_docvqa(data, str(annotations_path))
    else:
        samples = parse_chartqa(data, str(annotations_path), "", "")
    answers = {s.question_id: s.answers for s in samples.values()}
    predictions = read_results(predictions_path, "question_id", "answer", f"{dataset} answers")
    if not predictions:
        raise UserError(f"{predictions_path} holds no answers.")
    missing = [q for q in predictions if q not in answers]
    if missing:
        raise UserError(
            f"{predictions_path}: question_id {missing[0]!r} is absent from {annotations_path} "
            f"({len(missing)} such ids; ChartQA ids are row indices, DocVQA's its questionId)."
        )
    scorer = score_function(dataset)
    total = sum(scorer(text, answers[q]) for q, text in predictions.items())
    return {
        METRIC[dataset]: total / len(predictions),
        "n_questions": len(predictions),
        "n_annotated": len(answers),
    }
