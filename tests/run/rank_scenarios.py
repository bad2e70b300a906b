"""Failure scenarios of the cross-rank gathers, run by two real gloo processes (see test_rank_failures.py).

Each rank runs every scenario in turn through `distributed.main_only` with a fake `open_run` (an
`InMemoryTracker` whose end state, FINISHED or FAILED with the failure tag, is recorded like
`open_run` records it) and the runner's two hooks (`sharded_quality_pass`, `combine_rank_metrics`)
around a fake quality pass that streams its predictions like `PredictionStream` does (``log_file``
of ``partial.jsonl``). Every rank writes what happened to ``<out>/<scenario>-rank<r>.json``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCENARIOS = ("healthy", "rank1_fails_in_pass", "rank0_fails_in_pass", "late_failure", "open_fails", "stuck")
TIMEOUT_S = 10.0  # the gathers' timeout in these processes (loose enough for a loaded 2-core machine)
STUCK_S = 14.0  # how long the stuck rank sleeps (more than TIMEOUT_S)


@dataclass(frozen=True)
class FakeSplit:
    ids: list[int]


def child(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), CUDA_VISIBLE_DEVICES="",
                      VLM_QUANT_RANK_TIMEOUT_S=str(TIMEOUT_S))
    for scenario in SCENARIOS:
        record: dict[str, Any] = {"scenario": scenario}
        started = time.monotonic()
        try:
            run_scenario(scenario, rank, record)
            record["raised"] = None
        except BaseException as error:  # noqa: BLE001 - what each rank raised is the result
            record["raised"] = f"{type(error).__name__}: {error}"
        record["elapsed_s"] = time.monotonic() - started
        Path(out, f"{scenario}-rank{rank}.json").write_text(json.dumps(record))
    # After "stuck" the gloo group is broken (a gather timed out, the peer left): tearing it down at
    # interpreter exit aborts the process now and then ("terminate called without an active
    # exception", SIGABRT; seen 3 times in 6 runs on a loaded 2-core machine, always after every record
    # was written). The teardown is not under test; leave without it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_scenario(scenario: str, rank: int, record: dict[str, Any]) -> None:
    from vlm_quant.run import distributed
    from vlm_quant.run.quality_pass import QualityPassResult
    from vlm_quant.tracking.tracker import InMemoryTracker

    @contextmanager
    def fake_open_run(*args: Any, **kwargs: Any):
        if scenario == "open_fails":
            raise ConnectionError("tracking store unreachable")
        tracker = InMemoryTracker()
        tracker.log_text('{"sample_id": 0, "prediction": "from an earlier attempt"}\n',
                         "predictions/partial.jsonl")
        try:
            yield tracker
            record["status"] = "FINISHED"
        except BaseException as error:
            record["status"] = "FAILED"
            record["failure"] = f"{type(error).__name__}: {error}"
            raise
        finally:
            record["partial"] = tracker.read_text("predictions/partial.jsonl")
            record["metrics"] = tracker.metrics
            record["tags"] = tracker.tags
            record["histories"] = tracker.histories

    def fake_pass(model: Any, processor: Any, task: Any, data: FakeSplit, **kwargs: Any) -> Any:
        rows = tracker.read_text("predictions/partial.jsonl") or ""  # a stream starts from the run's file
        rows += "".join(json.dumps({"sample_id": i, "prediction": f"p{i}"}) + "\n" for i in data.ids[:1])
        with tempfile.TemporaryDirectory() as tmp:  # one flushed batch, as PredictionStream logs it
            path = Path(tmp, "partial.jsonl")
            path.write_text(rows)
            tracker.log_file(path, "predictions")
        if scenario == f"rank{rank}_fails_in_pass":
            raise ValueError(f"boom on rank {rank}")
        return QualityPassResult({i: f"p{i}" for i in data.ids}, [], wall_s=1.0 + rank, generated_tokens=2,
                                 final_batch_size=1)

    with distributed.main_only(fake_open_run)("experiment", "run") as tracker:
        if scenario == "stuck" and rank == 1:
            time.sleep(STUCK_S)  # neither gathers nor fails in time
        quality = distributed.sharded_quality_pass(fake_pass, tracker, 1)(None, None, None,
                                                                          FakeSplit([1, 2, 3, 4]))
        record["predictions"] = sorted(quality.predictions)
        metrics = {"throughput_images_per_s": 1.0 + rank}
        if rank == 0:
            metrics["throughput_images_per_s_bs32"] = 4.0
        else:  # out of memory at batch 32: no value, the cost pass's tag; and its GPU's power
            oom = "out of memory at batch size 32"
            tracker.set_tags({"vlm_quant.cost_oom_bs32": oom, "vlm_quant.task": "x"})
            tracker.log_metric_history("gpu_power_w", [100.0, 120.0], [0, 100])
        metrics = distributed.combine_rank_metrics(metrics, tracker)
        tracker.log_metrics(metrics)
        if scenario == "late_failure" and rank == 1:
            raise OSError("disk full after the cost pass")
