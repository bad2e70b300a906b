"""What DocVQA and ChartQA samples share: one question on one image, a few accepted answers.

The loaders (`docvqa_data`, `chartqa_data`) read the official local layouts into `OcrQaSample`s keyed
by an integer ``sample_id``; images are opened from the split's root folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from vlm_quant.errors import UserError


@dataclass(frozen=True)
class OcrQaSample:
    """One question about a document or chart image and its accepted answers.

    ``question_id``: DocVQA's ``questionId``; ChartQA's row index in its file. ``subset``: ChartQA's
    "human" / "augmented" (DocVQA: ""). ``image_file`` is relative to the split's ``data_dir``.
    """

    sample_id: int
    question_id: int
    image_file: str
    question: str
    answers: tuple[str, ...]
    subset: str = ""
    question_types: tuple[str, ...] = ()

    @property
    def image_id(self) -> str:
        return self.image_file


def load_json_file(path: Path, what: str) -> Any:
    """The parsed JSON of ``path``; a missing or malformed file is a UserError naming it."""
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from exc


def checked_text(value: Any, source: str, question_id: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{source}: question {question_id!r} has no {what}.")
    return value


def local_opener(root: Path) -> Callable[[Any], Image.Image]:
    """Opens ``root / sample.image_file`` fully (the file is closed before returning)."""

    def open_image(sample: Any) -> Image.Image:
        with Image.open(root / sample.image_file) as image:
            image.load()
            return image

    return open_image


def existing_dir(data_dir: str, dataset: str) -> Path:
    """``data_dir`` as a Path; a UserError when it is unset or absent."""
    if not data_dir:
        raise UserError(f"dataset={dataset} reads its official local layout: set data_dir.")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UserError(f"data_dir {root} does not exist: pass the folder holding the {dataset} files.")
    return root


def image_prefix(root: Path, images: Path) -> str:
    """The image folder as ``image_file`` prefix: relative to ``root`` when inside it, else absolute."""
    folder, base = images.resolve(), root.resolve()
    if not folder.is_relative_to(base):
        return folder.as_posix()
    relative = folder.relative_to(base).as_posix()
    return "" if relative == "." else relative


def in_folder(prefix: str, name: str) -> str:
    """``prefix/name`` (just ``name`` when the prefix is empty)."""
    return f"{prefix}/{name}" if prefix else name
