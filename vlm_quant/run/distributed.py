"""One evaluation across several processes (GPUs or machines) with `accelerate launch`, one MLflow run.

    accelerate launch --num_processes 2 [--cpu] -m vlm_quant evaluate --quant int8 ...

Every process (rank) prepares the same seeded split, loads the model at the planned precision on its
own device (``cuda:{LOCAL_RANK}``, else cpu) and generates its *shard* of the sample ids. The shards
are gathered, so every rank holds all predictions; rank 0 scores them (corpus metrics such as
CIDEr need the whole reference set) and is the only process that talks to MLflow: the others get a
`NullTracker`. The cost pass runs on every rank; rank 0 logs each rank's cost metrics as
``rank{r}_<key>`` and a total per key (see `combine_rank_metrics`).

Batch composition rule (`shard_ids`): the ids are cut into the batches a single process would make
(``batch_size`` consecutive ids in evaluation order) and whole batches are dealt out contiguously,
rank 0 first. Every generate() call thus sees exactly the batch (same images, same padding) it sees
in a one-process run, so with greedy decoding the predictions, and every quality metric, are equal
to the one-process run's, bit for bit as far as the kernels are deterministic for that batch.

Failure: a rank that raises reports ``rank R: Type: message`` (and its predictions so far) through
the process group's key-value store; every gather polls for such a report instead of hanging, so
rank 0 raises `RankFailed`, its run ends FAILED with that text in the tag ``vlm_quant.failure``, and
the predictions gathered so far (all ranks' partial files merged) stay in
``predictions/partial.jsonl`` for `--resume`. One process (no ``WORLD_SIZE`` > 1) never touches
any of this: each helper then returns its input unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from vlm_quant.run.partial_predictions import ARTIFACT_NAME, ARTIFACT_PATH, parse_rows

log = logging.getLogger(__name__)

POLL_S = 0.05
# How long a failed rank keeps its process alive so that rank 0 can record the failure before the
# launcher tears everything down (rank 0 notices at its next gather, e.g. after its own shard).
ACK_TIMEOUT_S = float(os.environ.get("VLM_QUANT_RANK_FAILURE_WAIT_S", "900"))
FAILURE_KEY = "vlmq/failure"
ACK_KEY = "vlmq/failure_ack"


@dataclass(frozen=True)
class RankInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def rank_info(environ: Mapping[str, str] | None = None) -> RankInfo:
    """This process's rank from the launcher's variables (torchrun: RANK, WORLD_SIZE, LOCAL_RANK)."""
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "1") or 1)
    rank = int(env.get("RANK", "0") or 0)
    local = int(env.get("LOCAL_RANK", str(rank)) or 0)
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return RankInfo(rank, world, local)


def is_main() -> bool:
    return rank_info().is_main


def shard_ids(ids: Sequence[Any], rank: int, world: int, batch_size: int = 1) -> list[Any]:
    """This rank's ids: whole batches of ``batch_size`` (as one process would cut them), dealt contiguously.

    With B batches and W ranks, rank r gets batches [r*B//W, (r+1)*B//W). Concatenating the shards in
    rank order gives ``ids`` back; a rank may get no ids when there are fewer batches than ranks.
    """
    if world < 1 or not 0 <= rank < world or batch_size < 1:
        raise ValueError(f"bad shard: rank={rank}, world={world}, batch_size={batch_size}")
    batches = [list(ids[i : i + batch_size]) for i in range(0, len(ids), batch_size)]
    start, end = rank * len(batches) // world, (rank + 1) * len(batches) // world
    return [i for batch in batches[start:end] for i in batch]


# --- the process group and a failure-aware gather over its key-value store -------------------------


class RankFailed(RuntimeError):
    """Another rank (or this one) failed; ``partials``: each reporting rank's partial predictions (JSONL)."""

    def __init__(self, message: str, partials: dict[int, str] | None = None):
        super().__init__(message)
        self.partials = partials or {}


_store: Any = None
_sequence = 0


def setup() -> RankInfo:
    """Join the process group when launched with several processes (idempotent); pin this rank's GPU."""
    global _store
    info = rank_info()
    if not info.distributed or _store is not None:
        return info
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true"):
        torch.cuda.set_device(info.local_rank)  # "cuda" (device_map, MemoryTracker) means cuda:{local_rank}
    from accelerate import PartialState

    PartialState()  # init_process_group with nccl on GPUs; on a CPU-only machine it may leave it to us:
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    _store = dist.distributed_c10d._get_default_store()
    return info


def _require_store() -> Any:
    if _store is None:
        setup()
    if _store is None:
        raise RuntimeError("not running under a multi-process launcher")
    return _store


def _failure(store: Any, world: int) -> RankFailed | None:
    if not store.check([FAILURE_KEY]):
        return None
    message = store.get(FAILURE_KEY).decode()
    partials = {}
    for rank in range(world):
        key = f"vlmq/partial/{rank}"
        if store.check([key]):
            partials[rank] = store.get(key).decode()
    return RankFailed(message, partials)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order, on every rank (``[obj]`` in one process).

    Over the store, polling, so that a rank's failure report ends the wait with `RankFailed` instead
    of a hang. Every rank must call it the same number of times, in the same order.
    """
    global _sequence
    info = rank_info()
    if not info.distributed:
        return [obj]
    store = _require_store()
    _sequence += 1
    keys = [f"vlmq/gather/{_sequence}/{r}" for r in range(info.world)]
    store.set(keys[info.rank], pickle.dumps(obj))
    while not store.check(keys):
        failed = _failure(store, info.world)
        if failed is not None:
            raise failed
        time.sleep(POLL_S)
    return [pickle.loads(store.get(key)) for key in keys]


def report_failure(error: BaseException, partial_text: str | None) -> None:
    """Tell the other ranks that this rank failed (first report wins) and hand over its predictions."""
    info = rank_info()
    store = _require_store()
    if partial_text:
        store.set(f"vlmq/partial/{info.rank}", partial_text.encode())
    if isinstance(error, RankFailed):
        return  # a consequence of another rank's report: nothing new to say
    message = f"rank {info.rank}: {type(error).__name__}: {error}"
    store.compare_set(FAILURE_KEY, "", message)  # set only when absent
    log.error("%s (reported to rank 0)", message)


def wait_for_ack(timeout_s: float = ACK_TIMEOUT_S) -> bool:
    """Block until rank 0 recorded the run's end (or ``timeout_s``): the launcher kills it when we exit."""
    store, deadline = _require_store(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if store.check([ACK_KEY]):
            return True
        time.sleep(POLL_S * 4)
    return False


def acknowledge() -> None:
    try:
        _require_store().set(ACK_KEY, b"1")
    except Exception as error:  # the store is gone with the other ranks: nobody is waiting
        log.debug("no failure acknowledgement written: %s", error)


# --- trackers ---------------------------------------------------------------------------------------


class NullTracker:
    """The tracker of ranks other than 0: logs nothing; keeps this rank's partial predictions in memory.

    ``previous_partial``: the run's partial file as rank 0 read it (for `--resume`), returned by
    ``read_text``; ``partial_text``: what this rank's prediction stream last flushed.
    """

    def __init__(self, rank: int = 0, previous_partial: str | None = None) -> None:
        self.run_id = f"rank{rank}"
        self.previous_partial = previous_partial
        self.partial_text: str | None = None

    def log_file(self, local_path: Any, artifact_dir: str | None = None) -> None:
        if os.path.basename(str(local_path)) == ARTIFACT_NAME:
            with open(local_path) as handle:
                self.partial_text = handle.read()

    def read_text(self, artifact_path: str) -> str | None:
        return self.previous_partial if artifact_path == ARTIFACT_PATH else None

    def _ignore(self, *args: Any, **kwargs: Any) -> None:
        return None

    log_params = set_tags = log_metrics = log_metric_history = _ignore
    log_json = log_text = log_dir = log_table = log_datasets = log_model = _ignore


def merge_partials(texts: Sequence[str | None]) -> str:
    """Partial-prediction JSONL files merged: one line per sample, a prediction winning over a skip."""
    rows: dict[str, dict[str, Any]] = {}
    for text in texts:
        for row in parse_rows(text):
            key = str(row["sample_id"])
            if key not in rows or ("prediction" in row and "prediction" not in rows[key]):
                rows[key] = row
    return "".join(json.dumps(row, default=str) + "\n" for row in rows.values())


def main_only(open_run: Callable[..., Any]) -> Callable[..., Any]:
    """``open_run`` itself in one process; with several, a context manager that opens the run on rank 0 only.

    Rank 0's run is shared (its partial predictions, for resume) with the other ranks, which get a
    `NullTracker`. A rank's exception is reported to the others; rank 0 keeps all partial predictions
    in its run before `open_run` ends it FAILED with the rank's error.
    """
    info = rank_info()
    if not info.distributed:
        return open_run
    setup()

    @contextmanager
    def opened(*args: Any, **kwargs: Any) -> Iterator[Any]:
        if info.is_main:
            try:
                with open_run(*args, **kwargs) as tracker:
                    gather_objects(tracker.read_text(ARTIFACT_PATH))
                    try:
                        yield tracker
                    except RankFailed as failed:
                        own = tracker.read_text(ARTIFACT_PATH)
                        tracker.log_text(merge_partials([own, *failed.partials.values()]), ARTIFACT_PATH)
                        raise
            finally:
                acknowledge()
        else:
            previous = gather_objects(None)[0]
            tracker = NullTracker(info.rank, previous)
            try:
                yield tracker
            except BaseException as error:
                report_failure(error, tracker.partial_text)
                if not isinstance(error, RankFailed):
                    wait_for_ack()
                raise

    return opened


# --- the runner's hooks -----------------------------------------------------------------------------


def sharded_quality_pass(run_pass: Callable[..., Any], tracker: Any, batch_size: int) -> Callable[..., Any]:
    """``run_pass`` in one process; with several, the same call on this rank's shard, then all shards merged.

    ``run_pass(model, processor, task, data, **kw)`` is `run_quality_pass`; the merged result has every
    prediction in evaluation order, the longest rank's wall time (the pass ends with its slowest
    shard), summed tokens/resumed/OOM retries, and the smallest final batch size.
    """
    info = rank_info()
    if not info.distributed:
        return run_pass

    def sharded(model: Any, processor: Any, task: Any, data: Any, **kwargs: Any) -> Any:
        from vlm_quant.tasks.captioning_data import ids_hash

        shard = dataclasses.replace(data, ids=shard_ids(data.ids, info.rank, info.world, batch_size))
        result = run_pass(model, processor, task, shard, **kwargs)
        partial = getattr(tracker, "partial_text", None)
        if partial is None and info.is_main:
            partial = tracker.read_text(ARTIFACT_PATH)
        parts = gather_objects((ids_hash(data.ids), result, partial))
        if len({digest for digest, _, _ in parts}) != 1:
            raise RuntimeError("the ranks selected different samples (check seed, data_dir and n_samples)")
        merged = merge_results(data.ids, [r for _, r, _ in parts])
        if info.is_main:
            tracker.log_text(merge_partials([p for _, _, p in parts]), ARTIFACT_PATH)
        return merged

    return sharded


def merge_results(ids: Sequence[Any], results: Sequence[Any]) -> Any:
    """Quality-pass results of the shards as one result over ``ids`` (evaluation order)."""
    predictions: dict[Any, str] = {}
    skipped: list[dict[str, Any]] = []
    for result in results:
        predictions.update(result.predictions)
        skipped += result.skipped
    order = {sample_id: index for index, sample_id in enumerate(ids)}
    return dataclasses.replace(
        results[0],
        predictions={i: predictions[i] for i in ids if i in predictions},
        skipped=sorted(skipped, key=lambda row: order.get(row["sample_id"], len(order))),
        wall_s=max(r.wall_s for r in results),
        generated_tokens=sum(r.generated_tokens for r in results),
        n_resumed=sum(r.n_resumed for r in results),
        resumed_predictions=sum(r.resumed_predictions for r in results),
        resumed_tokens=sum(r.resumed_tokens for r in results),
        oom_retries=sum(r.oom_retries for r in results),
        final_batch_size=min((r.final_batch_size for r in results if r.final_batch_size), default=0),
    )


# Cost metrics are per rank: each is logged as rank{r}_<key>, and <key> holds the total by this rule
# (first match). Everything else (quality scores, counts, sizes) is the same on every rank: rank 0's.
RANK_RULES: tuple[tuple[str, str], ...] = (
    ("throughput_", "sum"),  # the ranks generate concurrently: images/s and tokens/s add up
    ("quality_pass_images_per_kwh", "inverse_sum"),  # each rank: N_total / E_r  ->  N_total / sum E_r
    ("quality_pass_energy_", "sum"),  # each rank divides its own energy by the total count: sums to E/N
    ("energy_kwh", "sum"),
    ("energy_j_per_", "mean"),  # cost pass: every rank runs the same micro-set, energy per GPU per image
    ("images_per_kwh", "harmonic_mean"),
    ("co2", "sum"),
    ("codecarbon_duration_s", "max"),
    ("codecarbon_", "sum"),  # energy and CO2e of each process
    ("peak_", "max"),  # per GPU / process: the largest; each rank's is kept as rank{r}_peak_...
    ("cost_pass_peak_", "max"),
    ("gpu_", "sum"),
    ("idle_", "sum"),
    ("load_time_s", "max"),
    ("quantize_time_s", "max"),
    ("latency_", "rank0"),  # per-device latencies: rank 0's, every rank's under rank{r}_
    ("ttft_", "rank0"),
    ("decode_", "rank0"),
)


def _rule(key: str) -> str | None:
    for prefix, rule in RANK_RULES:
        anywhere = prefix == "co2" and "co2" in key
        if key.startswith(prefix) or anywhere or (prefix == "energy_kwh" and key.endswith(prefix)):
            return rule
    return None


def _total(rule: str, values: list[float]) -> float:
    if rule == "sum":
        return sum(values)
    if rule == "max":
        return max(values)
    if rule == "mean":
        return sum(values) / len(values)
    if rule == "inverse_sum":
        return 1 / sum(1 / v for v in values) if all(values) else 0.0
    if rule == "harmonic_mean":
        return len(values) / sum(1 / v for v in values) if all(values) else 0.0
    return values[0]


def combine_metrics(per_rank: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """Rank 0's metrics with each cost metric replaced by its total and added per rank as rank{r}_<key>."""
    combined: dict[str, float | None] = dict(per_rank[0])
    for key in sorted({k for metrics in per_rank for k in metrics}):
        rule = _rule(key)
        if rule is None:
            continue
        values = [m.get(key) for m in per_rank]
        for rank, value in enumerate(values):
            combined[f"rank{rank}_{key}"] = value
        present = [float(v) for v in values if v is not None]
        combined[key] = _total(rule, present) if present else None
    return combined


def combine_rank_metrics(metrics: dict[str, float | None], tracker: Any) -> dict[str, float | None]:
    """``metrics`` in one process; with several, every rank's gathered and combined (`combine_metrics`)."""
    info = rank_info()
    if not info.distributed:
        return metrics
    per_rank = gather_objects(metrics)
    tracker.log_params({"distributed_world_size": info.world, "shard_rule": "contiguous whole batches"})
    return combine_metrics(per_rank)


def launch_command(argv: Sequence[str], processes: int) -> list[str]:
    """The `accelerate launch` command running ``vlm_quant <argv>`` in ``processes`` processes.

    ``--multi_gpu`` selects accelerate's torchrun launcher, which also starts N CPU processes (gloo) on
    a machine without GPUs; ``--cpu --num_processes N`` alone starts ONE process unless mpirun is used.
    """
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    command += ["--num_processes", str(processes)]
    return [*command, "-m", "vlm_quant", *argv]


def relaunch_if_needed(processes: int, argv: Sequence[str]) -> int | None:
    """Run ``vlm_quant <argv>`` under `accelerate launch` when ``processes`` > 1 and not already launched.

    Returns the launcher's exit status, or None when the caller should run in this process.
    """
    if processes <= 1 or "WORLD_SIZE" in os.environ:
        return None
    import subprocess

    command = launch_command(argv, processes)
    log.info("launching %d processes: %s", processes, shlex.join(command))
    return subprocess.call(command)
