"""The POPE task (``task=pope``): yes/no object probes, scored per split (random, popular, adversarial).

``n_samples`` counts *images* (a seeded sample of the annotated images with at least one object, or of
the images of the published questions); every question of the three splits about them is asked, so a
run asks about ``6 x 3 = 18`` questions per image with the default ``pope_objects=3``. Questions come
from `pope_data`: built from the COCO instance annotations, or read as published (``pope_file``, or
``source=hf`` with ``hf_dataset=lmms-lab/POPE``). The prompt is the question, a newline, then ``prompt``
(default: LLaVA-1.5's short-answer instruction, as LLaVA evaluates POPE). Answers are mapped to yes/no by
`pope_metrics.parse_yes_no`; rows keep the raw ``prediction`` and the ``parsed_answer``.

Metrics: ``pope_<split>_{accuracy,precision,recall,f1,yes_ratio,n,unparsed_n}`` per split, and
``pope_accuracy`` / ``pope_unparsed_n`` over all questions (the primary metric, a per-question mean).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from PIL import Image

from vlm_quant.engines.generate import Request, single_image_request
from vlm_quant.errors import UserError
from vlm_quant.tasks.base import TaskData, TaskScores
from vlm_quant.tasks.captioning_data import select_ids
from vlm_quant.tasks.coco_instances import find_instances
from vlm_quant.tasks.pope_data import (
    POPE_SPLITS,
    PopeConstruction,
    PopeSample,
    build_pope,
    object_statistics,
    poppable_images,
    read_hf_pope,
    read_pope_file,
)
from vlm_quant.tasks.pope_metrics import parse_yes_no, score_pope
from vlm_quant.tasks.vqa import format_prompt, prompt_template

HF_POPE = "lmms-lab/POPE"
ARTIFACT_CONSTRUCTION = "pope/construction.json"
ARTIFACT_QUESTIONS = "pope/questions.json"


def _local_image_file(root: Path, split: str):
    """Published files name val2014 images; a val2017 folder holds the same ids as ``%012d.jpg``."""

    def image_file_of(image_id: int, name: str) -> str:
        for candidate in (f"{split}/{name}", f"{split}/{image_id:012d}.jpg"):
            if (root / candidate).is_file():
                return candidate
        return f"{split}/{name}"  # unreadable at run time: skipped and reported like any missing image

    return image_file_of


def _local_opener(root: Path):
    def open_image(sample: PopeSample) -> Image.Image:
        with Image.open(root / sample.image_file) as image:
            image.load()
            return image

    return open_image


class PopeTask:
    """POPE: accuracy, precision, recall, F1 and yes-ratio per negative-sampling split (0-1)."""

    name = "pope"
    scoring_needs_java = False  # yes/no parsing and counts, pure Python
    table_columns = (
        "question_id", "pope_split", "image_id", "question", "prediction", "parsed_answer", "label",
        "correct",
    )

    def __init__(self) -> None:
        self._construction: dict[str, Any] = {}

    def prepare(self, cfg: Any) -> TaskData:
        if cfg.source == "hf":
            caption_default = next(f.default for f in fields(type(cfg)) if f.name == "hf_dataset")
            dataset_id = HF_POPE if cfg.hf_dataset == caption_default else cfg.hf_dataset
            split = read_hf_pope(dataset_id)
            samples, open_image, data_dir = list(split.samples.values()), split.open_image, ""
            self._construction = {"source": f"published questions: {dataset_id} (datasets), read as is"}
            pool = sorted({s.image_id for s in samples})
        else:
            root = Path(cfg.data_dir).expanduser()
            if not root.is_dir():
                raise UserError(f"data_dir {root} does not exist: pass the folder holding {cfg.split}/.")
            open_image, data_dir = _local_opener(root), str(root)
            if cfg.pope_file:
                samples = read_pope_file(cfg.pope_file, _local_image_file(root, cfg.split))
                self._construction = {"source": f"published questions: {cfg.pope_file}, read as is"}
                pool = sorted({s.image_id for s in samples})
            else:
                samples, pool = self._built(cfg, root)
        images = select_ids(pool, cfg.n_samples, cfg.seed)
        order = {image_id: rank for rank, image_id in enumerate(images)}
        chosen = sorted(
            (s for s in samples if s.image_id in order),
            key=lambda s: (_split_rank(s.pope_split), order[s.image_id], s.sample_id),
        )
        by_id = {s.sample_id: s for s in chosen}
        self._construction["n_images"] = len(images)
        self._construction["questions_per_split"] = _count(chosen)
        params = {
            "prompt": prompt_template(cfg.prompt), "pope_source": self._construction["source"],
            "pope_n_images": len(images), "pope_objects": cfg.pope_objects,
        }
        return TaskData("coco", cfg.split, by_id, [s.sample_id for s in chosen], open_image, data_dir, params)

    def _built(self, cfg: Any, root: Path) -> tuple[list[PopeSample], list[int]]:
        instances = find_instances(str(root), cfg.split, cfg.instances_file)
        if instances is None:
            raise UserError(
                f"task=pope builds its questions from COCO instance annotations: none at "
                f"{root}/annotations/instances_{cfg.split}.json; set instances_file, or pope_file to "
                "published POPE questions."
            )
        files = {i: f"{cfg.split}/{name}" for i, name in instances.file_names.items()}
        files = {i: f for i, f in files.items() if (root / f).is_file()}
        pool = poppable_images(instances, files)
        if not pool:
            raise UserError(f"{instances.path}: no annotated image with objects has a file under {root}.")
        empty = sum(1 for objs in instances.objects.values() if not objs)
        frequency, _ = object_statistics(instances.objects)
        construction = PopeConstruction(
            cfg.seed, cfg.pope_objects, len(instances.objects), empty, dict(frequency)
        )
        self._construction = {**construction.to_dict(), "instances_file": instances.path}
        self._construction["source"] = f"built from {instances.path} (seed {cfg.seed}, k={cfg.pope_objects})"
        samples = build_pope(instances, files, pool, k=cfg.pope_objects, seed=cfg.seed)
        return samples, pool

    def request(self, data: TaskData, sample: Any, image: Image.Image) -> Request:
        return single_image_request(image, format_prompt(data.params["prompt"], sample.question))

    def score(self, data: TaskData, predictions: dict[int, str]) -> TaskScores:
        samples = {i: data.samples[i] for i in predictions}
        parsed = {i: parse_yes_no(text) for i, text in predictions.items()}
        corpus: dict[str, float] = {}
        for split in sorted({s.pope_split for s in samples.values()}, key=_split_rank):
            pairs = [(s.label, parsed[i]) for i, s in samples.items() if s.pope_split == split]
            corpus.update(score_pope(pairs).metrics(f"pope_{split}"))
        overall = score_pope((s.label, parsed[i]) for i, s in samples.items())
        if overall.accuracy is not None:
            corpus["pope_accuracy"] = overall.accuracy
        corpus["pope_unparsed_n"] = float(overall.n_unparsed)
        template = data.params["prompt"]
        rows = [
            {
                "sample_id": s.sample_id, "question_id": s.question_id, "pope_split": s.pope_split,
                "image_id": s.image_id, "image_file": s.image_file, "object": s.object,
                "question": s.question, "prompt": format_prompt(template, s.question),
                "prediction": predictions[i], "parsed_answer": parsed[i], "label": s.label,
                "correct": float(parsed[i] == s.label),
            }
            for i, s in samples.items()
        ]
        return TaskScores(corpus, rows)

    def log_extras(self, tracker: Any, data: TaskData, scores: TaskScores) -> None:
        """How the questions were made, and every evaluated question by split."""
        tracker.log_json(self._construction, ARTIFACT_CONSTRUCTION)
        questions: dict[str, list[dict[str, Any]]] = {}
        for i in data.ids:
            s = data.samples[i]
            questions.setdefault(s.pope_split, []).append({
                "sample_id": s.sample_id, "question_id": s.question_id, "image_id": s.image_id,
                "object": s.object, "question": s.question, "label": s.label,
            })
        tracker.log_json(questions, ARTIFACT_QUESTIONS)


def _split_rank(split: str) -> int:
    return POPE_SPLITS.index(split) if split in POPE_SPLITS else len(POPE_SPLITS)


def _count(samples: list[PopeSample]) -> Mapping[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for s in samples:
        out.setdefault(s.pope_split, {"yes": 0, "no": 0})[s.label] += 1
    return out
