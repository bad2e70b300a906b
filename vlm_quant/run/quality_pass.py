"""The quality pass: a prediction for every selected sample (greedy, EOS allowed), any task.

The next batches' images are opened, downscaled and run through the processor by the input pipeline
(`engines.pipeline`: DataLoader workers) while the model generates the current one. An image that
cannot be read is skipped, counted and reported; the run goes on. The pass's wall time is split into
the model's share (``model_s``: generate() alone, device-synchronised) and the time it waited for its
next batch (``wait_s``); the rest of the wall time is the harness's bookkeeping (copies to the device,
decoding text, saving predictions).

Nothing lost: each prediction goes to a `PredictionStream`: a local journal synced after every batch
(a SIGKILL loses at most the batch in flight) and the run's `predictions/partial.jsonl`, uploaded every
few batches, at the end and on any exit; samples an earlier attempt of the run already predicted
(journal or upload) are skipped (resume). The batches of the remaining samples are the batches an
uninterrupted pass would have made, since attempts stop only between batches. A CUDA OOM halves the
batch size and retries (`BatchBackoff`); a SIGINT/SIGTERM under the CLI stops after the current batch
is saved.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from tqdm.auto import tqdm

from vlm_quant.engines.generate import (
    GenerationSettings,
    decode_new_ids,
    generate_prepared,
    pad_token_id,
    prepare_inputs,
    to_device,
)
from vlm_quant.engines.pipeline import CollateRequests, LoadedImage, PreparedBatch, prepared_batches
from vlm_quant.measure.timing import DeviceTimer
from vlm_quant.run import interrupts
from vlm_quant.run.oom import BatchBackoff
from vlm_quant.run.partial_predictions import PredictionStream, Restored
from vlm_quant.tasks.base import Task, TaskData
from vlm_quant.tasks.captioning_data import downscale


@dataclass
class QualityPassResult:
    """Predictions by sample id (evaluation order), skipped samples, wall time (s), generated tokens.

    ``n_resumed``: samples taken from an earlier attempt of the run, of which ``resumed_predictions``
    predictions with ``resumed_tokens`` tokens; ``wall_s``: this attempt's wall time (the longest rank's
    in a multi-process run), like the energy window, so earlier attempts are in neither;
    ``oom_retries``, ``final_batch_size`` and ``batch_sizes`` (every batch size that produced
    predictions, in order of use): the OOM backoff's record.
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
    batch_sizes: tuple[int, ...] = ()
    attempt_s: float = 0.0  # wall time of this attempt (this rank's; ``wall_s``: the longest rank's)
    model_s: float = 0.0  # of which generate() ran (device-synchronised), this attempt
    wait_s: float = 0.0  # of which the model waited for its next batch of inputs, this attempt

    def this_attempt(self) -> tuple[int, int]:
        """(predictions, generated tokens) made by this attempt: what its energy window metered."""
        return len(self.predictions) - self.resumed_predictions, self.generated_tokens - self.resumed_tokens

    def pass_metrics(self) -> dict[str, float | None]:
        """``quality_pass_s``: this attempt's wall time (a resumed run's earlier attempts are left out, as
        from its energy: they were neither timed nor metered as one pass); ``quality_pass_samples_per_s``:
        this attempt's predictions per second of it, absent when it made none."""
        images, _ = self.this_attempt()
        rate = images / self.wall_s if images and self.wall_s > 0 else None
        return {"quality_pass_s": self.wall_s, "quality_pass_samples_per_s": rate}

    def oom_metrics(self) -> dict[str, float]:
        return {"oom_retries": self.oom_retries, "quality_pass_final_batch_size": self.final_batch_size}

    def time_split_metrics(self) -> dict[str, float | None]:
        """How this attempt's wall time split: the model's share, its wait for inputs, and
        ``harness_overhead_fraction`` = 1 - model_s / attempt_s, the share of the wall time in which the
        model was not generating (waiting, copies, decoding, saving); absent when nothing was generated."""
        if self.attempt_s <= 0 or self.model_s <= 0:
            return dict.fromkeys(("quality_pass_model_s", "quality_pass_wait_s", "harness_overhead_fraction"))
        return {
            "quality_pass_model_s": self.model_s,
            "quality_pass_wait_s": self.wait_s,
            # in [0, 1] by construction: every model span lies inside the attempt's wall time
            "harness_overhead_fraction": 1.0 - self.model_s / self.attempt_s,
        }


