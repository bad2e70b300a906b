"""The quality pass: a prediction for every selected sample (greedy, EOS allowed), any task.

Images of the next batch are decoded and downscaled in background threads while the model works on
the current one. An image that cannot be read is skipped, counted and reported; the run goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from tqdm.auto import tqdm

from vlm_quant.generate import GenerationSettings, generate
from vlm_quant.tasks.base import Task, TaskData
from vlm_quant.tasks.captioning_data import downscale

LoadedImage = tuple[Any, Image.Image | None, str | None]  # sample, image, error


@dataclass
class QualityPassResult:
    """Predictions by sample id (evaluation order), skipped samples, wall time (s), generated tokens."""

    predictions: dict[int, str] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    generated_tokens: int = 0


def load_image(data: TaskData, sample: Any, max_side: int) -> LoadedImage:
    """Open and downscale one image; a failure is returned, not raised, so one bad file skips one sample."""
    try:
        return sample, downscale(data.open_image(sample), max_side), None
    except Exception as exc:  # PIL raises many types for corrupt, truncated or missing files
        return sample, None, f"{type(exc).__name__}: {exc}"


def prefetched_batches(
    samples: Sequence[Any], batch_size: int, load: Callable[[Any], LoadedImage]
) -> Iterator[list[LoadedImage]]:
    """Batches of loaded images; batch k+1 is decoded in worker threads while batch k is consumed."""
    chunks = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="vlmq-images") as pool:

        def submit(chunk: Sequence[Any]) -> list[Future]:
            return [pool.submit(load, sample) for sample in chunk]

        pending = submit(chunks[0]) if chunks else []
        for index in range(len(chunks)):
            current = pending
            pending = submit(chunks[index + 1]) if index + 1 < len(chunks) else []
            yield [future.result() for future in current]


def run_quality_pass(
    model: Any,
    processor: Any,
    task: Task,
    data: TaskData,
    *,
    batch_size: int,
    max_image_side: int,
    settings: GenerationSettings,
    dtype: torch.dtype,
    progress: bool = True,
) -> QualityPassResult:
    """Greedy predictions for every id of ``data``, in evaluation order."""
    result = QualityPassResult()
    samples = [data.samples[i] for i in data.ids]
    bar = tqdm(total=len(samples), desc=f"{task.name} ({data.dataset})", unit="sample", disable=not progress)
    start = time.perf_counter()
    for batch in prefetched_batches(samples, batch_size, lambda s: load_image(data, s, max_image_side)):
        good = [(sample, image) for sample, image, _ in batch if image is not None]
        result.skipped += [
            {"sample_id": sample.sample_id, "image_file": sample.image_file, "reason": error}
            for sample, image, error in batch
            if image is None
        ]
        if good:
            requests = [task.request(data, sample, image) for sample, image in good]
            out = generate(model, processor, requests, settings, dtype=dtype)
            for (sample, _), text in zip(good, out.texts):
                result.predictions[sample.sample_id] = text
            result.generated_tokens += sum(out.new_tokens)
        bar.update(len(batch))
    bar.close()
    result.wall_s = time.perf_counter() - start
    return result
