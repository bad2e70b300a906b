"""COCO caption samples: read the split, pick a seeded subset, load and downscale images.

Two sources give the same `CaptionSample`s: a local directory in the official COCO layout
(`<split>/` images + `annotations/captions_<split>.json`) and COCO captions through Hugging Face
`datasets`. The subset is a seeded random sample of image ids, never the first N, and its exact id
list is hashed so every configuration of a study can prove it saw the identical split.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from vlm_quant.errors import UserError
from vlm_quant.tasks.base import Split


@dataclass(frozen=True)
class CaptionSample:
    """One image to caption with its human references.

    ``image_file`` is relative to the data directory (local source) or a dataset row key (hf source).
    """

    image_id: int
    image_file: str
    references: tuple[str, ...]

    @property
    def sample_id(self) -> int:
        return self.image_id


CaptionSplit = Split  # one split type for every task (vlm_quant.tasks.base.Split)


def select_ids(all_ids: Sequence[int], n_samples: int, seed: int) -> list[int]:
    """A seeded random subset of ``n_samples`` ids (0: all), in sampled order; independent of input order."""
    pool = sorted(all_ids)
    if n_samples == 0:
        return pool
    if n_samples > len(pool):
        raise UserError(
            f"n_samples={n_samples} is larger than the split ({len(pool)} images); use at most {len(pool)}."
        )
    return random.Random(seed).sample(pool, n_samples)


def ids_hash(ids: Sequence[int | str]) -> str:
    """Short, order-sensitive hash of the evaluated id list (a param; equal hashes mean equal splits)."""
    return hashlib.sha256(json.dumps([str(i) for i in ids]).encode()).hexdigest()[:16]


def downscale(image: Image.Image, max_side: int) -> Image.Image:
    """RGB copy whose longest side is at most ``max_side`` pixels (aspect kept; never upscaled)."""
    image = image.convert("RGB")
    longest = max(image.size)
    if longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


# --- local COCO layout ------------------------------------------------------------------------


def read_local_coco(data_dir: str | Path, split: str = "val2017") -> CaptionSplit:
    """Read ``<data_dir>/annotations/captions_<split>.json``; index images under ``<data_dir>/<split>/``."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UserError(
            f"data_dir {root} does not exist: pass the folder that holds {split}/ and annotations/."
        )
    annotation_file = root / "annotations" / f"captions_{split}.json"
    if not annotation_file.is_file():
        raise UserError(f"annotation file missing: {annotation_file} (official COCO layout expected).")
    try:
        coco = json.loads(annotation_file.read_text())
        images = {int(im["id"]): im["file_name"] for im in coco["images"]}
        refs: dict[int, list[str]] = {}
        for ann in coco["annotations"]:
            refs.setdefault(int(ann["image_id"]), []).append(str(ann["caption"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{annotation_file} is not a COCO captions file: {exc!r}") from exc
    samples = {
        image_id: CaptionSample(image_id, f"{split}/{file_name}", tuple(refs[image_id]))
        for image_id, file_name in images.items()
        if image_id in refs
    }
    if not samples:
        raise UserError(f"{annotation_file} holds no captioned images.")

    def open_image(sample: CaptionSample) -> Image.Image:
        with Image.open(root / sample.image_file) as image:
            image.load()
            return image

    return CaptionSplit("coco", split, samples, open_image, str(root))


# --- Hugging Face datasets --------------------------------------------------------------------


def read_hf_coco(dataset_id: str, split: str = "val2017") -> CaptionSplit:
    """COCO captions through `datasets` (a Hub id such as lmms-lab/COCO-Caption2017, or a saved dataset dir).

    Rows need an image column (``image``), the references (``answer`` or ``captions``, a list of
    strings) and an id (``id`` / ``image_id``, or a file name like ``000000000139.jpg``).
    """
    rows = _load_hf_rows(dataset_id, split)
    samples: dict[int, CaptionSample] = {}
    index_of: dict[int, int] = {}
    for index, row in enumerate(rows.select_columns([c for c in rows.column_names if c != "image"])):
        image_id = _row_image_id(row, dataset_id)
        references = row.get("answer") or row.get("captions") or row.get("references")
        if not references:
            raise UserError(f"{dataset_id}: row {index} has no reference captions (answer/captions column).")
        samples[image_id] = CaptionSample(image_id, f"row:{index}", tuple(str(r) for r in references))
        index_of[image_id] = index

    def open_image(sample: CaptionSample) -> Image.Image:
        return rows[index_of[sample.image_id]]["image"]

    return CaptionSplit("coco", split, samples, open_image, "")


def _load_hf_rows(dataset_id: str, split: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise UserError(
            "source=hf needs the `datasets` package: pip install 'vlm-quant[hf-datasets]'."
        ) from None
    hf_split = "val" if split.startswith("val") else split
    try:
        if Path(dataset_id).is_dir():
            loaded = datasets.load_from_disk(dataset_id)
            return loaded[hf_split] if isinstance(loaded, datasets.DatasetDict) else loaded
        return datasets.load_dataset(dataset_id, split=hf_split)
    except Exception as exc:  # network, missing split, bad repo: all mean "cannot read the data"
        raise UserError(
            f"could not load dataset {dataset_id!r} split {hf_split!r} ({type(exc).__name__}: {exc}). "
            "Offline? Use source=local with data_dir pointing to a COCO folder."
        ) from exc


def _row_image_id(row: dict[str, Any], dataset_id: str) -> int:
    for key in ("image_id", "id"):
        value = row.get(key)
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return int(value)
    for key in ("file_name", "question_id"):
        value = row.get(key)
        if isinstance(value, str) and Path(value).stem.isdigit():
            return int(Path(value).stem)
    raise UserError(f"{dataset_id}: cannot find an image id in row keys {sorted(row)}.")


def read_split(source: str, *, data_dir: str, hf_dataset: str, split: str) -> CaptionSplit:
    """The caption split from the configured source."""
    if source == "local":
        return read_local_coco(data_dir, split)
    return read_hf_coco(hf_dataset, split)
