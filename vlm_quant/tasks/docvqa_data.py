"""DocVQA (single-page, SP-DocVQA) from its official local layout.

Layout (``data_dir``, as distributed by rrc.cvc.uab.es / docvqa.org, task 1):
``val_v1.0.json`` (``{"dataset_name", "dataset_split", "data": [{"questionId", "question",
"image": "documents/<name>.png", "answers": [...], "question_types": [...], ...}]}``) and the
``documents/`` folder it names. ``questions_file`` overrides the JSON (relative to data_dir or
absolute); ``image_dir`` overrides the folder the ``image`` names are read from (then only their
file name is kept). ``sample_id`` = ``questionId``. The test split has no answers and is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlm_quant.errors import UserError
from vlm_quant.tasks.base import Split
from vlm_quant.tasks.ocr_qa_data import (
    OcrQaSample,
    checked_text,
    existing_dir,
    image_prefix,
    in_folder,
    load_json_file,
    local_opener,
)

DOCVQA_SPLIT_FILES = {"val": "val_v1.0.json", "train": "train_v1.0.json"}
GENERIC_VAL_SPLITS = ("", "val", "val2014", "val2017", "validation")


def docvqa_split_name(split: str) -> str:
    name = "val" if split in GENERIC_VAL_SPLITS else split
    if name not in DOCVQA_SPLIT_FILES:
        raise UserError(f"split={split!r}: DocVQA's scored splits here are {', '.join(DOCVQA_SPLIT_FILES)}.")
    return name


def parse_docvqa(data: Any, source: str, image_prefix: str = "") -> dict[int, OcrQaSample]:
    """Official DocVQA JSON -> {questionId: OcrQaSample}; ``image_prefix`` replaces the image's folder."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise UserError(f"{source}: expected the official DocVQA layout: {{'data': [...]}}.")
    samples: dict[int, OcrQaSample] = {}
    for n, entry in enumerate(data["data"]):
        question_id = entry.get("questionId") if isinstance(entry, dict) else None
        if not isinstance(question_id, int):
            raise UserError(f"{source}: entry {n} lacks an integer 'questionId'.")
        if question_id in samples:
            raise UserError(f"{source}: questionId {question_id} appears more than once.")
        answers = entry.get("answers")
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise UserError(f"{source}: questionId {question_id} has no answers (the test split has none).")
        image = checked_text(entry.get("image"), source, question_id, "'image'")
        image_file = in_folder(image_prefix, Path(image).name) if image_prefix else image
        samples[question_id] = OcrQaSample(
            question_id,
            question_id,
            image_file,
            checked_text(entry.get("question"), source, question_id, "question text"),
            tuple(answers),
            question_types=tuple(str(t) for t in entry.get("question_types") or ()),
        )
    if not samples:
        raise UserError(f"{source} holds no questions.")
    return samples


def read_local_docvqa(split: str, *, data_dir: str, questions_file: str = "", image_dir: str = "") -> Split:
    """The DocVQA split in its official layout (see the module docstring)."""
    root = existing_dir(data_dir, "docvqa")
    name = docvqa_split_name(split)
    path = Path(questions_file or DOCVQA_SPLIT_FILES[name]).expanduser()
    path = path if path.is_absolute() or not (root / path).exists() else root / path
    prefix = ""
    if image_dir:
        images = Path(image_dir).expanduser()
        images = images if images.is_absolute() else root / images
        if not images.is_dir():
            raise UserError(f"image folder not found: {images} (image_dir of dataset=docvqa).")
        prefix = image_prefix(root, images)
    samples = parse_docvqa(load_json_file(path, "DocVQA annotation file"), str(path), prefix)
    return Split("docvqa", name, samples, local_opener(root), str(root))
