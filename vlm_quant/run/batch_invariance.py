"""Batch invariance, measured: does the evaluated batch size change the greedy predictions?

Left padding, batch-shaped kernels and LLM.int8()'s batch-wide outlier columns can change a greedy
output when a sample is generated inside a batch instead of alone (other harnesses report Qwen2-VL
OCRBench 0.763 -> 0.605 and LLaVA ScienceQA 69.6 -> 58.7 from batch 1 to batch > 1). After the quality
pass a seeded subset of the predicted samples is generated again by the quality pass itself at batch 1
(one sample per ``generate()`` call; the same image loading, processor and its device, model, engine,
dtype and generation settings), and compared with the evaluated (batched) predictions:

* ``batch_invariance_agreement`` (0-1): the share of the subset whose batch-1 prediction is identical
  to its batched one;
* ``batch_invariance_<primary>_delta`` (the primary metric's unit): the task's primary metric scored on
  the subset with the batch-1 predictions minus scored on the same subset with the batched ones;
* ``predictions/batch_invariance.jsonl``: one row per sample (id, both predictions, identical);
* ``batch_invariance_s`` (s): the check's wall time (images, batch-1 generation, scoring the subset).

Nothing is measured (the metrics are absent, tag ``vlm_quant.batch_invariance_absent_reason``) when the
run was evaluated at batch 1 or ``invariance_samples=0``. The subset is a function of the seed and the
predicted ids only (a seeded hash ranking), so runs at different batch sizes regenerate the same samples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vlm_quant.engines import pipeline
from vlm_quant.run import distributed
from vlm_quant.run.quality_pass import run_quality_pass
from vlm_quant.run.stages import stage
from vlm_quant.tasks.base import Task, TaskData
from vlm_quant.tracking import run_schema as rs

AT_BATCH_1 = "evaluated at batch 1"
DISABLED = "disabled"


def invariance_subset(predicted_ids: Sequence[Any], n: int, seed: int) -> list[Any]:
    """``min(n, len(predicted_ids))`` ids, ranked by a hash of (seed, id), in the order given.

    Depends on the seed and the set of ids only (not their order, not the batch size); a smaller
    ``n`` picks a prefix of a larger one's ranking, so subsets of different sizes nest.
    """
    def rank(sample_id: Any) -> str:
        return hashlib.sha256(f"{seed}:{sample_id}".encode()).hexdigest()

    chosen = set(sorted(predicted_ids, key=rank)[:n])
    return [i for i in predicted_ids if i in chosen]


@dataclass(frozen=True)
class InvarianceCheck:
    """Batched and batch-1 predictions of the subset (same keys, evaluation order), and what they mean."""

    batch_size: int  # the batch size the batched predictions were evaluated at
    batched: dict[Any, str]
    batch_1: dict[Any, str]
    delta: float | None = None  # primary metric: batch-1 minus batched, on the subset
    delta_absent_reason: str | None = None
    skipped: dict[Any, str] = field(default_factory=dict)  # id -> why it could not be regenerated

    @property
    def n_identical(self) -> int:
        return sum(self.batched[i] == self.batch_1[i] for i in self.batch_1)

    @property
    def agreement(self) -> float:
        """Share (0-1) of the regenerated samples whose batch-1 prediction equals the batched one."""
        return self.n_identical / len(self.batch_1)

    def rows(self) -> list[dict[str, Any]]:
        rows = [
            {"sample_id": i, "batched_prediction": self.batched[i], "batch_1_prediction": self.batch_1[i],
             "identical": self.batched[i] == self.batch_1[i], "batch_size": self.batch_size}
            for i in self.batch_1
        ]
        return rows + [{"sample_id": i, "skipped": reason} for i, reason in self.skipped.items()]


def absent_reason(batch_size: int, n_samples: int) -> str | None:
    """Why no agreement is measured (``None``: it is): nothing to compare, or switched off."""
    if n_samples == 0:
        return DISABLED
    if batch_size <= 1:
        return AT_BATCH_1
    return None


def regenerate(
    ids: Sequence[Any],
    data: TaskData,
    task: Task,
    run_pass: Callable[[TaskData], Any],
) -> tuple[dict[Any, str], dict[Any, str]]:
    """(batch-1 prediction by id, why by id for images that could not be read this time).

    ``run_pass(data)`` is the quality pass itself at batch 1 (`check_batch_invariance`): the same image
    loading, chat template, processor (and its device), engine and decoding as the batched predictions,
    so the two differ by the batch alone."""
    result = run_pass(dataclasses.replace(data, ids=list(ids)))
    skipped = {row["sample_id"]: row.get("reason") or "unreadable image" for row in result.skipped}
    return dict(result.predictions), skipped


def subset_delta(
    task: Task, data: TaskData, batched: Mapping[Any, str], batch_1: Mapping[Any, str]
) -> tuple[float | None, str | None]:
    """(primary metric on the subset with the batch-1 predictions minus with the batched ones, or the
    reason it is absent). Identical predictions score identically (scores are a function of the
    predictions), so an all-identical subset is 0.0 without calling the scorer (Java for captions)."""
    primary = rs.primary_metric(task.name, data.dataset)
    if primary is None:
        return None, f"task {task.name!r} has no primary metric"
    if all(batched[i] == batch_1[i] for i in batch_1):
        return 0.0, None
    try:
        with_batched = task.score(data, {i: batched[i] for i in batch_1}).corpus.get(primary)
        with_batch_1 = task.score(data, dict(batch_1)).corpus.get(primary)
    except Exception as error:  # e.g. no Java for the caption scorers: the agreement stands on its own
        return None, f"the subset could not be scored: {type(error).__name__}: {error}"
    if with_batched is None or with_batch_1 is None:
        return None, f"{primary} is not defined on the subset"
    return float(with_batch_1) - float(with_batched), None


def check_batch_invariance(
    model: Any,
    processor: Any,
    task: Task,
    data: TaskData,
    predictions: Mapping[Any, str],
    *,
    batch_size: int,
    n_samples: int,
    seed: int,
    settings: Any,
    dtype: Any,
    max_image_side: int,
    processor_device: str | None = None,
) -> InvarianceCheck:
    """Regenerate ``min(n_samples, len(predictions))`` seeded predicted samples at batch 1 and compare.

    ``processor_device``: where the quality pass's image processor worked (None: the CPU), so the
    batch-1 inputs are made where the batched ones were."""
    ids = invariance_subset(list(predictions), n_samples, seed)

    def at_batch_1(subset: TaskData) -> Any:
        return run_quality_pass(
            model, processor, task, subset, batch_size=1, max_image_side=max_image_side, settings=settings,
            dtype=dtype, progress=False, num_workers=0, processor_device=processor_device,
        )

    batch_1, skipped = regenerate(ids, data, task, at_batch_1)
    batched = {i: predictions[i] for i in batch_1}
    delta, reason = subset_delta(task, data, batched, batch_1) if batch_1 else (None, "nothing regenerated")
    return InvarianceCheck(batch_size, batched, batch_1, delta, reason, skipped)


def delta_from_rows(task: Task, data: TaskData, rows_text: str) -> tuple[float | None, str | None]:
    """`subset_delta` from a logged ``predictions/batch_invariance.jsonl`` (`InvarianceCheck.rows`), for a
    run whose subset could not be scored when it ran (``score=later`` on a machine without Java)."""
    by_key = {str(i): i for i in data.ids}
    rows = [json.loads(line) for line in rows_text.splitlines() if line.strip()]
    compared = [row for row in rows if "batch_1_prediction" in row and str(row["sample_id"]) in by_key]
    if not compared:
        return None, "the logged check compared no sample of this split"
    batched = {by_key[str(r["sample_id"])]: r["batched_prediction"] for r in compared}
    batch_1 = {by_key[str(r["sample_id"])]: r["batch_1_prediction"] for r in compared}
    return subset_delta(task, data, batched, batch_1)


def evaluated_batch_size(configured: int, n_evaluated: int, final: int = 0) -> int:
    """The batch size the predictions were made at: the configured one, unless the split is smaller, or
    the OOM back-off lowered it (``final``, the size it ended at: every batch after the first OOM ran
    at the lowered size, so the smallest is the one to compare with)."""
    size = max(1, min(configured, n_evaluated))
    return min(size, final) if final > 0 else size


def measure_and_log(prepared: Any, loaded: Any, quality: Any, tracker: Any) -> dict[str, float | None]:
    """The runner's call, after the quality pass (outside its time and energy window), before the cost
    pass: log the agreement, the delta, their params and artifact; returns the metrics.

    With several processes rank 0 alone regenerates, from the merged predictions: the other ranks'
    non-cost metrics are not used (`distributed.combine_metrics` keeps rank 0's) and their trackers log
    nothing.
    """
    cfg, task = prepared.cfg, prepared.task
    final = getattr(quality, "final_batch_size", 0)
    batch_size = evaluated_batch_size(cfg.batch_size, len(prepared.data.ids), final)
    reason = absent_reason(batch_size, cfg.invariance_samples)
    if reason is not None:
        tracker.set_tags({rs.TAG_BATCH_INVARIANCE_ABSENT: reason})
        return {}
    if not distributed.rank_info().is_main:
        return {}
    n = min(cfg.invariance_samples, len(quality.predictions))
    started = time.perf_counter()
    sizes = getattr(quality, "batch_sizes", ()) or (batch_size,)  # several after an OOM back-off
    compared = f"batch {batch_size}" if len(sizes) == 1 else f"batch sizes {', '.join(map(str, sizes))}"
    with stage(f"batch invariance: {n} samples at batch 1 vs {compared}") as line:
        check = check_batch_invariance(
            loaded.model, loaded.processor, task, prepared.data, quality.predictions,
            batch_size=batch_size, n_samples=cfg.invariance_samples, seed=cfg.seed,
            settings=prepared.settings, dtype=prepared.dtype, max_image_side=cfg.max_image_side,
            processor_device=pipeline.processor_device(
                loaded.processor, prepared.device, pipeline.resolve_num_workers(cfg.num_workers)
            ),
        )
        line["note"] = f"{check.n_identical} of {len(check.batch_1)} identical"  # the result, on its line
    rows = "".join(json.dumps(row, default=str) + "\n" for row in check.rows())
    tracker.log_text(rows, rs.ARTIFACT_BATCH_INVARIANCE)
    tracker.log_params(
        {rs.PARAM_BATCH_INVARIANCE_N: len(check.batch_1), rs.PARAM_BATCH_INVARIANCE_BATCH_SIZE: batch_size}
    )
    if not check.batch_1:
        tracker.set_tags({rs.TAG_BATCH_INVARIANCE_ABSENT: "no subset image could be read again"})
        return {}
    metrics: dict[str, float | None] = {
        rs.METRIC_BATCH_INVARIANCE_AGREEMENT: check.agreement,
        "batch_invariance_s": time.perf_counter() - started,  # its cost: images, generation, scoring
    }
    if check.delta is None:
        tracker.set_tags({rs.TAG_BATCH_INVARIANCE_DELTA_ABSENT: check.delta_absent_reason})
    else:
        key = rs.scoring_key(task.name, prepared.data.dataset)  # the dataset's own metric (docvqa: anls)
        metrics[rs.batch_invariance_delta_metric(key)] = check.delta
    tracker.log_metrics(metrics)  # now: a crash in the cost pass keeps them
    return metrics
