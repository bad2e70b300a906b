"""ChartQA from its official local layout, human and augmented questions kept apart.

Layout (the ``ChartQA Dataset`` folder of vis-nlp/ChartQA): ``<split>/<split>_human.json`` and
``<split>/<split>_augmented.json`` (each a list of ``{"imgname", "query", "label"}``) and
``<split>/png/<imgname>``. ``data_dir`` may be the dataset folder (holding ``test/``) or the split
folder itself. The published numbers are on ``test`` (the default); ``val`` works the same way.

Ids: ``question_id`` is the row's index in its own file (what `vlm-quant score vqa --dataset chartqa`
matches predictions on); ``sample_id`` is that index for human rows and ``AUGMENTED_ID_OFFSET`` plus
it for augmented rows, so one run can hold both subsets. A subset whose file is absent is left out
(a run on the human questions alone is a valid run); both absent is an error.
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

CHARTQA_SUBSETS = ("human", "augmented")
AUGMENTED_ID_OFFSET = 1_000_000
GENERIC_TEST_SPLITS = ("", "test", "val2017", "val2014")  # the config's captioning default means "test" here


def chartqa_split_name(split: str) -> str:
    name = "test" if split in GENERIC_TEST_SPLITS else ("val" if split == "validation" else split)
    if name not in ("test", "val", "train"):
        raise UserError(f"split={split!r}: ChartQA's splits are test, val and train.")
    return name


def parse_chartqa(rows: Any, source: str, subset: str, image_prefix: str) -> dict[int, OcrQaSample]:
    """One official ChartQA file (a list of {imgname, query, label}) -> {sample_id: OcrQaSample}."""
    if not isinstance(rows, list):
        raise UserError(f"{source}: expected the official ChartQA layout: a JSON list of questions.")
    offset = AUGMENTED_ID_OFFSET if subset == "augmented" else 0
    samples = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"{source}: row {index} is not an object.")
        label = row.get("label")
        if isinstance(label, (int, float)) and not isinstance(label, bool):
            label = str(label)  # a few converted copies store numbers; the official files hold strings
        samples[offset + index] = OcrQaSample(
            offset + index,
            index,
            in_folder(image_prefix, checked_text(row.get("imgname"), source, index, "imgname")),
            checked_text(row.get("query"), source, index, "query"),
            (checked_text(label, source, index, "label"),),
            subset,
        )
    return samples


def chartqa_split_dir(root: Path, split: str) -> Path:
    """The folder holding ``<split>_human.json``: ``root/<split>`` or ``root`` itself."""
    for folder in (root / split, root):
        if any((folder / f"{split}_{s}.json").is_file() for s in CHARTQA_SUBSETS):
            return folder
    raise UserError(
        f"no {split}_human.json or {split}_augmented.json in {root} or {root / split}: point data_dir "
        "to the ChartQA Dataset folder (official layout)."
    )


def read_local_chartqa(split: str, *, data_dir: str, image_dir: str = "") -> Split:
    """The ChartQA split, both subsets that are present (see the module docstring)."""
    root = existing_dir(data_dir, "chartqa")
    name = chartqa_split_name(split)
    folder = chartqa_split_dir(root, name)
    images = Path(image_dir).expanduser() if image_dir else folder / "png"
    images = images if images.is_absolute() else root / images
    if not images.is_dir():
        raise UserError(f"image folder not found: {images} (ChartQA keeps them in <split>/png/).")
    samples: dict[int, OcrQaSample] = {}
    for subset in CHARTQA_SUBSETS:
        path = folder / f"{name}_{subset}.json"
        if path.is_file():
            rows = load_json_file(path, "ChartQA file")
            samples.update(parse_chartqa(rows, str(path), subset, image_prefix(root, images)))
    if not samples:
        raise UserError(f"{folder} holds no ChartQA questions.")
    return Split("chartqa", name, samples, local_opener(root), str(root))
