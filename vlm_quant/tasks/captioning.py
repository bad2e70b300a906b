"""The captioning task's quality pass: caption every selected image, then score against the references.

Images of the next batch are decoded and downscaled in a background thread while the model works on
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
from vlm_quant.tasks.captioning_data import CaptionSample, CaptionSplit, downscale

LoadedImage = tuple[CaptionSample, Image.Image | None, str | None]  # sample, image, error


@dataclass
class CaptionPassResult:
    """Predictions in evaluation order, skipped images, and the pass's wall time (s) and token count."""

    predictions: dict[int, str] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    generated_tokens: int = 0


def load_one(split: CaptionSplit, sample: CaptionSample, max_side: int) -> LoadedImage:
    """Open and downscale one image; a failure is returned, not raised, so one bad file skips one sample."""
    try:
        return sample, downscale(split.open_image(sample), max_side), None
    except Exception as exc:  # PIL raises many types for corrupt/truncated/missing files
        return sample, None, f"{type(exc).__name__}: {exc}"


def prefetched_batches(
    samples: Sequence[CaptionSample], batch_size: int, load: Callable[[CaptionSample], LoadedImage]
) -> Iterator[list[LoadedImage]]:
    """Batches of loaded images; batch k+1 is decoded in a worker thread while batch k is consumed."""
    chunks = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="vlmq-images") as pool:
        def submit(chunk: Sequence[CaptionSample]) -> list[Future]:
            return [pool.submit(load, sample) for sample in chunk]

        pending = submit(chunks[0]) if chunks else []
        for index in range(len(chunks)):
            current = pending
            pending = submit(chunks[index + 1]) if index + 1 < len(chunks) else []
            yield [future.result() for future in current]


def caption_pass(
    model: Any, processor: Any, split: CaptionSplit, ids: Sequence[int], *, prompt: str, batch_size: int,
    max_image_side: int, settings: GenerationSettings, dtype: torch.dtype, progress: bool = True,
) -> CaptionPassResult:
    """Greedy captions for every id (EOS allowed), in the order of ``ids``."""
    result = CaptionPassResult()
    samples = [split.samples[i] for i in ids]
    bar = tqdm(total=len(samples), desc="captioning", unit="img", disable=not progress)
    start = time.perf_counter()
    for batch in prefetched_batches(samples, batch_size, lambda s: load_one(split, s, max_image_side)):
        good = [(sample, image) for sample, image, _ in batch if image is not None]
        result.skipped += [
            {"image_id": sample.image_id, "image_file": sample.image_file, "reason": error}
            for sample, image, error in batch if image is None
        ]
        if good:
            out = generate(model, processor, [image for _, image in good], prompt, settings, dtype=dtype)
            for (sample, _), text in zip(good, out.texts):
                result.predictions[sample.image_id] = text
            result.generated_tokens += sum(out.new_tokens)
        bar.update(len(batch))
    bar.close()
    result.wall_s = time.perf_counter() - start
    return result
