"""The one registry of tasks: config value -> task object."""

from __future__ import annotations

from vlm_quant.errors import UserError
from vlm_quant.tasks.base import Task
from vlm_quant.tasks.captioning import CaptioningTask
from vlm_quant.tasks.pope import PopeTask
from vlm_quant.tasks.vqa import VqaTask


def make_task(name: str) -> Task:
    tasks = {"captioning": CaptioningTask, "vqa": VqaTask, "pope": PopeTask}
    if name not in tasks:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(tasks)}.")
    return tasks[name]()
