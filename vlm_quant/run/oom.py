"""Out-of-memory during the quality pass: halve the batch and retry, down to one image, then fail clearly.

A CUDA OOM leaves the model and its weights intact; only that batch's activations and KV cache did not
fit. The batch is retried in halves and the rest of the pass keeps the smaller size (retrying the big
size on every batch would pay an OOM each time). `oom_retries` and the final batch size are logged as
metrics, so a run whose throughput was measured at a smaller batch says so; ``sizes_used`` lists every
batch size predictions were generated at (the tag ``vlm_quant.quality_pass_batch_sizes`` after a back-off).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from vlm_quant.errors import UserError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchBackoff:
    """The batch size in use (halved on each OOM) and how many OOMs were absorbed."""

    batch_size: int
    model: str = ""
    retries: int = 0
    start_batch_size: int = 0
    sizes_used: list[int] = field(default_factory=list)  # batch sizes that produced predictions, in order

    def __post_init__(self) -> None:
        self.start_batch_size = self.start_batch_size or self.batch_size

    def run(self, items: Sequence[T], work: Callable[[Sequence[T]], list[R]]) -> list[R]:
        """``work`` over ``items`` in chunks of the current batch size; an OOM halves it and retries."""
        results: list[R] = []
        position = 0
        while position < len(items):
            chunk = items[position : position + self.batch_size]
            try:
                results.extend(work(chunk))
                position += len(chunk)
                if self.batch_size not in self.sizes_used:
                    self.sizes_used.append(self.batch_size)
                continue
            except torch.OutOfMemoryError as error:
                if len(chunk) <= 1:
                    raise self._final_error(error) from error
                first_line = (str(error).splitlines() or [type(error).__name__])[0]
            # Outside the except block: the failed batch's frames (and tensors) are released now.
            release_memory()
            self.retries += 1
            self.batch_size = max(1, len(chunk) // 2)
            log.warning(
                "out of memory at batch_size=%d for %s (%s); retrying that batch at %d",
                len(chunk),
                self.model,
                first_line,
                self.batch_size,
            )
        return results

    def _final_error(self, error: BaseException) -> UserError:
        release_memory()
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        return UserError(
            f"out of memory generating with batch_size=1 for model {self.model or '(unknown)'} "
            f"(started at batch_size={self.start_batch_size}, {self.retries} halvings): {reason}. "
            "Lower max_image_side or max_new_tokens, use a smaller quant preset, or a larger GPU."
        )

    def as_metrics(self) -> dict[str, float]:
        return {"oom_retries": float(self.retries), "quality_pass_final_batch_size": float(self.batch_size)}


def release_memory() -> None:
    """Free what the failed batch held (its tensors die with the exception's frames)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
