"""Build small VQAv2 / TextVQA / VizWiz folders in their official layouts from the real COCO slice.

The images are real (symlinks to ../shared/coco_val2017_mini/val2017), the questions and the 10
human answers per question are invented, with the three VQAv2 answer types represented.
"""

from __future__ import annotations

import json
from pathlib import Path

# question, question_type, answer_type, 10 human answers
QUESTION_BANK = (
    ("Is there a person in the picture?", "is there a", "yes/no", ["yes"] * 7 + ["no"] * 3),
    ("How many objects are on the table?", "how many", "number", ["2"] * 4 + ["two"] * 2 + ["3"] * 3 + ["4"]),
    (
        "What color is the largest object?",
        "what color is the",
        "other",
        ["red"] * 3 + ["blue"] * 3 + ["white"] * 2 + ["black", "gray"],
    ),
    ("Is it daytime?", "is it", "yes/no", ["no"] * 10),
)


def coco_images(coco_dir: Path, n: int) -> list[tuple[int, Path]]:
    """(image_id, path) of ``n`` real COCO images, in file-name order."""
    paths = sorted((coco_dir / "val2017").glob("*.jpg"))[:n]
    assert len(paths) == n, f"the COCO slice has only {len(paths)} images"
    return [(int(p.stem), p) for p in paths]


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src.resolve())


def build_vqav2(
    root: Path, coco_dir: Path, n_images: int = 12, per_image: int = 3, split: str = "val2014"
) -> dict[str, object]:
    """The official VQAv2 layout: questions + annotations JSON and <split>/COCO_<split>_%012d.jpg."""
    questions, annotations = [], []
    for image_id, path in coco_images(coco_dir, n_images):
        _link(path, root / split / f"COCO_{split}_{image_id:012d}.jpg")
        for k in range(per_image):
            text, qtype, atype, answers = QUESTION_BANK[(image_id + k) % len(QUESTION_BANK)]
            question_id = image_id * 10 + k
            questions.append({"image_id": image_id, "question": text, "question_id": question_id})
            annotations.append(
                {
                    "question_type": qtype,
                    "multiple_choice_answer": answers[0],
                    "image_id": image_id,
                    "answer_type": atype,
                    "question_id": question_id,
                    "answers": [
                        {"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                        for i, a in enumerate(answers)
                    ],
                }
            )
    (root / f"v2_OpenEnded_mscoco_{split}_questions.json").write_text(
        json.dumps(
            {
                "info": {},
                "task_type": "Open-Ended",
                "data_type": "mscoco",
                "data_subtype": split,
                "questions": questions,
            }
        )
    )
    (root / f"v2_mscoco_{split}_annotations.json").write_text(
        json.dumps({"info": {}, "data_type": "mscoco", "data_subtype": split, "annotations": annotations})
    )
    return {"root": root, "questions": questions, "annotations": annotations}


def build_textvqa(root: Path, coco_dir: Path, n_images: int = 8) -> dict[str, object]:
    """TextVQA_0.5.1_val.json (questions and 10 answer strings in one file) + train_images/<id>.jpg."""
    data = []
    for n, (image_id, path) in enumerate(coco_images(coco_dir, n_images)):
        hex_id = f"{image_id:016x}"
        _link(path, root / "train_images" / f"{hex_id}.jpg")
        text, _, _, answers = QUESTION_BANK[n % len(QUESTION_BANK)]
        data.append(
            {
                "question": text,
                "image_id": hex_id,
                "image_classes": ["Thing"],
                "flickr_original_url": "",
                "flickr_300k_url": "",
                "image_width": 640,
                "image_height": 480,
                "answers": answers,
                "question_tokens": text.lower().split(),
                "question_id": 34602 + n,
                "set_name": "val",
            }
        )
    (root / "TextVQA_0.5.1_val.json").write_text(
        json.dumps(
            {"dataset_type": "val", "dataset_name": "textvqa", "dataset_version": "0.5.1", "data": data}
        )
    )
    return {"root": root, "data": data}


def build_vizwiz(root: Path, coco_dir: Path, n_images: int = 8) -> dict[str, object]:
    """val.json (a list; answers as {answer, answer_confidence}) + val/VizWiz_val_%08d.jpg."""
    entries = []
    for n, (_, path) in enumerate(coco_images(coco_dir, n_images)):
        name = f"VizWiz_val_{3 * n + 5:08d}.jpg"
        _link(path, root / "val" / name)
        text, _, atype, answers = QUESTION_BANK[n % len(QUESTION_BANK)]
        if n % 4 == 3:
            atype, answers = "unanswerable", ["unanswerable"] * 8 + ["no"] * 2
        entries.append(
            {
                "image": name,
                "question": text,
                "answerable": int(atype != "unanswerable"),
                "answer_type": atype,
                "answers": [{"answer": a, "answer_confidence": "yes"} for a in answers],
            }
        )
    (root / "val.json").write_text(json.dumps(entries))
    return {"root": root, "entries": entries}
