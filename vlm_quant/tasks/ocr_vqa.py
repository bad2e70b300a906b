"""Text-heavy VQA: DocVQA scored with ANLS, ChartQA with relaxed accuracy (``task=vqa``).

Prompt: as the vqa task's (the question, a newline, ``prompt`` or LLaVA-1.5's short-answer
instruction; a ``prompt`` with ``{question}`` is the whole template). No few-shot (``shots`` must be 0).

Scores (0-1), on the prediction as generated (the official scripts take it as is):

* DocVQA: ``anls`` (`vlm_quant.tasks.anls`, threshold 0.5), per row ``anls``;
* ChartQA: ``relaxed_accuracy`` over every evaluated question, and ``relaxed_accuracy_human`` /
  ``relaxed_accuracy_augmented`` per subset (absent when the subset has no evaluated question), per row
  ``relaxed_correct`` (`vlm_quant.tasks.relaxed_accuracy`).

Rows also carry ``accuracy`` (= the row's score) so the spot-check sheet and the report's per-sample
readers treat them as VQA rows.

Image size: documents and charts carry small print, so each dataset declares the longest image side
its inputs need (`NEEDED_IMAGE_SIDE`); it is logged as the ``task_image_side_needed`` param, and a run
whose ``max_image_side`` is smaller gets the tag ``vlm_quant.image_side_caveat`` saying so (the
default cap stays 1024: raise it with ``max_image_side``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image

from vlm_quant.engines.generate import Request
from vlm_quant.errors import UserError
from vlm_quant.tasks.anls import anls_question
from vlm_quant.tasks.base import Split, TaskData, TaskScores
from vlm_quant.tasks.chartqa_data import CHARTQA_SUBSETS, read_local_chartqa
from vlm_quant.tasks.docvqa_data import read_local_docvqa
from vlm_quant.tasks.relaxed_accuracy import relaxed_question
from vlm_quant.tasks.spotcheck import log_spotcheck
from vlm_quant.tasks.vqa import format_prompt, prompt_template, user_turn
from vlm_quant.tasks.vqa_data import select_question_ids
from vlm_quant.tracking.run_schema import TAG_IMAGE_SIDE_CAVEAT

OCR_VQA_DATASETS = ("docvqa", "chartqa")
METRIC = {"docvqa": "anls", "chartqa": "relaxed_accuracy"}
ROW_SCORE = {"docvqa": "anls", "chartqa": "relaxed_correct"}
# Longest image side (pixels) the inputs need: DocVQA pages are scanned at ~1700-2300 px on the long
# side and their small print is lost at 1024; ChartQA charts are mostly under 1024 px (800x600 typical).
NEEDED_IMAGE_SIDE = {"docvqa": 2048, "chartqa": 1024}


def read_ocr_split(cfg: Any) -> Split:
    """The configured DocVQA or ChartQA split, from its official local layout."""
    if cfg.source != "local":
        raise UserError(
            f"dataset={cfg.dataset} reads its official local layout: use source=local and data_dir."
        )
    if cfg.dataset == "docvqa":
        return read_local_docvqa(
            cfg.split,
            data_dir=cfg.data_dir,
            questions_file=cfg.questions_file or cfg.annotations_file,
            image_dir=cfg.image_dir,
        )
    return read_local_chartqa(cfg.split, data_dir=cfg.data_dir, image_dir=cfg.image_dir)


def score_function(dataset: str) -> Callable[[str, tuple[str, ...]], float]:
    return anls_question if dataset == "docvqa" else relaxed_question


def image_side_caveat(dataset: str, max_image_side: int) -> str | None:
    """Why the run's image cap is below what the dataset's inputs need (None when it is not)."""
    needed = NEEDED_IMAGE_SIDE[dataset]
    if max_image_side >= needed:
        return None
    return (
        f"max_image_side={max_image_side} is below the {needed} px {dataset}'s inputs need: small print may "
        "be unreadable, so scores are a lower bound of the model's; set max_image_side to compare with "
        "published numbers"
    )


def corpus_scores(dataset: str, rows: list[dict[str, Any]]) -> dict[str, float]:
    """The headline score (0-1) and, for ChartQA, one per subset present in ``rows``."""
    metric = METRIC[dataset]
    corpus = {metric: sum(r["accuracy"] for r in rows) / len(rows)}
    if dataset == "chartqa":
        for subset in CHARTQA_SUBSETS:
            group = [r["accuracy"] for r in rows if r["subset"] == subset]
            if group:
                corpus[f"{metric}_{subset}"] = sum(group) / len(group)
    return corpus


class OcrVqaTask:
    """DocVQA (ANLS) and ChartQA (relaxed accuracy), 0-1."""

    name = "vqa"
    scoring_needs_java = False
    table_columns = ("question_id", "image_file", "question", "prediction", "answers", "accuracy", "subset")

    def prepare(self, cfg: Any) -> TaskData:
        if cfg.shots:
            raise UserError(f"shots={cfg.shots}: dataset={cfg.dataset} has no few-shot mode; use shots=0.")
        split = read_ocr_split(cfg)
        ids = select_question_ids(split.samples, cfg.n_samples, cfg.seed)
        params = {
            "prompt": prompt_template(cfg.prompt),
            "metric": METRIC[split.dataset],
            "task_image_side_needed": NEEDED_IMAGE_SIDE[split.dataset],
            "spotcheck_n": cfg.spotcheck_n,
            "seed": cfg.seed,
        }
        caveat = image_side_caveat(split.dataset, cfg.max_image_side)
        if caveat:  # a param too, so `score run` rebuilds the same scoring inputs
            params["image_side_caveat"] = caveat
        return TaskData(
            split.dataset, split.split, split.samples, ids, split.open_image, split.data_dir, params
        )

    def request(self, data: TaskData, sample: Any, image: Image.Image) -> Request:
        return Request([user_turn(format_prompt(data.params["prompt"], sample.question))], [image])

    def score(self, data: TaskData, predictions: dict[int, str]) -> TaskScores:
        scorer = score_function(data.dataset)
        template = data.params["prompt"]
        rows = []
        for i, text in predictions.items():
            s = data.samples[i]
            value = float(scorer(text, s.answers))
            rows.append(
                {
                    "sample_id": s.sample_id,
                    "question_id": s.question_id,
                    "image_file": s.image_file,
                    "question": s.question,
                    "prompt": format_prompt(template, s.question),
                    "prediction": text,
                    "answers": list(s.answers),
                    ROW_SCORE[data.dataset]: value,
                    "accuracy": value,
                    "subset": s.subset,
                    "question_types": list(s.question_types),
                }
            )
        caveat = data.params.get("image_side_caveat")
        tags = {TAG_IMAGE_SIDE_CAVEAT: caveat} if caveat else {}
        return TaskScores(corpus_scores(data.dataset, rows), rows, tags)

    def log_extras(self, tracker: Any, data: TaskData, scores: TaskScores) -> None:
        """The spot-check sheet (the automatic score column is the row's ANLS or relaxed 0/1)."""
        log_spotcheck(
            tracker,
            scores.rows,
            lambda row: data.open_image(data.samples[row["sample_id"]]),
            n=data.params["spotcheck_n"],
            seed=data.params["seed"],
            title=f"{data.dataset} {data.split} spot-check ({data.params['metric']})",
        )
