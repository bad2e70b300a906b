"""COCO instance annotations (``annotations/instances_<split>.json``): which objects each image holds.

Only the images listed in the file's ``images`` are *annotated*; an image listed with no annotation has
no objects, and an image absent from the list has unknown objects (it is not in the mapping at all).
The file is official COCO's; a partial one (such as the slice's, 79 of 159 images) is read the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from vlm_quant.errors import UserError


@dataclass(frozen=True)
class CocoInstances:
    """Objects per annotated image (category names, one per instance) and the category list."""

    path: str
    objects: dict[int, tuple[str, ...]]  # image id -> category name per instance (repeats kept)
    categories: tuple[str, ...]  # the file's categories, in id order
    file_names: dict[int, str] = field(default_factory=dict)  # image id -> file name (in <split>/)

    def categories_of(self, image_id: int) -> frozenset[str]:
        return frozenset(self.objects.get(image_id, ()))


def default_instances_path(data_dir: str, split: str) -> Path:
    return Path(data_dir).expanduser() / "annotations" / f"instances_{split}.json"


def read_instances(path: str | Path) -> CocoInstances:
    """Read an instances file; UserError naming the file when it is not one."""
    path = Path(path).expanduser()
    try:
        coco = json.loads(path.read_text())
        names = {int(c["id"]): str(c["name"]) for c in coco["categories"]}
        objects: dict[int, list[str]] = {int(im["id"]): [] for im in coco["images"]}
        file_names = {int(im["id"]): str(im.get("file_name", "")) for im in coco["images"]}
        for ann in coco["annotations"]:
            image_id = int(ann["image_id"])
            if image_id in objects:
                objects[image_id].append(names[int(ann["category_id"])])
    except FileNotFoundError:
        raise UserError(f"instances file not found: {path}") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path} is not a COCO instances file: {exc!r}") from exc
    return CocoInstances(
        str(path), {i: tuple(v) for i, v in objects.items()}, tuple(names[i] for i in sorted(names)),
        {i: name for i, name in file_names.items() if name},
    )


def find_instances(data_dir: str, split: str, instances_file: str = "") -> CocoInstances | None:
    """The configured instances file (must exist), else the split's default in ``data_dir`` if present."""
    if instances_file:
        return read_instances(instances_file)
    if data_dir and default_instances_path(data_dir, split).is_file():
        return read_instances(default_instances_path(data_dir, split))
    return None
