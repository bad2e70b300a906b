"""NoCaps validation captions from the official local layout, each image with its domain.

Layout (``data_dir``): ``nocaps_val_4500_captions.json`` (COCO captions format: ``images`` with
``id``, ``file_name`` and ``domain`` in {"in-domain", "near-domain", "out-domain"}, and
``annotations`` with ``image_id`` and ``caption``, 10 per image) and the Open Images files it names,
in ``val/`` (the folder of the file's own ``coco_url``s; ``image_dir`` overrides it). ``questions_file``
or ``annotations_file`` override the JSON. ``sample_id`` = the file's image ``id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm_quant.errors import UserError
from vlm_quant.tasks.base import Split
from vlm_quant.tasks.captioning_data import CaptionSample
from vlm_quant.tasks.ocr_qa_data import existing_dir, image_prefix, in_folder, load_json_file, local_opener

NOCAPS_DOMAINS = ("in-domain", "near-domain", "out-domain")
NOCAPS_FILES = {"val": "nocaps_val_4500_captions.json"}
DEFAULT_IMAGE_DIR = "val"


@dataclass(frozen=True)
class NocapsSample(CaptionSample):
    """A caption sample with its NoCaps domain (one of `NOCAPS_DOMAINS`)."""

    domain: str = ""


def parse_nocaps(data: Any, source: str, prefix: str) -> dict[int, NocapsSample]:
    """Official NoCaps captions JSON -> {image id: NocapsSample}; unknown domains are errors."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise UserError(
            f"{source}: expected the NoCaps captions layout: {{'images': [...], 'annotations': [...]}}."
        )
    captions: dict[int, list[str]] = {}
    for n, annotation in enumerate(data.get("annotations") or ()):
        caption = annotation.get("caption") if isinstance(annotation, dict) else None
        if not isinstance(caption, str) or not caption.strip() or "image_id" not in annotation:
            raise UserError(f"{source}: annotation {n} lacks an 'image_id' or a caption.")
        captions.setdefault(annotation["image_id"], []).append(caption)
    samples = {}
    for n, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("id"), int) or not image.get("file_name"):
            raise UserError(f"{source}: image {n} lacks an integer 'id' or a 'file_name'.")
        image_id, domain = image["id"], image.get("domain")
        if domain not in NOCAPS_DOMAINS:
            raise UserError(
                f"{source}: image {image_id} has domain {domain!r}; expected one of {NOCAPS_DOMAINS}."
            )
        if image_id not in captions:
            raise UserError(f"{source}: image {image_id} has no captions (the test split has none).")
        samples[image_id] = NocapsSample(
            image_id, in_folder(prefix, image["file_name"]), tuple(captions[image_id]), domain
        )
    if not samples:
        raise UserError(f"{source} holds no images.")
    return samples


def read_local_nocaps(split: str, *, data_dir: str, annotations_file: str = "", image_dir: str = "") -> Split:
    """The NoCaps validation split in its official layout (see the module docstring)."""
    root = existing_dir(data_dir, "nocaps")
    name = "val" if split in ("", "val", "val2017", "validation") else split
    if name not in NOCAPS_FILES:
        raise UserError(f"split={split!r}: NoCaps' scored split is val (the test captions are not public).")
    path = Path(annotations_file or NOCAPS_FILES[name]).expanduser()
    path = path if path.is_absolute() or not (root / path).exists() else root / path
    images = Path(image_dir or DEFAULT_IMAGE_DIR).expanduser()
    images = images if images.is_absolute() else root / images
    if not images.is_dir():
        raise UserError(f"image folder not found: {images} (set image_dir to the NoCaps image folder).")
    samples = parse_nocaps(
        load_json_file(path, "NoCaps captions file"), str(path), image_prefix(root, images)
    )
    return Split("nocaps", name, samples, local_opener(root), str(root))
