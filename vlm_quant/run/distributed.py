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

Failure: every rank takes part in the same gathers (`torch.distributed.all_gather_object` over a
gloo group with a timeout), carrying either its value or its error, ``rank R: Type: message``, and
its predictions so far. So when one rank fails, every rank learns it at the same gather and raises
`RankFailed`; rank 0's run ends FAILED with that text in the tag ``vlm_quant.failure``, and every
rank's predictions (all ranks' partial files merged, rank 0's too when rank 0 failed) stay in
``predictions/partial.jsonl`` for `--resume`. A rank that neither arrives nor fails (stuck, or
killed) ends the wait after ``VLM_QUANT_RANK_TIMEOUT_S`` (default 1800 s), also a recorded failure.
One process (no ``WORLD_SIZE`` > 1) never touches any of this: each helper then returns its input
unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from vlm_quant.run.partial_predictions import ARTIFACT_NAME, ARTIFACT_PATH, parse_rows
from vlm_quant.tracking import run_schema

log = logging.getLogger(__name__)

# How long a rank waits in a gather for the others (torch's own default process-group timeout).
DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class RankInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1  # processes on this machine

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def rank_info(environ: Mapping[str, str] | None = None) -> RankInfo:
    """This process's rank from the launcher's variables (torchrun: RANK, WORLD_SIZE, LOCAL_RANK,
    LOCAL_WORLD_SIZE; without the last, every rank is taken to be on this machine)."""
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "1") or 1)
    rank = int(env.get("RANK", "0") or 0)
    local = int(env.get("LOCAL_RANK", str(rank)) or 0)
    local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)) or 1)
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return RankInfo(rank, world, local, local_world)


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


# --- the process group and a failure-aware gather (torch.distributed collectives over gloo) ----------


class RankFailed(RuntimeError):
    """A rank failed; ``partials``: the partial predictions (JSONL) each rank handed over, by rank."""

    def __init__(self, message: str, partials: dict[int, str] | None = None):
        super().__init__(message)
        self.partials = partials or {}


@dataclass(frozen=True)
class Envelope:
    """What one rank brings to a gather: its value, or its error; and its partial predictions, if any."""

    rank: int
    value: Any = None
    error: str | None = None  # "rank R: Type: message" when this rank failed
    partial: str | None = None  # this rank's predictions/partial.jsonl text, for rank 0's run


@dataclass
class _Session:
    """The exchange state of one `main_only` block (the object group itself lives as long as the process)."""

    failed: bool = False  # a failure was exchanged: only the closing gather follows
    finished: bool = False  # the closing gather of a healthy run passed: no rank gathers any more
    broken: bool = False  # a gather timed out or lost a peer: no collective can be trusted any more
    closed: bool = False


_group: Any = None
_session = _Session()


def rank_timeout_s(environ: Mapping[str, str] | None = None) -> float:
    """Seconds a rank waits in a gather for the others (``VLM_QUANT_RANK_TIMEOUT_S``, default 1800).

    A gather lasts from the first rank's arrival to the last one's; the ranks' shards are equal, so in
    a healthy run that is the skew between ranks, but a rank that failed early waits there for the
    others to finish their pass. Set it above the longest pass when ranks may fail early.
    """
    env = os.environ if environ is None else environ
    return float(env.get("VLM_QUANT_RANK_TIMEOUT_S", "") or DEFAULT_TIMEOUT_S)


def setup() -> RankInfo:
    """Join the process group when launched with several processes (idempotent); pin this rank's GPU.

    Besides accelerate's group (nccl on GPUs) a gloo group carries the object gathers: gloo works on
    CPU tensors on every machine and honours its timeout by raising in the waiting rank (where nccl's
    watchdog aborts the process), so a stuck rank becomes a recorded failure, not a hang.
    """
    global _group
    info = rank_info()
    if not info.distributed or _group is not None:
        return info
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true"):
        torch.cuda.set_device(info.local_rank)  # "cuda" (device_map, MemoryTracker) means cuda:{local_rank}
    from accelerate import PartialState

    PartialState()  # init_process_group with nccl on GPUs; on a CPU-only machine it may leave it to us:
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    _group = dist.new_group(backend="gloo", timeout=timedelta(seconds=rank_timeout_s()))
    return info


def _exchange(envelope: Envelope) -> list[Envelope]:
    """Every rank's envelope, in rank order (`all_gather_object` on the gloo group, with its timeout)."""
    import torch.distributed as dist

    if _group is None:
        setup()
    if _group is None:
        raise RuntimeError("not running under a multi-process launcher")
    if _session.broken:
        raise RankFailed(f"rank {envelope.rank}: the ranks lost contact earlier; no gather possible")
    envelopes: list[Any] = [None] * rank_info().world
    try:
        dist.all_gather_object(envelopes, envelope, group=_group)
    except Exception as error:  # gloo: "Timed out waiting ...", "Connection closed by peer", ...
        _session.broken = _session.failed = True
        raise RankFailed(
            f"rank {envelope.rank}: the gather failed within {rank_timeout_s():.0f} s "
            f"(a rank is stuck past the timeout, or died): {error}"
        ) from error
    return envelopes


