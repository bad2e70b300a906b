"""The README's generated blocks (presets, tasks, models), between `<!-- begin generated: NAME -->` and
`<!-- end generated: NAME -->` markers, so the front door's short tables cannot drift from the code."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable

from vlm_quant.quantize.presets import PRESETS
from vlm_quant.reference.markdown import code, table
from vlm_quant.tasks.ocr_vqa import OCR_VQA_DATASETS
from vlm_quant.tasks.registry import TASKS
from vlm_quant.tasks.vqa_data import VQA_DATASETS
from vlm_quant.tracking.run_schema import primary_metric

# The datasets each task reads; the config's validation (vlm_quant/config.py) enforces the same pairs.
TASK_DATASETS = {
    "captioning": ("coco", "nocaps"),
    "vqa": (*VQA_DATASETS, *OCR_VQA_DATASETS),
    "pope": ("coco",),
}


def presets_block() -> str:
    return table(("`quant=`", "what it is"), [(code(p.name), p.description) for p in PRESETS.values()])


def tasks_block() -> str:
    rows = [
        (code(task), ", ".join(code(d) for d in TASK_DATASETS[task]), _metrics(task, TASK_DATASETS[task]))
        for task in TASKS
    ]
    return table(("`task=`", "`dataset=`", "headline metric"), rows)


def _metrics(task: str, datasets: Iterable[str]) -> str:
    return ", ".join(dict.fromkeys(code(primary_metric(task, d)) for d in datasets))


def models_block(supported: list[str], surveyed: int, transformers_version: str) -> str:
    """``supported``: the model types whose roles vlm-quant finds (the survey of docs/supported_models.md)."""
    text = (
        f"{len(supported)} of the {surveyed} image-text-to-text model types of transformers "
        f"{transformers_version} ([which, and why the others are left out](docs/supported_models.md)): "
        + ", ".join(code(t) for t in supported)
        + "."
    )
    return textwrap.fill(text, width=110, break_long_words=False, break_on_hyphens=False)


def fill(readme: str, name: str, body: str) -> str:
    """``readme`` with the block ``name`` replaced by ``body``; an error when the markers are missing."""
    pattern = re.compile(
        rf"(<!-- begin generated: {name} -->\n)(?:.*?\n)?(<!-- end generated: {name} -->)", re.DOTALL
    )
    if not pattern.search(readme):
        raise ValueError(f"README.md lacks the markers of the generated block {name!r}")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), readme)


def fill_code_blocks(readme: str) -> str:
    """The blocks rendered from the code alone (the models block needs the survey: tests/models)."""
    return fill(fill(readme, "presets", presets_block()), "tasks", tasks_block())
