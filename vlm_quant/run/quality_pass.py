"""The quality pass: a prediction for every selected sample (greedy, EOS allowed), any task.

Images of the next batch are decoded and downscaled in background threads while the model works on
the current one. An image that cannot be read is skipped, counted and reported; the run goes on.

Nothing lost: each prediction goes to a `PredictionStream`: a local journal synced after every batch
(a SIGKILL loses at most the batch in flight) and the run's `predictions/partial.jsonl`, uploaded every
few batches, at the end and on any exit; samples an earlier attempt of the run already predicted
(journal or upload) are skipped (resume). The batches of the remaining samples are the batches an
uninterrupted pass would have made, since attempts stop only between batches. A CUDA OOM halves the
batch size and retries (`BatchBackoff`); a SIGINT/SIGTERM under the CLI stops after the current batch
is saved.
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

from vlm_quant.engines.generate import GenerationSettings, generate
from vlm_quant.run import interrupts
from vlm_quant.run.oom import BatchBackoff
from vlm_quant.run.partial_predictions import PredictionStream, Restored
from vlm_quant.tasks.base import Task, TaskData
from vlm_quant.tasks.captioning_data import downscale

LoadedImage = tuple[Any, Image.Image | None, str | None]  # sample, image, error


@dataclass
class QualityPassResult:
    """Predictions by sample id (evaluation order), skipped samples, wall time (s), generated tokens.

    ``n_resumed``: samples taken from an earlier attempt of the run (their generation time is in
    ``wall_s``), of which ``resumed_predictions`` predictions with ``resumed_tokens`` tokens;
    ``oom_retries`` and ``final_batch_size``: the OOM backoff's record.
    """

    predictions: dict[int, str] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    generated_tokens: int = 0
    n_resumed: int = 0
    resumed_predictions: int = 0
    resumed_tokens: int = 0
    oom_retries: int = 0
    final_batch_size: int = 0

    def this_attempt(self) -> tuple[int, int]:
        """(predictions, generated tokens) made by this attempt: what its energy window metered."""
        return len(self.predictions) - self.resumed_predictions, self.generated_tokens - self.resumed_tokens

    def oom_metrics(self) -> dict[str, float]:
        return {"oom_retries": self.oom_retries, "quality_pass_final_batch_size": self.final_batch_size}


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
    stream: PredictionStream | None = None,
    model_name: str = "",
) -> QualityPassResult:
    """Greedy predictions for every id of ``data``, in evaluation order.

    With ``stream``, predictions already in the run's partial file are reused and new ones appended.
    """
    restored = stream.restored if stream else Restored()
    result = resume_from(restored, data)
    backoff = BatchBackoff(batch_size, model=model_name)
    done = set(result.predictions) | {row["sample_id"] for row in result.skipped}
    remaining = [data.samples[i] for i in data.ids if i not in done]
    bar = tqdm(
        total=len(data.ids),
        initial=len(data.ids) - len(remaining),
        desc=f"{task.name} ({data.dataset})",
        unit="sample",
        disable=not progress,
    )
    start = time.perf_counter()

    def generate_chunk(chunk: Sequence[tuple[Any, Image.Image]]) -> list[tuple[str, int]]:
        requests = [task.request(data, sample, image) for sample, image in chunk]
        out = generate(model, processor, requests, settings, dtype=dtype)
        return list(zip(out.texts, out.new_tokens))

    try:
        with interrupts.deferred():  # a signal takes effect between batches, after the flush
            load = lambda s: load_image(data, s, max_image_side)  # noqa: E731
            for batch in prefetched_batches(remaining, batch_size, load):
                run_batch(batch, result, backoff, generate_chunk, stream)
                bar.update(len(batch))
                if stream:
                    stream.batch_done()
                interrupts.raise_if_requested(f"{len(result.predictions)} of {len(data.ids)} samples saved")
        interrupts.raise_if_requested()
    finally:
        bar.close()
        if stream:
            stream.close()
    result.predictions = {i: result.predictions[i] for i in data.ids if i in result.predictions}
    result.wall_s += time.perf_counter() - start
    result.oom_retries, result.final_batch_size = backoff.retries, backoff.batch_size
    return result


def run_batch(
    batch: list[LoadedImage],
    result: QualityPassResult,
    backoff: BatchBackoff,
    generate_chunk: Callable[[Sequence[tuple[Any, Image.Image]]], list[tuple[str, int]]],
    stream: PredictionStream | None,
) -> None:
    """One batch: record unreadable images, generate the rest (halving on OOM), stream every row."""
    started = time.perf_counter()
    good = [(sample, image) for sample, image, _ in batch if image is not None]
    for sample, image, error in batch:
        if image is None:
            row = {"sample_id": sample.sample_id, "image_file": sample.image_file, "reason": error}
            result.skipped.append(row)
            if stream:
                stream.add_skipped(sample.sample_id, sample.image_file, error or "")
    if not good:
        return
    outputs = backoff.run(good, generate_chunk)
    seconds = (time.perf_counter() - started) / len(good)
    for (sample, _), (text, new_tokens) in zip(good, outputs):
        result.predictions[sample.sample_id] = text
        result.generated_tokens += new_tokens
        if stream:
            stream.add_prediction(sample.sample_id, text, new_tokens, seconds)


def resume_from(restored: Restored, data: TaskData) -> QualityPassResult:
    """A result pre-filled with an earlier attempt's rows for the ids of ``data`` (others are ignored)."""
    result = QualityPassResult()
    by_key = {str(i): i for i in data.ids}
    for key, text in restored.predictions.items():
        if str(key) in by_key:
            sample_id = by_key[str(key)]
            result.predictions[sample_id] = text
            result.generated_tokens += restored.new_tokens.get(key, 0)
    for key, row in restored.skipped.items():
        if str(key) in by_key:
            result.skipped.append({**row, "sample_id": by_key[str(key)]})
    result.n_resumed = len(result.predictions) + len(result.skipped)
    result.resumed_predictions, result.resumed_tokens = len(result.predictions), result.generated_tokens
    result.wall_s = restored.seconds
    return result
