"""The VQA task: VQAv2, TextVQA or VizWiz questions, short greedy answers, the official VQA accuracy.

Prompt: the question, a newline, then ``prompt`` (default `DEFAULT_VQA_PROMPT`, LLaVA-1.5's short-
answer instruction); a ``prompt`` containing ``{question}`` is used as the whole template instead.
The resolved template is logged as the ``prompt`` param (a comparability param of the report).

Few-shot (``shots=k``): k solved examples (image, question, consensus human answer) are drawn, seeded,
from the questions of the split that are *not* evaluated and whose image is not an evaluated image,
and prepended as earlier user/assistant turns of the chat, one image per user turn. The same k
examples serve every question (one fixed context per run, so configurations compare on identical
prompts); their sample ids are logged (params ``shot_ids``, artifact ``vqa/few_shot_examples.json``).
Whether a model family may see several images is checked by `check_shots_supported`, which the runner
calls once it knows the family.

Scoring (`vqa_accuracy`, the headline): the official VQA accuracy rule (`vqa_metrics.vqa_accuracy`:
mean over the 10 leave-one-out subsets of min(1, matches / 3)) applied to *normalised* answers: the
prediction and all ten human answers pass through the official vqaEval.py normalisation
(`normalize_answer`: whitespace, punctuation, number words -> digits, articles dropped, contractions,
lower case), the humans even when they are unanimous. The official script normalises nothing when the
humans agree, and lmms-eval follows it there (it normalises the prediction with EvalAI's processor but
the humans only when they disagree); without normalising a chat model's "Yes." scores 0 against ten
humans' "yes", and normalising one side only would score an exact "none" 0 against ten "none" (the
prediction became "0"). So `vqa_accuracy` is at or above the official number, never below: equal where
the humans disagree, higher where unanimous humans differ from the raw prediction only in form.
`vqa_accuracy_official` is the official script's own number on the raw predictions, logged beside it.
Rows keep the raw ``prediction`` and the ``scored_answer``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any

from PIL import Image

from vlm_quant.engines.generate import Request
from vlm_quant.errors import UserError
from vlm_quant.tasks.base import TaskData, TaskScores
from vlm_quant.tasks.captioning_data import downscale
from vlm_quant.tasks.spotcheck import log_spotcheck
from vlm_quant.tasks.vqa_data import VqaSample, read_vqa_split, select_question_ids
from vlm_quant.tasks.vqa_metrics import UNSPECIFIED_TYPE, normalize_answer, score_vqa

DEFAULT_VQA_PROMPT = "Answer the question using a single word or phrase."
ANSWER_PROCESSING = (
    "official vqaEval normalisation on the prediction and on the human answers, always (unanimous ones "
    "too); then the official VQA accuracy rule; vqa_accuracy_official: the official script on raw answers"
)
RECOMMENDED_MAX_NEW_TOKENS = 16  # short answers; TextVQA's OCR answers can run to several tokens
EXAMPLES_PER_ANSWER_TYPE = 5

ARTIFACT_EXAMPLES = "predictions/examples_by_answer_type.json"
ARTIFACT_QUESTION_TYPES = "vqa/accuracy_by_question_type.json"
ARTIFACT_FEW_SHOT = "vqa/few_shot_examples.json"


# --- prompts and few-shot -----------------------------------------------------------------------


def prompt_template(prompt: str) -> str:
    """A template with a ``{question}`` slot: ``prompt`` if it has one, else question, newline, prompt."""
    text = prompt or DEFAULT_VQA_PROMPT
    return text if "{question}" in text else "{question}\n" + text


def format_prompt(template: str, question: str) -> str:
    """Fill the ``{question}`` slot (plain replacement: questions may contain braces)."""
    return template.replace("{question}", question.strip())


def few_shot_ids(samples: Mapping[int, VqaSample], evaluated: list[int], shots: int, seed: int) -> list[int]:
    """``shots`` seeded sample ids from the split minus the evaluated questions and their images."""
    if shots <= 0:
        return []
    evaluated_set = set(evaluated)
    evaluated_images = {samples[i].image_id for i in evaluated}
    pool = sorted(
        i for i, s in samples.items() if i not in evaluated_set and s.image_id not in evaluated_images
    )
    if len(pool) < shots:
        raise UserError(
            f"shots={shots} needs {shots} solved examples outside the evaluated questions and images, "
            f"but only {len(pool)} remain in the split ({len(samples)} questions, "
            f"n_samples={len(evaluated)}); lower n_samples or shots."
        )
    return random.Random(f"vqa-shots-{seed}").sample(pool, shots)


def check_shots_supported(family: Any, shots: int) -> None:
    """UserError when ``shots > 0`` and the model family cannot take several images in one prompt.

    ``family``: a `vlm_quant.models.families.FamilySpec` (anything with ``name`` and
    ``supports_multiple_images``) or a family name.
    """
    if shots <= 0:
        return
    if isinstance(family, str):
        from vlm_quant.models.families import family_by_name

        family = family_by_name(family)
    if not family.supports_multiple_images:
        raise UserError(
            f"shots={shots} puts {shots + 1} images in one prompt, but the {family.name} family does not "
            "support several images per prompt (it was trained on one); use shots=0 or another family."
        )


def user_turn(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}


def assistant_turn(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def metric_slug(label: str) -> str:
    """A metric-name-safe label: "yes/no" -> "yes_no"."""
    return re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_") or "unlabelled"


# --- the task -----------------------------------------------------------------------------------


class VqaTask:
    """VQAv2 / TextVQA / VizWiz: official VQA accuracy (0-1), overall and per answer type."""

    name = "vqa"
    scoring_needs_java = False  # the official VQA accuracy is pure Python
    table_columns = (
        "question_id", "image_file", "question", "prediction", "answers", "accuracy", "answer_type",
    )

    def __init__(self) -> None:
        self._shot_images: dict[int, Image.Image] = {}

    def prepare(self, cfg: Any) -> TaskData:
        split = read_vqa_split(cfg)
        ids = select_question_ids(split.samples, cfg.n_samples, cfg.seed)
        shot_ids = few_shot_ids(split.samples, ids, cfg.shots, cfg.seed)
        self._shot_images = {
            i: self._open_shot(split, split.samples[i], cfg.max_image_side) for i in shot_ids
        }
        params = {
            "prompt": prompt_template(cfg.prompt), "shots": cfg.shots, "shot_ids": shot_ids,
            "answer_processing": ANSWER_PROCESSING, "spotcheck_n": cfg.spotcheck_n, "seed": cfg.seed,
        }
        return TaskData(
            split.dataset, split.split, split.samples, ids, split.open_image, split.data_dir, params
        )

    @staticmethod
    def _open_shot(split: Any, sample: VqaSample, max_side: int) -> Image.Image:
        try:
            return downscale(split.open_image(sample), max_side)
        except Exception as exc:  # PIL raises many types; a few-shot image is needed by every request
            raise UserError(
                f"few-shot image {sample.image_file} (sample_id {sample.sample_id}) cannot be read: {exc}"
            ) from exc

    def request(self, data: TaskData, sample: Any, image: Image.Image) -> Request:
        """k solved (image, question, answer) turns, then the question; images in the same order."""
        template = data.params["prompt"]
        messages: list[dict[str, Any]] = []
        images: list[Image.Image] = []
        for shot_id in data.params["shot_ids"]:
            shot = data.samples[shot_id]
            messages.append(user_turn(format_prompt(template, shot.question)))
            messages.append(assistant_turn(shot.consensus_answer))
            images.append(self._shot_images[shot_id])
        messages.append(user_turn(format_prompt(template, sample.question)))
        images.append(image)
        return Request(messages, images)

    def score(self, data: TaskData, predictions: dict[int, str]) -> TaskScores:
        samples = {i: data.samples[i] for i in predictions}
        scored = {i: normalize_answer(text) for i, text in predictions.items()}
        annotations = {i: s.annotation() for i, s in samples.items()}
        result = score_vqa(scored, annotations, normalize_prediction=True)
        official = score_vqa(predictions, annotations)
        corpus = {"vqa_accuracy": result.accuracy, "vqa_accuracy_official": official.accuracy}
        for answer_type, accuracy in sorted(result.per_answer_type.items()):
            if answer_type != UNSPECIFIED_TYPE:
                corpus[f"vqa_accuracy_{metric_slug(answer_type)}"] = accuracy
        template = data.params["prompt"]
        rows = [
            {
                "sample_id": s.sample_id, "question_id": s.question_id, "image_id": s.image_id,
                "image_file": s.image_file, "question": s.question,
                "prompt": format_prompt(template, s.question), "prediction": predictions[i],
                "scored_answer": scored[i], "answers": list(s.answers), "accuracy": result.per_question[i],
                "accuracy_official": official.per_question[i],
                "answer_type": s.answer_type, "question_type": s.question_type,
            }
            for i, s in samples.items()
        ]
        return TaskScores(corpus, rows)

    def log_extras(self, tracker: Any, data: TaskData, scores: TaskScores) -> None:
        """Examples per answer type, accuracy per question type, the few-shot examples, the spot-check."""
        seed = data.params["seed"]
        tracker.log_json(examples_by_answer_type(scores.rows, seed), ARTIFACT_EXAMPLES)
        tracker.log_table(accuracy_by_question_type(scores.rows), ARTIFACT_QUESTION_TYPES)
        if data.params["shot_ids"]:
            tracker.log_json(few_shot_record(data), ARTIFACT_FEW_SHOT)
        log_spotcheck(
            tracker, scores.rows, lambda row: data.open_image(data.samples[row["sample_id"]]),
            n=data.params["spotcheck_n"], seed=seed, title=f"{data.dataset} {data.split} spot-check",
        )


# --- artifacts ----------------------------------------------------------------------------------


def _group(rows: list[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    return groups


def examples_by_answer_type(rows: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """Per answer type: n, mean accuracy and a few seeded example answers (for reading, not scoring)."""
    keep = ("sample_id", "question", "prediction", "answers", "accuracy")
    out = {}
    for answer_type, group in sorted(_group(rows, "answer_type").items()):
        ordered = sorted(group, key=lambda r: r["sample_id"])
        k = min(EXAMPLES_PER_ANSWER_TYPE, len(ordered))
        picked = random.Random(f"vqa-examples-{seed}").sample(ordered, k)
        out[answer_type] = {
            "n": len(group),
            "accuracy": sum(r["accuracy"] for r in group) / len(group),
            "examples": [{k: r[k] for k in keep} for r in picked],
        }
    return out


def accuracy_by_question_type(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """A table (columns -> values) of the official per-question-type accuracy (0-1), most frequent first.

    An artifact rather than metrics: VQAv2 has 65 question types, too many to browse as run metrics.
    """
    groups = sorted(_group(rows, "question_type").items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return {
        "question_type": [name for name, _ in groups],
        "n": [len(group) for _, group in groups],
        "accuracy": [sum(r["accuracy"] for r in group) / len(group) for _, group in groups],
    }


def few_shot_record(data: TaskData) -> dict[str, Any]:
    """The solved examples shown before every question, in prompt order."""
    shots = [data.samples[i] for i in data.params["shot_ids"]]
    return {
        "shots": len(shots),
        "examples": [
            {"sample_id": s.sample_id, "question_id": s.question_id, "image_file": s.image_file,
             "question": s.question, "answer": s.consensus_answer}
            for s in shots
        ],
    }
