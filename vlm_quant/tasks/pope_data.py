"""POPE questions (Li et al., 2023, "Evaluating Object Hallucination in Large Vision-Language Models").

Yes/no probes "Is there a {object} in the image?" about COCO images, in three splits that differ only in
how the *negative* objects (absent from the image) are drawn:

- ``random``: uniformly among the categories the image does not hold;
- ``popular``: the most frequent categories (by number of annotated images holding them) it does not hold;
- ``adversarial``: the categories most often seen *together with* the image's objects (co-occurrence
  counts over the annotated images) that it does not hold.

Built from COCO instance annotations (`build_pope`): per image, ``k`` positives (a seeded sample of its
categories; all of them when it has fewer) and as many negatives, so every split is balanced. The same
positives serve the three splits, as in the paper. Images without instance annotations have unknown
objects and are never used; an annotated image with no object has no positive and is left out (counted).
Frequencies and co-occurrences are counted over every annotated image of the instances file.

Published question files are read as they are (`read_pope_file`): the POPE repository's
``coco_pope_{random,popular,adversarial}.json`` (JSON lines of ``question_id``, ``image``, ``text``,
``label``), or ``lmms-lab/POPE`` through `datasets` (`read_hf_pope`, columns ``question_id``,
``question``, ``answer``, ``image_source``, ``category``, ``image``).

``sample_id`` numbers every question of every split (unique in the run); ``question_id`` is the
published one (or, for built questions, the same as ``sample_id``).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from PIL import Image

from vlm_quant.errors import UserError
from vlm_quant.tasks.base import Split
from vlm_quant.tasks.coco_instances import CocoInstances

POPE_SPLITS = ("random", "popular", "adversarial")
QUESTION = "Is there a {object} in the image?"  # the paper's template ("a" even before vowels)


@dataclass(frozen=True)
class PopeSample:
    """One yes/no question about one image, in one POPE split."""

    sample_id: int
    question_id: int | str
    pope_split: str  # random | popular | adversarial
    image_id: int
    image_file: str
    question: str
    label: str  # "yes" | "no"
    object: str = ""  # the probed COCO category ("" when a published file does not say)


@dataclass(frozen=True)
class PopeConstruction:
    """How built questions were drawn (logged as the run's ``pope/construction.json``)."""

    seed: int
    objects_per_image: int
    n_images_annotated: int
    n_images_without_objects: int  # annotated but empty: no positive possible
    frequency: dict[str, int]  # category -> annotated images holding it (the popular ranking)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": "built from COCO instance annotations",
            "question": QUESTION,
            "seed": self.seed,
            "objects_per_image": self.objects_per_image,
            "n_images_annotated": self.n_images_annotated,
            "n_images_without_objects": self.n_images_without_objects,
            "negatives": {
                "random": "seeded uniform sample of categories absent from the image",
                "popular": "most frequent absent categories (images holding them; ties by name)",
                "adversarial": "absent categories most co-occurring with the image's objects (ties by name)",
            },
            "category_frequency": dict(sorted(self.frequency.items(), key=lambda kv: (-kv[1], kv[0]))),
        }


def object_statistics(objects: Mapping[int, Iterable[str]]) -> tuple[Counter, Counter]:
    """(images holding each category, images holding each unordered category pair)."""
    frequency: Counter = Counter()
    together: Counter = Counter()
    for categories in objects.values():
        present = sorted(set(categories))
        frequency.update(present)
        together.update(combinations(present, 2))
    return frequency, together


def negatives(
    present: frozenset[str], k: int, method: str, categories: Iterable[str],
    frequency: Counter, together: Counter, rng: random.Random,
) -> list[str]:
    """``k`` categories absent from an image, by the split's ``method``."""
    absent = sorted(set(categories) - present)
    if method == "random":
        return rng.sample(absent, min(k, len(absent)))
    if method == "popular":
        ranked = sorted(absent, key=lambda c: (-frequency[c], c))
    elif method == "adversarial":
        def score(c: str) -> int:
            return sum(together[tuple(sorted((c, o)))] for o in present)

        ranked = sorted(absent, key=lambda c: (-score(c), -frequency[c], c))
    else:
        raise ValueError(f"unknown POPE split {method!r}")
    return ranked[:k]