def _raise_if_failed(envelopes: Sequence[Envelope]) -> None:
    errors = [e.error for e in envelopes if e.error]
    if errors:
        _session.failed = True
        raise RankFailed("; ".join(errors), {e.rank: e.partial for e in envelopes if e.partial})


def gather_envelopes(obj: Any, partial: str | None = None) -> list[Envelope]:
    """Every rank's ``obj`` (and ``partial`` predictions) as envelopes in rank order, on every rank.

    Every rank must call it the same number of times, in the same order; a rank that fails instead
    brings its error to the same gather (`report_failure`), so every rank then raises `RankFailed`
    (carrying the partial predictions each rank handed over) and nobody waits for a gather that will
    not come. A rank that neither comes nor fails ends the wait after `rank_timeout_s`.
    """
    info = rank_info()
    if not info.distributed:
        return [Envelope(info.rank, obj, partial=partial)]
    if _session.failed:
        raise RankFailed(f"rank {info.rank}: a rank failed earlier")
    envelopes = _exchange(Envelope(info.rank, obj, partial=partial))
    _raise_if_failed(envelopes)
    return envelopes


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order, on every rank (``[obj]`` in one process): `gather_envelopes`."""
    return [envelope.value for envelope in gather_envelopes(obj)]


def report_failure(error: BaseException, partial_text: str | None) -> RankFailed:
    """Bring this rank's ``error`` to the others' next gather; returns what every rank then knows.

    The returned `RankFailed` holds every failed rank's message and every handed-over partial file.
    An error that is itself a `RankFailed` was already exchanged: it is returned as it is.
    """
    if isinstance(error, RankFailed) or _session.failed or _session.finished:
        return error if isinstance(error, RankFailed) else RankFailed(str(error))
    info = rank_info()
    message = f"rank {info.rank}: {type(error).__name__}: {error}"
    log.error("%s (reported to the other ranks)", message)
    try:
        _raise_if_failed(_exchange(Envelope(info.rank, error=message, partial=partial_text)))
    except RankFailed as failed:
        return failed
    raise AssertionError("unreachable: our own envelope carries an error")


def close_after_failure() -> None:
    """After a failure, the last gather: every rank waits here until rank 0 has recorded the run's end.

    (The launcher tears every process down as soon as one exits with an error, so a failed rank must
    live until rank 0 has written the failure.) A no-op after a healthy run or a broken exchange.
    """
    if not _session.failed or _session.broken or _session.closed:
        return
    _session.closed = True
    try:
        _exchange(Envelope(rank_info().rank))
    except RankFailed as failed:
        log.warning("closing gather after a failure: %s", failed)


# --- trackers ---------------------------------------------------------------------------------------


class NullTracker:
    """The tracker of ranks other than 0: logs to no run; keeps what rank 0 must log for this rank.

    ``previous_partial``: the run's partial file as rank 0 read it (for `--resume`), returned by
    ``read_text``; ``partial_text``: what this rank's prediction stream last flushed; ``tags`` and
    ``histories``: this rank's tags and metric histories (its absent-reason tags, its GPU's power),
    handed to rank 0 with its metrics (`combine_rank_metrics`), which logs them prefixed ``rank{r}_``.
    """

    def __init__(self, rank: int = 0, previous_partial: str | None = None) -> None:
        self.run_id = f"rank{rank}"
        self.previous_partial = previous_partial
        self.partial_text: str | None = None
        self.tags: dict[str, str] = {}
        self.histories: dict[str, tuple[list[float], list[int]]] = {}

    def log_file(self, local_path: Any, artifact_dir: str | None = None) -> None:
        if os.path.basename(str(local_path)) == ARTIFACT_NAME:
            with open(local_path) as handle:
                self.partial_text = handle.read()

    def read_text(self, artifact_path: str) -> str | None:
        return self.previous_partial if artifact_path == ARTIFACT_PATH else None

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update({key: str(value) for key, value in tags.items()})

    def log_metric_history(self, name: str, values: Sequence[float], steps: Sequence[int]) -> None:
        kept_values, kept_steps = self.histories.setdefault(name, ([], []))
        kept_values.extend(float(v) for v in values)
        kept_steps.extend(int(s) for s in steps)

    def _ignore(self, *args: Any, **kwargs: Any) -> None:
        return None

    log_params = log_metrics = _ignore
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
    `NullTracker`. Every rank takes part in the same gathers: the opening one, the runner's, and a
    closing one inside the run, so a late failure of any rank still fails the run. A rank's exception
    is brought to the next gather (`report_failure`); rank 0 then keeps every rank's partial
    predictions in its run before `open_run` ends it FAILED with the failed ranks' errors (or KILLED,
    when rank 0 itself was interrupted), and the ranks part at `close_after_failure`.
    """
    info = rank_info()
    if not info.distributed:
        return open_run
    setup()

    @contextmanager
    def opened(*args: Any, **kwargs: Any) -> Iterator[Any]:
        global _session
        _session = _Session()
        try:
            if info.is_main:
                with open_run(*args, **kwargs) as tracker:
                    try:
                        gather_objects(tracker.read_text(ARTIFACT_PATH))
                        yield tracker
                        gather_objects(None)  # the closing gather: everyone finished, or a late failure
                        _session.finished = True
                    except BaseException as error:
                        failed = report_failure(error, None)
                        if failed.partials:  # the other ranks' predictions join rank 0's, for --resume
                            try:
                                own = tracker.read_text(ARTIFACT_PATH)
                                merged = merge_partials([own, *failed.partials.values()])
                                tracker.log_text(merged, ARTIFACT_PATH)
                            except Exception as lost:  # the run must still end with the rank's error
                                log.error("the other ranks' partial predictions were not saved: %s", lost)
                        if failed is not error:  # rank 0's own error ends the run (KILLED on a signal)
                            log.error("the ranks' failures: %s", failed)
                        raise
            else:
                tracker = NullTracker(info.rank)
                try:
                    tracker.previous_partial = gather_objects(None)[0]
                    yield tracker
                    gather_objects(None)
                    _session.finished = True
                except BaseException as error:
                    report_failure(error, tracker.partial_text)
                    raise
        except BaseException as error:
            report_failure(error, None)  # rank 0's open_run failed before the first gather; else a no-op
            raise
        finally:
            close_after_failure()

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
        # Rank 0's own predictions are in its run already; the others hand theirs over.
        partial = None if info.is_main else getattr(tracker, "partial_text", None)
        envelopes = gather_envelopes((ids_hash(data.ids), result), partial=partial)
        if len({envelope.value[0] for envelope in envelopes}) != 1:
            raise RuntimeError("the ranks selected different samples (check seed, data_dir and n_samples)")
        merged = merge_results(data.ids, [envelope.value[1] for envelope in envelopes])
        if info.is_main:
            own = tracker.read_text(ARTIFACT_PATH)
            tracker.log_text(merge_partials([own, *(e.partial for e in envelopes)]), ARTIFACT_PATH)
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
        batch_sizes=tuple(sorted({size for r in results for size in r.batch_sizes}, reverse=True)),
        # attempt_s, model_s, wait_s (the time split): rank 0's, like every field not named here
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
    # per image or per place of one GPU's batch-1 windows (run.sustainability): rank 0's, not a sum
    ("co2e_g_per_1k_images_", "rank0"),
    ("co2e_place_", "rank0"),
    ("scale_", "rank0"),
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


