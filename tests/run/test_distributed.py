"""Scale-out helpers: sharding, merging, metric totals (fast), and a real 2-process gloo run (slow-ish)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from vlm_quant.run import distributed
from vlm_quant.run.distributed import (
    NullTracker,
    combine_metrics,
    merge_partials,
    merge_results,
    rank_info,
    shard_ids,
)
from vlm_quant.run.quality_pass import QualityPassResult

REPO = Path(__file__).resolve().parents[2]


CASES = [(10, 3, 1), (10, 3, 4), (5, 2, 2), (3, 4, 1), (0, 2, 2), (7, 1, 3)]


@pytest.mark.parametrize("n, world, batch", CASES)
def test_shards_are_whole_batches_in_order_and_cover_every_id(n, world, batch):
    ids = list(range(100, 100 + n))
    shards = [shard_ids(ids, r, world, batch) for r in range(world)]
    assert [i for shard in shards for i in shard] == ids  # contiguous, rank order: concatenation is the split
    one_process_batches = [ids[i : i + batch] for i in range(0, n, batch)]
    per_rank_batches = [shard[i : i + batch] for shard in shards for i in range(0, len(shard), batch)]
    assert per_rank_batches == one_process_batches  # every generate() call sees the same batch
    sizes = [len(s) // batch for s in shards if len(s) % batch == 0]
    assert not sizes or max(sizes) - min(sizes) <= 1 or n % batch


def test_bad_shard_arguments_raise():
    with pytest.raises(ValueError):
        shard_ids([1, 2], 2, 2)
    with pytest.raises(ValueError):
        rank_info({"RANK": "3", "WORLD_SIZE": "2"})


def test_single_process_helpers_are_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert rank_info() == distributed.RankInfo(0, 1, 0) and distributed.is_main()

    def fn(*a, **k):
        return a

    assert distributed.sharded_quality_pass(fn, None, 2) is fn
    assert distributed.main_only(fn) is fn
    metrics = {"cider": 1.0}
    assert distributed.combine_rank_metrics(metrics, None) is metrics
    assert distributed.gather_objects(5) == [5]
    assert distributed.relaunch_if_needed(1, ["evaluate"]) is None


def test_merge_results_restores_evaluation_order_and_totals():
    ids = [5, 3, 9, 1]
    a = QualityPassResult({5: "a", 3: "b"}, [], wall_s=2.0, generated_tokens=4, final_batch_size=2,
                          batch_sizes=(2,))
    b = QualityPassResult({1: "d"}, [{"sample_id": 9, "reason": "bad"}], wall_s=3.0, generated_tokens=1,
                          n_resumed=1, oom_retries=1, final_batch_size=1, batch_sizes=(2, 1))
    merged = merge_results(ids, [b, a])
    assert list(merged.predictions) == [5, 3, 1] and merged.skipped[0]["sample_id"] == 9
    assert (merged.wall_s, merged.generated_tokens, merged.n_resumed, merged.oom_retries) == (3.0, 5, 1, 1)
    assert merged.final_batch_size == 1 and merged.batch_sizes == (2, 1)  # every size any rank generated at


def test_combine_metrics_totals_and_per_rank_copies():
    r0 = {"cider": 0.5, "throughput_images_per_s": 2.0, "peak_vram_allocated_mib": 10.0,
          "latency_ms_p50": 7.0, "quality_pass_energy_j_per_image": 1.0,
          "quality_pass_images_per_kwh": 100.0, "load_time_s": 1.0}
    r1 = {**r0, "throughput_images_per_s": 3.0, "peak_vram_allocated_mib": 12.0, "latency_ms_p50": 9.0,
          "quality_pass_energy_j_per_image": 2.0, "quality_pass_images_per_kwh": 100.0, "load_time_s": 2.0}
    out = combine_metrics([r0, r1])
    assert out["cider"] == 0.5 and "rank1_cider" not in out
    assert out["throughput_images_per_s"] == 5.0 and out["rank1_throughput_images_per_s"] == 3.0
    assert out["peak_vram_allocated_mib"] == 12.0 and out["rank0_peak_vram_allocated_mib"] == 10.0
    assert out["latency_ms_p50"] == 7.0 and out["rank1_latency_ms_p50"] == 9.0
    assert out["quality_pass_energy_j_per_image"] == 3.0 and out["quality_pass_images_per_kwh"] == 50.0
    assert out["load_time_s"] == 2.0


def test_a_total_some_rank_lacks_is_absent_with_a_tag_naming_that_rank():
    # rank 1 ran out of memory at batch 32: summing the ranks that have a value would store rank 0's
    # images/s as the machine's; and a rank without an energy counter would halve the J/image.
    r0 = {"throughput_images_per_s_bs32": 4.0, "throughput_images_per_s_bs1": 1.0,
          "quality_pass_energy_j_per_image": 5.0, "latency_ms_p50": 7.0, "cider": 0.5}
    r1 = {"throughput_images_per_s_bs1": 1.5, "quality_pass_energy_j_per_image": None}
    out = combine_metrics([r0, r1])
    assert "throughput_images_per_s_bs32" not in out and out["rank0_throughput_images_per_s_bs32"] == 4.0
    assert "rank1_throughput_images_per_s_bs32" not in out
    assert "quality_pass_energy_j_per_image" not in out  # not 5.0, rank 0's share alone
    assert out["throughput_images_per_s_bs1"] == 2.5 and out["latency_ms_p50"] == 7.0
    tags = distributed.incomplete_total_tags([r0, r1])
    assert tags.keys() == {"vlm_quant.rank_total_absent_throughput_images_per_s_bs32",
                           "vlm_quant.rank_total_absent_quality_pass_energy_j_per_image"}
    assert all(text.startswith("rank 1 of 2 lacked it") for text in tags.values())
    complete = combine_metrics([r0, {**r1, "quality_pass_energy_j_per_image": 7.0}])
    assert complete["quality_pass_energy_j_per_image"] == 12.0  # each rank: its energy / all images


def test_rank0_numbers_are_rank0s_own_and_a_key_no_rank_has_gets_no_total_tag():
    three = [{"peak_rss_mib": 5.0}, {"latency_ms_p50": 9.0}, {}]
    out = combine_metrics(three)
    assert "latency_ms_p50" not in out and out["rank1_latency_ms_p50"] == 9.0  # never rank 1's as rank 0's
    assert "peak_rss_mib" not in out
    tags = distributed.incomplete_total_tags(three)
    assert list(tags) == ["vlm_quant.rank_total_absent_peak_rss_mib"]  # latency: rank 0's, not a total
    assert tags["vlm_quant.rank_total_absent_peak_rss_mib"].startswith("ranks 1, 2 of 3 lacked it")
    assert distributed.incomplete_total_tags([{}, {"energy_kwh": None}]) == {}  # nobody has it: rank tags say


def test_a_machine_metric_is_complete_when_every_machines_local_rank_0_brought_it():
    # codecarbon measures each machine once, in its local rank 0: the other ranks lack it by design
    one_machine = [{"codecarbon_energy_kwh": 2.0}, {}]
    assert combine_metrics(one_machine, [0, 1])["codecarbon_energy_kwh"] == 2.0
    assert distributed.incomplete_total_tags(one_machine, [0, 1]) == {}
    two_machines = [{"codecarbon_energy_kwh": 2.0}, {}, {}, {}]  # machine 2's local rank 0 (rank 2) failed
    assert "codecarbon_energy_kwh" not in combine_metrics(two_machines, [0, 1, 0, 1])
    tag = distributed.incomplete_total_tags(two_machines, [0, 1, 0, 1])
    assert tag["vlm_quant.rank_total_absent_codecarbon_energy_kwh"].startswith("rank 2 of 4 lacked it")


def test_per_rank_tags_are_the_measurement_tags_prefixed_with_the_rank():
    tracker = NullTracker(2)
    tracker.set_tags({"vlm_quant.cost_oom_bs8": "out of memory", "vlm_quant.energy_absent_reason": "no NVML",
                      "vlm_quant.weights": "random"})
    assert distributed.per_rank_tags(2, tracker.tags) == {
        "vlm_quant.rank2_cost_oom_bs8": "out of memory", "vlm_quant.rank2_energy_absent_reason": "no NVML"}


def test_null_tracker_keeps_partial_predictions_and_merge(tmp_path):
    tracker = NullTracker(1, previous_partial='{"sample_id": 1, "prediction": "x"}\n')
    assert tracker.read_text("predictions/partial.jsonl").startswith('{"sample_id": 1')
    assert tracker.read_text("other") is None
    tracker.log_params({"a": 1}), tracker.log_metrics({"m": 1.0}), tracker.log_text("t", "p")
    partial = tmp_path / "partial.jsonl"
    partial.write_text('{"sample_id": 2, "image_file": "f", "skipped": "bad"}\n')
    tracker.log_file(partial, "predictions")
    assert "skipped" in tracker.partial_text
    merged = merge_partials([tracker.previous_partial, tracker.partial_text,
                             '{"sample_id": 2, "prediction": "y"}\n', None])
    rows = [json.loads(line) for line in merged.splitlines()]
    assert rows == [{"sample_id": 1, "prediction": "x"}, {"sample_id": 2, "prediction": "y"}]


def test_launch_command():
    command = distributed.launch_command(["evaluate", "--quant", "int8"], 2)
    assert command[1:] == ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "-m", "vlm_quant", "evaluate", "--quant", "int8"]


# --- a real 2-process run ----------------------------------------------------------------------------

FAILING_RANK_HOOK = '''
import os
if os.environ.get("RANK") == "1":
    import vlm_quant.run.quality_pass as qp
    def boom(*args, **kwargs):
        raise RuntimeError("injected failure on rank 1")
    qp.generate_prepared = boom
'''


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_vlms import build_tiny_vlm

    return build_tiny_vlm("idefics3", tmp_path_factory.mktemp("tiny") / "idefics3")


def evaluate_args(model: Path, coco: Path, experiment: str) -> list[str]:
    options = dict(model=model, data_dir=coco, n_samples=5, batch_size=2, max_new_tokens=6, seed=3,
                   cost_samples=2, cost_iterations=1, cost_warmup=0, cost_new_tokens=2, idle_seconds=0,
                   log_model="false", experiment=experiment)
    return ["evaluate", "--no-progress", *[x for k, v in options.items() for x in (f"--{k}", str(v))]]


def launch(args: list[str], tmp_path: Path, extra_env: dict[str, str] | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
           **(extra_env or {})}
    command = distributed.launch_command(args, 2)
    command[3:3] = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    "--main_process_port", "29517"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def artifact_rows(client, run_id: str, path: str, dest: Path) -> list[dict]:
    local = Path(client.download_artifacts(run_id, path, str(dest)))
    return [json.loads(line) for line in local.read_text().splitlines() if line.strip()]


def test_two_processes_equal_one_process_and_make_one_run(tiny_model, coco_dir, tracking_uri, tmp_path):
    single = CliRunner().invoke(distributed_main(), evaluate_args(tiny_model, coco_dir, "single"))
    assert single.exit_code == 0, single.output
    done = launch(evaluate_args(tiny_model, coco_dir, "multi"), tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]

    client = mlflow.MlflowClient(tracking_uri)
    runs = {name: client.search_runs([client.get_experiment_by_name(name).experiment_id])
            for name in ("single", "multi")}
    assert len(runs["multi"]) == 1 and len(runs["single"]) == 1  # rank 1 never opened a run
    one, two = runs["single"][0], runs["multi"][0]
    assert two.info.status == "FINISHED" and two.data.params["distributed_world_size"] == "2"
    rows1 = artifact_rows(client, one.info.run_id, "predictions/predictions.jsonl", tmp_path / "a")
    rows2 = artifact_rows(client, two.info.run_id, "predictions/predictions.jsonl", tmp_path / "b")
    assert [r["image_id"] for r in rows2] == [r["image_id"] for r in rows1] and len(rows2) == 5
    assert [r["prediction"] for r in rows2] == [r["prediction"] for r in rows1]
    for key in ("cider", "bleu_1", "bleu_4", "meteor", "rouge_l", "n_samples_evaluated"):
        assert two.data.metrics[key] == one.data.metrics[key], key  # exactly equal
    m = two.data.metrics
    assert m["throughput_images_per_s"] == pytest.approx(
        m["rank0_throughput_images_per_s"] + m["rank1_throughput_images_per_s"])
    assert "rank1_peak_rss_mib" in m and "rank1_latency_ms_p50" in m
    assert "no CUDA" in two.data.tags["vlm_quant.rank1_energy_absent_reason"]  # rank 1's own reason tag
    assert [k for k in two.data.tags if k.startswith("vlm_quant.rank_total_absent_")] == []  # all complete
    # Batch invariance: rank 0 alone, on the merged predictions; the same samples as one process.
    assert m["batch_invariance_agreement"] == one.data.metrics["batch_invariance_agreement"]
    n_checked = "batch_invariance_n_samples"
    assert two.data.params[n_checked] == one.data.params[n_checked] == "5"
    assert not any(key.startswith("rank1_batch_invariance") for key in m)
    partial = artifact_rows(client, two.info.run_id, "predictions/partial.jsonl", tmp_path / "c")
    assert sorted(r["sample_id"] for r in partial) == sorted(r["image_id"] for r in rows1)  # all ranks' rows


def test_a_failing_rank_fails_the_run_with_its_error_and_keeps_predictions(
    tiny_model, coco_dir, tracking_uri, tmp_path
):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FAILING_RANK_HOOK)
    env = {"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    done = launch(evaluate_args(tiny_model, coco_dir, "broken"), tmp_path, env)
    assert done.returncode != 0
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("broken").experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FAILED"
    assert "rank 1: RuntimeError: injected failure on rank 1" in run.data.tags["vlm_quant.failure"]
    partial = artifact_rows(client, run.info.run_id, "predictions/partial.jsonl", tmp_path / "p")
    assert len(partial) == 2 and all("prediction" in r for r in partial)  # rank 0's batch of 2 is kept


def distributed_main():
    from vlm_quant.cli.commands import main

    return main


def test_per_image_sustainability_numbers_are_rank0s_while_run_co2e_adds_up():
    r0 = {"co2e_kg": 1.0, "co2e_g_per_1k_images_usa": 4.0, "scale_co2e_t_per_1m_images": 0.5,
          "co2e_place_highest_to_lowest_ratio": 20.0}
    r1 = {"co2e_kg": 2.0, "co2e_g_per_1k_images_usa": 6.0, "scale_co2e_t_per_1m_images": 0.7,
          "co2e_place_highest_to_lowest_ratio": 20.0}
    out = combine_metrics([r0, r1])
    assert out["co2e_kg"] == 3.0  # the whole run's emissions: every GPU's
    assert out["co2e_g_per_1k_images_usa"] == 4.0 and out["rank1_co2e_g_per_1k_images_usa"] == 6.0
    assert out["scale_co2e_t_per_1m_images"] == 0.5 and out["co2e_place_highest_to_lowest_ratio"] == 20.0
