"""POPE questions (Li et al., 2023, "Evaluating Object Hallucination in Large Vision-Language Models").

Yes/no probes "Is there a/an {object} in the image?" about COCO images, in three splits (random,
popular, adversarial) that differ only in how the negative objects are drawn. Questions are built from
COCO instance annotations by the published rules (`pope_construction`) or read from published files as
they are (`read_pope_file`: the POPE repository's ``coco_pope_{random,popular,adversarial}.json``, JSON
lines of ``question_id``, ``image``, ``text``, ``label``; `read_hf_pope`: ``lmms-lab/POPE`` through
`datasets`, columns ``question_id``, ``question``, ``answer``, ``image_source``, ``category``, ``image``).

``sample_id`` numbers every question of every split (unique in the run; one row of the predictions);
``question_id`` is the published one (or, for built questions, the same as ``sample_id``). The same
question about the same image often sits in several splits (every positive is in all three); the model
is asked it once: ``distinct_id`` is the sample id of its first row (`with_distinct_ids`), whose answer
every row of that question is scored with.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from vlm_quant.errors import UserError
from vlm_quant.tasks.pope_construction import POPE_SPLITS, BuiltQuestion


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
    distinct_id: int = -1  # sample id of the first row asking the same image the same question


def question_key(sample: PopeSample) -> tuple[Any, ...]:
    """What makes two rows one question to the model: the same image, the same text (and answer)."""
    return sample.image_id, sample.image_file, sample.question, sample.label


def with_distinct_ids(samples: Iterable[PopeSample]) -> list[PopeSample]:
    """``samples`` (in evaluation order), each with ``distinct_id`` = the first of its question's rows."""
    first: dict[tuple[Any, ...], int] = {}
    return [
        dataclasses.replace(s, distinct_id=first.setdefault(question_key(s), s.sample_id)) for s in samples
    ]


def samples_of(built: Iterable[BuiltQuestion], image_files: dict[int, str]) -> list[PopeSample]:
    """Built questions as samples, numbered in order (``question_id`` = ``sample_id``)."""
    return [
        PopeSample(n, n, q.pope_split, q.image_id, image_files[q.image_id], q.question, q.label, q.object)
        for n, q in enumerate(built)
    ]


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


def read_hf_pope(dataset_id: str) -> Any:
    """lmms-lab/POPE (or a saved copy) through `datasets`; images come from the rows."""
    from vlm_quant.tasks.base import Split  # imports torch: kept off `score pope`'s path
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