def _total(rule: str, values: list[float]) -> float | None:
    if rule == "sum":
        return sum(values)
    if rule == "max":
        return max(values)
    if rule == "mean":
        return sum(values) / len(values)
    if rule == "inverse_sum":
        return 1 / sum(1 / v for v in values) if all(values) else None
    if rule == "harmonic_mean":
        return len(values) / sum(1 / v for v in values) if all(values) else None
    raise ValueError(f"unknown rank rule {rule!r}")


# Metrics measured once per machine, by its local rank 0 (codecarbon bills the whole machine): only those
# ranks are expected to bring them.
MACHINE_METRIC_PREFIX = "codecarbon_"


def expected_ranks(key: str, local_ranks: Sequence[int]) -> list[int]:
    """The ranks that measure ``key``: every rank, or each machine's local rank 0 for a machine metric."""
    if key.startswith(MACHINE_METRIC_PREFIX):
        return [rank for rank, local in enumerate(local_ranks) if local == 0]
    return list(range(len(local_ranks)))


def lacking_ranks(
    per_rank: Sequence[Mapping[str, float | None]], key: str, local_ranks: Sequence[int] | None = None
) -> list[int]:
    """The ranks expected to measure ``key`` that brought no value for it (``local_ranks``: each rank's
    local rank; default: all on one machine)."""
    local_ranks = range(len(per_rank)) if local_ranks is None else local_ranks
    return [rank for rank in expected_ranks(key, local_ranks) if per_rank[rank].get(key) is None]


