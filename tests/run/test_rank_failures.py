"""A failing, late or stuck rank is recorded in rank 0's run and nobody hangs (two real gloo processes)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rank_scenarios  # noqa: E402
from rank_scenarios import STUCK_S, TIMEOUT_S  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, list[dict]]:
    out = tmp_path_factory.mktemp("ranks")
    mp.start_processes(rank_scenarios.child, args=(free_port(), str(out)), nprocs=2, start_method="spawn")
    return {
        scenario: [json.loads((out / f"{scenario}-rank{r}.json").read_text()) for r in (0, 1)]
        for scenario in rank_scenarios.SCENARIOS
    }


def partial_ids(record: dict) -> list[int]:
    return sorted(json.loads(line)["sample_id"] for line in (record["partial"] or "").splitlines())


def test_healthy_ranks_merge_predictions_and_metrics(outcomes):
    rank0, rank1 = outcomes["healthy"]
    assert rank0["raised"] is None and rank1["raised"] is None and rank0["status"] == "FINISHED"
    assert rank0["predictions"] == rank1["predictions"] == [1, 2, 3, 4]
    assert rank0["metrics"]["throughput_images_per_s"] == 3.0  # 1 + 2: the sum over ranks
    # rank 1 lacked the batch-32 throughput: no total (rank 0's alone is not the machine's), a tag naming it
    assert "throughput_images_per_s_bs32" not in rank0["metrics"]
    assert rank0["metrics"]["rank0_throughput_images_per_s_bs32"] == 4.0
    assert rank0["tags"]["vlm_quant.rank_total_absent_throughput_images_per_s_bs32"].startswith("rank 1 of 2")
    # rank 1's own tags and its GPU's power reach the run, prefixed; its run-level tags do not
    assert rank0["tags"]["vlm_quant.rank1_cost_oom_bs32"] == "out of memory at batch size 32"
    assert "vlm_quant.rank1_task" not in rank0["tags"]
    assert rank0["histories"]["rank1_gpu_power_w"] == [[0, 100.0], [100, 120.0]]
    assert partial_ids(rank0) == [0, 1, 3]  # earlier attempt's row, rank 0's and rank 1's flushed rows


def test_a_rank_failing_in_its_pass_fails_the_run_with_its_error(outcomes):
    rank0, rank1 = outcomes["rank1_fails_in_pass"]
    assert rank0["status"] == "FAILED"
    assert "rank 1: ValueError: boom on rank 1" in rank0["failure"]
    assert rank1["raised"] == "ValueError: boom on rank 1"
    assert partial_ids(rank0) == [0, 1, 3]  # rank 1's rows made before it failed are kept
    assert max(r["elapsed_s"] for r in (rank0, rank1)) < TIMEOUT_S  # nobody waited for a timeout


def test_rank_0_failing_still_keeps_the_other_ranks_predictions(outcomes):
    rank0, rank1 = outcomes["rank0_fails_in_pass"]
    assert rank0["status"] == "FAILED" and rank0["failure"] == "ValueError: boom on rank 0"
    assert rank1["raised"].startswith("RankFailed: rank 0: ValueError: boom on rank 0")
    assert partial_ids(rank0) == [0, 1, 3]  # rank 1's rows reached rank 0's partial.jsonl
    assert max(r["elapsed_s"] for r in (rank0, rank1)) < TIMEOUT_S


def test_a_failure_after_the_last_runner_gather_still_fails_the_run(outcomes):
    rank0, rank1 = outcomes["late_failure"]
    assert rank0["status"] == "FAILED"
    assert "rank 1: OSError: disk full after the cost pass" in rank0["failure"]
    assert rank1["raised"] == "OSError: disk full after the cost pass"


def test_rank_0_unable_to_open_its_run_releases_the_others(outcomes):
    rank0, rank1 = outcomes["open_fails"]
    assert rank0["raised"] == "ConnectionError: tracking store unreachable"
    assert rank1["raised"].startswith("RankFailed: rank 0: ConnectionError: tracking store unreachable")
    assert max(r["elapsed_s"] for r in (rank0, rank1)) < TIMEOUT_S


def test_a_stuck_rank_ends_the_wait_after_the_timeout_as_a_recorded_failure(outcomes):
    rank0, rank1 = outcomes["stuck"]
    assert rank0["status"] == "FAILED" and f"the gather failed within {TIMEOUT_S:.0f} s" in rank0["failure"]
    assert TIMEOUT_S <= rank0["elapsed_s"] < STUCK_S  # rank 0 gave up at the timeout, not later
    assert rank1["raised"].startswith("RankFailed")  # the stuck rank learns it at once when it wakes
    assert rank1["elapsed_s"] < STUCK_S + TIMEOUT_S