def load_image(data: TaskData, sample: Any, max_side: int) -> LoadedImage:
    """Open and downscale one image; a failure is returned, not raised, so one bad file skips one sample."""
    try:
        return sample, downscale(data.open_image(sample), max_side), None
    except Exception as exc:  # PIL raises many types for corrupt, truncated or missing files
        return sample, None, f"{type(exc).__name__}: {exc}"


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
    num_workers: int = 0,
    processor_device: str | None = None,
    timer: DeviceTimer | None = None,
) -> QualityPassResult:
    """Greedy predictions for every id of ``data``, in evaluation order.

    With ``stream``, predictions already in the run's partial file are reused and new ones appended.
    ``num_workers``: input-pipeline worker processes (0: inputs prepared in this process, between
    batches); ``processor_device``: where a torchvision image processor works (in-process only);
    ``timer``: times the model's spans (a `DeviceTimer` on the model's device by default); its clock
    (seconds) also times the waits and the attempt, so the three share one time base.
    """
    restored = stream.restored if stream else Restored()
    result = resume_from(restored, data)
    backoff = BatchBackoff(batch_size, model=model_name)
    device = next(model.parameters()).device
    timer = timer or DeviceTimer(device)
    clock = timer.clock
    done = set(result.predictions) | {row["sample_id"] for row in result.skipped}
    remaining = [data.samples[i] for i in data.ids if i not in done]
    bar = tqdm(
        total=len(data.ids),
        initial=len(data.ids) - len(remaining),
        desc=f"{task.name} ({data.dataset})",
        unit="sample",
        disable=not progress,
    )
    pad = pad_token_id(model, processor)
    request = functools.partial(task.request, data)
    collate = CollateRequests(processor, request, settings, dtype, processor_device)

    def generate_inputs(inputs: dict[str, torch.Tensor]) -> list[tuple[str, int]]:
        inputs = to_device(inputs, device)
        with timer.span() as span:
            new_ids = generate_prepared(model, inputs, settings, pad_token_id=pad)
        result.model_s += span.elapsed_s or 0.0
        out = decode_new_ids(model, processor, new_ids)
        return list(zip(out.texts, out.new_tokens))

    def generate_chunk(chunk: Sequence[tuple[Any, Image.Image]]) -> list[tuple[str, int]]:
        """A smaller chunk after an OOM: its inputs are prepared here, in this process."""
        requests = [request(sample, image) for sample, image in chunk]
        inputs = prepare_inputs(processor, requests, device=device, dtype=dtype, settings=settings)
        return generate_inputs(inputs)

    start = clock()
    try:
        with interrupts.deferred():  # a signal takes effect between batches, after the flush
            batches = prepared_batches(
                remaining,
                batch_size,
                load=functools.partial(load_image, data, max_side=max_image_side),
                collate=collate,
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
            )
            for batch in waited(batches, result, clock):
                run_batch(batch, result, backoff, generate_inputs, generate_chunk, stream)
                bar.update(len(batch.loaded))
                if stream:
                    stream.batch_done()
                interrupts.raise_if_requested(f"{len(result.predictions)} of {len(data.ids)} samples saved")
        interrupts.raise_if_requested()
    finally:
        end_attempt(result, bar, stream, clock() - start)
    in_evaluation_order(result, data)
    result.oom_retries, result.final_batch_size = backoff.retries, backoff.batch_size
    result.batch_sizes = tuple(backoff.sizes_used)
    return result


def end_attempt(
    result: QualityPassResult, bar: Any, stream: PredictionStream | None, attempt_s: float
) -> None:
    """An attempt's end, however it ends (``finally``): the progress bar and the prediction stream closed
    (the stream flushes), the attempt's wall time (s) recorded."""
    bar.close()
    if stream:
        stream.close()
    result.attempt_s = attempt_s


def in_evaluation_order(result: QualityPassResult, data: TaskData) -> None:
    """Predictions in ``data.ids`` order (resumed ones first otherwise); the pass's wall time is this
    attempt's."""
    result.predictions = {i: result.predictions[i] for i in data.ids if i in result.predictions}
    result.wall_s = result.attempt_s


def waited(
    batches: Iterator[PreparedBatch], result: QualityPassResult, clock: Callable[[], float]
) -> Iterator[PreparedBatch]:
    """``batches``, adding to ``result.wait_s`` the time (s) each took to arrive: the model was idle."""
    while True:
        asked = clock()
        batch = next(batches, None)
        result.wait_s += clock() - asked
        if batch is None:
            return
        yield batch


def run_batch(
    batch: PreparedBatch,
    result: QualityPassResult,
    backoff: BatchBackoff,
    generate_inputs: Callable[[dict[str, torch.Tensor]], list[tuple[str, int]]],
    generate_chunk: Callable[[Sequence[tuple[Any, Image.Image]]], list[tuple[str, int]]],
    stream: PredictionStream | None,
) -> None:
    """One batch: record unreadable images, generate the rest (halving on OOM), stream every row.

    The batch's prepared inputs are used while the backoff's batch size covers the whole batch; after
    an OOM the smaller chunks are prepared in this process (``generate_chunk``).
    """
    started = time.perf_counter()
    good = [(sample, image) for sample, image, _ in batch.loaded if image is not None]
    for sample, image, error in batch.loaded:
        if image is None:
            row = {"sample_id": sample.sample_id, "image_file": sample.image_file, "reason": error}
            result.skipped.append(row)
            if stream:
                stream.add_skipped(sample.sample_id, sample.image_file, error or "")
    if not good:
        return
    prepared = batch.inputs

    def work(chunk: Sequence[tuple[Any, Image.Image]]) -> list[tuple[str, int]]:
        nonlocal prepared
        if prepared is not None and len(chunk) == len(good):
            inputs, prepared = prepared, None  # once: a retry after an OOM prepares smaller chunks
            return generate_inputs(inputs)
        prepared = None
        return generate_chunk(chunk)

    outputs = backoff.run(good, work)
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
    return result