def combine_metrics(
    per_rank: Sequence[Mapping[str, float | None]], local_ranks: Sequence[int] | None = None
) -> dict[str, float | None]:
    """Rank 0's metrics with each cost metric replaced by its total and added per rank as rank{r}_<key>.

    A total (every rule but ``rank0``) exists only when every rank brought its value: a sum over the
    ranks that have one would be stored as the whole machine's (rank 1 out of memory at batch 32: the
    images/s of rank 0 alone). Otherwise the key is left out (`incomplete_total_tags` says why); the
    per-rank values that exist are kept. A machine metric (codecarbon) is expected from each machine's
    local rank 0 only (``local_ranks``: each rank's local rank; default: all ranks on one machine).
    """
    combined: dict[str, float | None] = dict(per_rank[0])
    for key in sorted({k for metrics in per_rank for k in metrics}):
        rule = _rule(key)
        if rule is None:
            continue
        values = [m.get(key) for m in per_rank]
        for rank, value in enumerate(values):
            if value is not None:
                combined[f"rank{rank}_{key}"] = value
        combined.pop(key, None)
        if rule == "rank0":  # per-device numbers: rank 0's own, never another rank's in its place
            total = values[0]
        elif lacking_ranks(per_rank, key, local_ranks):
            total = None
        else:
            total = _total(rule, [float(v) for v in values if v is not None])
        if total is not None:
            combined[key] = total
    return combined


def incomplete_total_tags(
    per_rank: Sequence[Mapping[str, float | None]], local_ranks: Sequence[int] | None = None
) -> dict[str, str]:
    """``vlm_quant.rank_total_absent_<key>`` for each total left out because some ranks lacked its value,
    naming those ranks (``"rank 1 of 2 lacked it"``); a key no rank measured has its ranks' own tags."""
    tags = {}
    world = len(per_rank)
    for key in sorted({k for metrics in per_rank for k in metrics}):
        rule = _rule(key)
        lacking = lacking_ranks(per_rank, key, local_ranks)
        if rule in (None, "rank0") or not lacking or all(per_rank[r].get(key) is None for r in range(world)):
            continue
        who = ", ".join(map(str, lacking))
        tags[f"{run_schema.TAG_RANK_TOTAL_ABSENT}{key}"] = (
            f"{'rank' if len(lacking) == 1 else 'ranks'} {who} of {world} lacked it: no total is logged "
            f"(each rank's own value is rank<r>_{key}; see the rank's tags for why it is missing)"
        )
    return tags


# Tags of a rank > 0 that rank 0 logs as vlm_quant.rank{r}_<rest>: what each rank's instruments and cost
# pass found (no GPU counter, out of memory at a batch size, a shared GPU). The run's other tags
# (weights, task, config hash) are the same on every rank.
PER_RANK_TAG_PREFIXES = (
    "vlm_quant.energy_absent_",
    "vlm_quant.codecarbon_absent_",
    "vlm_quant.cost_oom_",
    "vlm_quant.gpu_shared",
)
# Metric histories of a rank > 0 that rank 0 logs as rank{r}_<name> (each GPU's power over time).
PER_RANK_HISTORIES = (run_schema.METRIC_POWER_HISTORY,)


def per_rank_tags(rank: int, tags: Mapping[str, str]) -> dict[str, str]:
    """Rank ``rank``'s per-rank tags as rank 0 logs them: ``vlm_quant.rank{r}_<rest>``."""
    prefix = run_schema.TAG_PREFIX
    return {
        f"{prefix}rank{rank}_{key.removeprefix(prefix)}": value
        for key, value in tags.items()
        if key.startswith(PER_RANK_TAG_PREFIXES)
    }


def combine_rank_metrics(metrics: dict[str, float | None], tracker: Any) -> dict[str, float | None]:
    """``metrics`` in one process; with several, every rank's gathered and combined (`combine_metrics`).

    Rank 0 also logs the tags of incomplete totals, and the other ranks' per-rank tags and power
    histories (kept by their `NullTracker`), prefixed ``rank{r}_``.
    """
    info = rank_info()
    if not info.distributed:
        return metrics
    handed = {
        "local_rank": info.local_rank,
        "metrics": metrics,
        "tags": getattr(tracker, "tags", {}) if not info.is_main else {},
        "histories": getattr(tracker, "histories", {}) if not info.is_main else {},
    }
    per_rank = gather_objects(handed)
    tracker.log_params({"distributed_world_size": info.world, "shard_rule": "contiguous whole batches"})
    all_metrics = [envelope["metrics"] for envelope in per_rank]
    local_ranks = [envelope["local_rank"] for envelope in per_rank]
    tags = incomplete_total_tags(all_metrics, local_ranks)
    for rank, envelope in enumerate(per_rank[1:], start=1):
        tags.update(per_rank_tags(rank, envelope["tags"]))
        for name, (values, steps) in envelope["histories"].items():
            if name in PER_RANK_HISTORIES and values:
                tracker.log_metric_history(f"rank{rank}_{name}", values, steps)
    if tags:
        tracker.set_tags(tags)
    return combine_metrics(all_metrics, local_ranks)


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
