"""The POPE task (``task=pope``): yes/no object probes, scored per split (random, popular, adversarial).

``n_samples`` counts *images* (a seeded sample of the annotated images with at least ``pope_objects``
distinct objects, or of the images of the published questions); every question of the three splits
about them is scored, ``2 x 3`` per image and split with the default ``pope_objects=3``. Questions come
from `pope_construction` (built by POPE's published rules from the COCO instance annotations) or are
read as published (``pope_file``, or ``source=hf`` with ``hf_dataset=lmms-lab/POPE``). The prompt is the
question, a newline, then ``prompt`` (default: LLaVA-1.5's short-answer instruction, as LLaVA evaluates
POPE).

Each distinct question (same image, same text) is generated **once**: ``TaskData.ids`` holds the first
row of each (``distinct_id``), and `score` scores its answer in every split the question belongs to (a
positive sits in all three). The predictions hold one row per split and question, with the raw
``prediction``, ``parsed_answer`` (the published reading), ``strict_answer`` and ``doubtful``.

Metrics (`pope_metrics`): ``pope_<split>_{accuracy,precision,recall,f1,yes_ratio,n,doubtful_n}`` per
split and ``pope_accuracy`` over all rows (the primary metric) by the published answer reading;
``pope_doubtful_answers_n`` (distinct answers that reading takes doubtfully), ``pope_n`` (rows) and
``pope_distinct_n`` (distinct questions generated); the stricter reading as
``pope_strict_<split>_{accuracy,f1}``, ``pope_strict_accuracy`` and ``pope_strict_unparsed_n``.
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
from vlm_quant.tasks.pope_construction import (
    POPE_SPLITS,
    build_questions,
    construction_record,
    eligible_images,
)
from vlm_quant.tasks.pope_data import PopeSample, read_hf_pope, read_pope_file, samples_of, with_distinct_ids
from vlm_quant.tasks.pope_metrics import is_doubtful, parse_yes_no, read_as_published, score_pope
from vlm_quant.tasks.vqa import format_prompt, prompt_template

HF_POPE = "lmms-lab/POPE"
ARTIFACT_CONSTRUCTION = "pope/construction.json"
ARTIFACT_QUESTIONS = "pope/questions.json"
ARTIFACT_DOUBTFUL = "pope/doubtful_answers.json"  # distinct answers the published reading takes doubtfully


VAL2014_URL = "http://images.cocodataset.org/zips/val2014.zip"


def _local_image_file(root: Path, split: str):
    """Published files name val2014 images; a val2017 folder holds some of the same ids as ``%012d.jpg``."""

    def image_file_of(image_id: int, name: str) -> str:
        for candidate in (f"{split}/{name}", f"{split}/{image_id:012d}.jpg"):
            if (root / candidate).is_file():
                return candidate
        return f"{split}/{name}"  # missing: `_present` refuses it, or leaves it out when allowed

    return image_file_of


def _local_opener(root: Path):
    def open_image(sample: PopeSample) -> Image.Image:
        with Image.open(root / sample.image_file) as image:
            image.load()
            return image

    return open_image


def _present(samples: list[PopeSample], root: Path, allow_subset: bool, source: str) -> list[PopeSample]:
    """The questions whose image is in ``root``; any missing is an error unless ``allow_subset``."""
    images = {s.image_id: s.image_file for s in samples}
    missing = sorted(i for i, f in images.items() if not (root / f).is_file())
    if missing and not allow_subset:
        example = images[missing[0]]
        raise UserError(
            f"{source}: {len(missing)} of its {len(images)} images are not in {root} (e.g. {example}). "
            f"Published POPE asks about COCO val2014 images: download them ({VAL2014_URL}, 6.2 GB), unzip, "
            "and pass data_dir=<folder holding val2014/> split=val2014; or set pope_allow_subset=true to "
            f"evaluate only the {len(images) - len(missing)} images present (then the numbers are not the "
            "published POPE's)."
        )
    gone = set(missing)
    return [s for s in samples if s.image_id not in gone]


class PopeTask:
    """POPE: accuracy, precision, recall, F1 and yes-ratio per negative-sampling split (0-1)."""

    name = "pope"
    scoring_needs_java = False  # yes/no readings and counts, pure Python
    table_columns = (
        "sample_id", "distinct_question_id", "pope_split", "image_id", "question", "prediction",
        "parsed_answer", "doubtful", "label", "correct",
    )

    def __init__(self) -> None:
        self._construction: dict[str, Any] = {}

    def prepare(self, cfg: Any) -> TaskData:
        """Read or build the questions and check their images, before any model is loaded."""
        if cfg.source == "hf":
            caption_default = next(f.default for f in fields(type(cfg)) if f.name == "hf_dataset")
            dataset_id = HF_POPE if cfg.hf_dataset == caption_default else cfg.hf_dataset
            split = read_hf_pope(dataset_id)
            samples, open_image, data_dir = list(split.samples.values()), split.open_image, ""
            self._construction = {"source": f"published questions: {dataset_id} (datasets), read as is"}
            images = select_ids(sorted({s.image_id for s in samples}), cfg.n_samples, cfg.seed)
        else:
            root = Path(cfg.data_dir).expanduser()
            if not root.is_dir():
                raise UserError(f"data_dir {root} does not exist: pass the folder holding {cfg.split}/.")
            open_image, data_dir = _local_opener(root), str(root)
            if cfg.pope_file:
                samples, images = self._published(cfg, root)
            else:
                samples, images = self._built(cfg, root)
        order = {image_id: rank for rank, image_id in enumerate(images)}
        chosen = with_distinct_ids(sorted(
            (s for s in samples if s.image_id in order),
            key=lambda s: (_split_rank(s.pope_split), order[s.image_id], s.sample_id),
        ))
        by_id = {s.sample_id: s for s in chosen}
        distinct = [s.sample_id for s in chosen if s.distinct_id == s.sample_id]
        self._construction.update({
            "n_images": len(images), "questions_per_split": _count(chosen),
            "n_rows": len(chosen), "n_distinct_questions": len(distinct),
        })
        params = {
            "prompt": prompt_template(cfg.prompt), "pope_source": self._construction["source"],
            "pope_n_images": len(images), "pope_objects": cfg.pope_objects,
        }
        return TaskData("coco", cfg.split, by_id, distinct, open_image, data_dir, params)

    def _published(self, cfg: Any, root: Path) -> tuple[list[PopeSample], list[int]]:
        read = read_pope_file(cfg.pope_file, _local_image_file(root, cfg.split))
        samples = _present(read, root, cfg.pope_allow_subset, f"pope_file {cfg.pope_file}")
        pool = sorted({s.image_id for s in samples})
        n_missing = len({s.image_id for s in read}) - len(pool)
        self._construction = {"source": f"published questions: {cfg.pope_file}, read as is"}
        if n_missing:
            self._construction["source"] += f" ({n_missing} images missing from data_dir left out)"
        self._construction["n_images_missing"] = n_missing
        return samples, select_ids(pool, cfg.n_samples, cfg.seed)

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
        k = cfg.pope_objects
        pool = eligible_images(instances, files, k)
        if not pool:
            raise UserError(
                f"{instances.path}: no annotated image with >= pope_objects={k} objects has a file under "
                f"{root}."
            )
        images = select_ids(pool, cfg.n_samples, cfg.seed)
        built, stats = build_questions(instances, images, k=k, seed=cfg.seed)
        self._construction = construction_record(
            stats, seed=cfg.seed, k=k, n_annotated=len(instances.objects), n_eligible=len(pool)
        )
        self._construction["instances_file"] = instances.path
        self._construction["source"] = f"built from {instances.path} (seed {cfg.seed}, k={k})"
        return samples_of(built, files), images

    def request(self, data: TaskData, sample: Any, image: Image.Image) -> Request:
        return single_image_request(image, format_prompt(data.params["prompt"], sample.question))

    def score(self, data: TaskData, predictions: dict[int, str]) -> TaskScores:
        """Every row whose distinct question was answered, scored with that one answer."""
        samples = [s for s in data.samples.values() if s.distinct_id in predictions]
        answers = {s.sample_id: predictions[s.distinct_id] for s in samples}
        published = {i: read_as_published(text) for i, text in answers.items()}
        strict = {i: parse_yes_no(text) for i, text in answers.items()}
        doubtful = {i: is_doubtful(text) for i, text in answers.items()}
        corpus: dict[str, float] = {}
        for split in sorted({s.pope_split for s in samples}, key=_split_rank):
            rows = [s for s in samples if s.pope_split == split]
            corpus.update(score_pope((s.label, published[s.sample_id]) for s in rows).metrics(
                f"pope_{split}", counts=("n",)
            ))
            corpus[f"pope_{split}_doubtful_n"] = float(sum(doubtful[s.sample_id] for s in rows))
            strict_split = score_pope((s.label, strict[s.sample_id]) for s in rows)
            for name in ("accuracy", "f1"):  # the second reading, kept short: the headline is the published
                if (value := getattr(strict_split, name)) is not None:
                    corpus[f"pope_strict_{split}_{name}"] = value
        overall = score_pope((s.label, published[s.sample_id]) for s in samples)
        if overall.accuracy is not None:
            corpus["pope_accuracy"] = overall.accuracy
        strict_overall = score_pope((s.label, strict[s.sample_id]) for s in samples)
        if strict_overall.accuracy is not None:
            corpus["pope_strict_accuracy"] = strict_overall.accuracy
        corpus["pope_strict_unparsed_n"] = float(strict_overall.n_unparsed)
        corpus["pope_doubtful_answers_n"] = float(sum(is_doubtful(t) for t in predictions.values()))
        corpus["pope_n"], corpus["pope_distinct_n"] = float(len(samples)), float(len(predictions))
        template = data.params["prompt"]
        rows = [
            {
                "sample_id": s.sample_id, "distinct_question_id": s.distinct_id, "question_id": s.question_id,
                "pope_split": s.pope_split, "image_id": s.image_id, "image_file": s.image_file,
                "object": s.object, "question": s.question, "prompt": format_prompt(template, s.question),
                "prediction": answers[s.sample_id], "parsed_answer": published[s.sample_id],
                "strict_answer": strict[s.sample_id], "doubtful": doubtful[s.sample_id], "label": s.label,
                "correct": float(published[s.sample_id] == s.label),
            }
            for s in samples
        ]
        return TaskScores(corpus, rows)

    def log_extras(self, tracker: Any, data: TaskData, scores: TaskScores) -> None:
        """How the questions were made, every evaluated question by split, the doubtful answers."""
        tracker.log_json(self._construction, ARTIFACT_CONSTRUCTION)
        questions: dict[str, list[dict[str, Any]]] = {}
        for s in data.samples.values():
            questions.setdefault(s.pope_split, []).append({
                "sample_id": s.sample_id, "distinct_question_id": s.distinct_id, "question_id": s.question_id,
                "image_id": s.image_id, "object": s.object, "question": s.question, "label": s.label,
            })
        tracker.log_json(questions, ARTIFACT_QUESTIONS)
        doubtful = {
            r["distinct_question_id"]: {k: r[k] for k in ("distinct_question_id", "question", "prediction")}
            | {"read_as": r["parsed_answer"], "strict_answer": r["strict_answer"]}
            for r in scores.rows if r["doubtful"]
        }
        tracker.log_json(list(doubtful.values()), ARTIFACT_DOUBTFUL)


def _split_rank(split: str) -> int:
    return POPE_SPLITS.index(split) if split in POPE_SPLITS else len(POPE_SPLITS)


def _count(samples: list[PopeSample]) -> Mapping[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for s in samples:
        out.setdefault(s.pope_split, {"yes": 0, "no": 0})[s.label] += 1
    return out
