"""Small DocVQA / ChartQA / NoCaps folders in their official layouts, images from the real COCO slice.

Images are symlinks to ../shared/coco_val2017_mini/val2017 (named as the layout names them; PIL reads
the content, not the extension); questions, answers and domains are invented, a few records each.
"""

from __future__ import annotations

import json
from pathlib import Path

from vqa_layouts import _link, coco_images

DOCVQA_RECORDS = (  # question, answers
    ("What is the date on the letter?", ["12/15/88", "december 15, 1988"]),
    ("Who is the letter addressed to?", ["Dr. Lobo", "Dear Dr. Lobo"]),
    ("What is the total?", ["0.28"]),
)
CHARTQA_RECORDS = {  # subset -> (query, label)
    "human": (("What is the highest value?", "45"), ("Which year had the lowest share?", "2019")),
    "augmented": (("What is the value of Japan?", "12.5"), ("Is the trend increasing?", "Yes")),
}
NOCAPS_DOMAINS = ("in-domain", "in-domain", "near-domain", "near-domain", "out-domain")


def build_docvqa(root: Path, coco_dir: Path) -> dict[str, object]:
    """``val_v1.0.json`` + ``documents/``; returns the JSON written."""
    data = []
    for n, ((image_id, path), (question, answers)) in enumerate(
        zip(coco_images(coco_dir, len(DOCVQA_RECORDS)), DOCVQA_RECORDS, strict=True)
    ):
        name = f"documents/doc{image_id}_{n}.png"
        _link(path, root / name)
        data.append(
            {
                "questionId": 49150 + n,
                "question": question,
                "question_types": ["form"],
                "image": name,
                "docId": 100 + n,
                "ucsf_document_id": f"doc{image_id}",
                "ucsf_document_page_no": "1",
                "answers": answers,
                "data_split": "val",
            }
        )
    content = {"dataset_name": "docvqa", "dataset_split": "val", "dataset_version": "1.0", "data": data}
    (root / "val_v1.0.json").write_text(json.dumps(content))
    return content


def build_chartqa(root: Path, coco_dir: Path) -> dict[str, list[dict[str, str]]]:
    """``test/test_human.json``, ``test/test_augmented.json`` and ``test/png/``; returns the rows."""
    images = iter(coco_images(coco_dir, sum(len(v) for v in CHARTQA_RECORDS.values())))
    written = {}
    for subset, records in CHARTQA_RECORDS.items():
        rows = []
        for query, label in records:
            image_id, path = next(images)
            _link(path, root / "test" / "png" / f"{image_id}.png")
            rows.append({"imgname": f"{image_id}.png", "query": query, "label": label})
        (root / "test" / f"test_{subset}.json").write_text(json.dumps(rows))
        written[subset] = rows
    return written


def build_nocaps(root: Path, coco_dir: Path) -> dict[str, object]:
    """``nocaps_val_4500_captions.json`` + ``val/``: COCO images and their real captions, domains invented."""
    coco = json.loads((coco_dir / "annotations" / "captions_val2017.json").read_text())
    images, annotations = [], []
    for n, ((image_id, path), domain) in enumerate(
        zip(coco_images(coco_dir, len(NOCAPS_DOMAINS)), NOCAPS_DOMAINS, strict=True)
    ):
        name = f"{image_id:016x}.jpg"  # Open Images style names
        _link(path, root / "val" / name)
        images.append(
            {
                "id": n,
                "open_images_id": name[:-4],
                "file_name": name,
                "domain": domain,
                "coco_url": f"https://s3.amazonaws.com/nocaps/val/{name}",
                "height": 0,
                "width": 0,
            }
        )
        captions = [a["caption"] for a in coco["annotations"] if a["image_id"] == image_id]
        annotations += [
            {"image_id": n, "id": len(annotations) + k, "caption": c} for k, c in enumerate(captions)
        ]
    content = {"licenses": [], "info": {}, "images": images, "annotations": annotations}
    (root / "nocaps_val_4500_captions.json").write_text(json.dumps(content))
    return content