def build_pope(
    instances: CocoInstances, image_files: Mapping[int, str], image_ids: Iterable[int], *, k: int, seed: int
) -> list[PopeSample]:
    """The three splits' questions for ``image_ids`` (each must be annotated), split by split.

    ``image_files``: image id -> file relative to the data directory. Deterministic for a seed.
    """
    frequency, together = object_statistics(instances.objects)
    samples: list[PopeSample] = []
    for split in POPE_SPLITS:
        for image_id in image_ids:
            present = instances.categories_of(image_id)
            rng = random.Random(f"pope-{seed}-{image_id}")  # same positives in every split
            positives = rng.sample(sorted(present), min(k, len(present)))
            negative_rng = random.Random(f"pope-{seed}-{image_id}-{split}")
            absent = negatives(
                present, len(positives), split, instances.categories, frequency, together, negative_rng
            )
            for positive, negative in zip(positives, absent, strict=False):
                for obj, label in ((positive, "yes"), (negative, "no")):
                    sid = len(samples)
                    question = QUESTION.format(object=obj)
                    samples.append(
                        PopeSample(sid, sid, split, image_id, image_files[image_id], question, label, obj)
                    )
    return samples


def poppable_images(instances: CocoInstances, image_files: Mapping[int, str]) -> list[int]:
    """Annotated images with at least one object and a file, sorted (the pool images are drawn from)."""
    return sorted(i for i, objs in instances.objects.items() if objs and i in image_files)


# --- published files --------------------------------------------------------------------------


def _split_of(name: str) -> str:
    for split in POPE_SPLITS:
        if split in name.lower():
            return split
    return Path(name).stem


def _image_id(name: str) -> int:
    digits = re.findall(r"\d+", Path(str(name)).stem)
    if not digits:
        raise UserError(f"POPE image {name!r} carries no COCO image id")
    return int(digits[-1])


def _pope_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl") and "pope" in p.name)
        if not files:
            raise UserError(f"pope_file folder {path} holds no coco_pope_*.json files")
        return files
    if not path.is_file():
        raise UserError(f"pope_file not found: {path}")
    return [path]


def _label(value: Any, where: str) -> str:
    label = str(value).strip().lower()
    if label not in ("yes", "no"):
        raise UserError(f"{where}: label {value!r} is neither yes nor no")
    return label


def read_pope_file(path: str | Path, image_file_of: Any) -> list[PopeSample]:
    """Questions of published POPE files (one file, or a folder of them), in file and line order.

    ``image_file_of(image_id, name)``: the image's file relative to the data directory.
    """
    samples: list[PopeSample] = []
    for file in _pope_files(Path(path).expanduser()):
        split = _split_of(file.name)
        for line_no, line in enumerate(file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                name, text = str(entry["image"]), str(entry["text"])
                question_id = entry["question_id"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise UserError(f"{file}:{line_no} is not a POPE question line: {exc!r}") from exc
            image_id = _image_id(name)
            samples.append(PopeSample(
                len(samples), question_id, split, image_id, image_file_of(image_id, name), text,
                _label(entry.get("label"), f"{file}:{line_no}"),
            ))
    return samples


def read_hf_pope(dataset_id: str) -> Split:
    """lmms-lab/POPE (or a saved copy) through `datasets`; images come from the rows."""
    from vlm_quant.tasks.vqa_data import _load_hf

    rows = _load_hf(dataset_id, "test")
    meta = rows.select_columns([c for c in rows.column_names if c != "image"])
    samples: dict[int, PopeSample] = {}
    for index, row in enumerate(meta):
        sid = len(samples)
        samples[sid] = PopeSample(
            sid, row.get("question_id", index), str(row.get("category") or "file"),
            _image_id(str(row.get("image_source", index))), f"row:{index}", str(row["question"]),
            _label(row.get("answer"), f"{dataset_id} row {index}"),
        )

    def open_image(sample: PopeSample) -> Image.Image:
        return rows[int(sample.image_file.removeprefix("row:"))]["image"]

    return Split("pope", "test", samples, open_image, "")
