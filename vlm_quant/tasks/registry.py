"""The one registry of tasks: (task, dataset) config values -> task object."""

from __future__ import annotations

from vlm_quant.errors import UserError
from vlm_quant.tasks.base import Task
from vlm_quant.tasks.captioning import CaptioningTask
from vlm_quant.tasks.ocr_vqa import OCR_VQA_DATASETS, OcrVqaTask
from vlm_quant.tasks.pope import PopeTask
from vlm_quant.tasks.vqa import VqaTask

TASKS = {"captioning": CaptioningTask, "vqa": VqaTask, "pope": PopeTask}
# Datasets of a task that score differently: (task, dataset) -> task class (nocaps is a captioning
# dataset scored like COCO, plus per-domain CIDEr inside CaptioningTask).
DATASET_TASKS = {("vqa", dataset): OcrVqaTask for dataset in OCR_VQA_DATASETS}


def make_task(name: str, dataset: str = "") -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}.")
    return DATASET_TASKS.get((name, dataset), TASKS[name])()
