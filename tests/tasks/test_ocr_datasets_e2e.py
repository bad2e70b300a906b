"""One tiny-model evaluate per new dataset: ChartQA in process, DocVQA (score=later) and NoCaps by CLI."""

from __future__ import annotations

import json

import mlflow
import pytest
from click.testing import CliRunner
from ocr_layouts import build_chartqa, build_docvqa, build_nocaps

from vlm_quant.cli.commands import main
from vlm_quant.config import ExperimentConfig
from vlm_quant.run.runner import prepare_experiment, run_experiment
from vlm_quant.study.report.build import compare
from vlm_quant.tracking.tracker import InMemoryTracker

QUICK = {  # the cheapest complete run: two samples, a short answer, a minimal cost pass
    "n_samples": 2,
    "batch_size": 2,
    "max_new_tokens": 3,
    "log_model": False,
    "device": "cpu",
    "cost_samples": 2,
    "cost_iterations": 1,
    "cost_warmup": 0,
    "cost_new_tokens": 2,
    "idle_seconds": 0,
    "spotcheck_n": 2,
}


def _cli_args(options):
    args = []
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value).lower()]
    return args


def _printed(result):
    assert result.exit_code == 0, result.output[-3000:]
    return json.loads(result.output[result.output.index("{\n") :])


@pytest.mark.slow
def test_tiny_model_evaluates_chartqa(tiny_vlm_dirs, coco_dir, tmp_path):
    dataset, metric = "chartqa", "relaxed_accuracy"
    build_chartqa(tmp_path, coco_dir)
    cfg = ExperimentConfig.from_mapping(
        {
            "task": "vqa",
            "dataset": dataset,
            "model": str(tiny_vlm_dirs["idefics3"]),
            "data_dir": str(tmp_path),
            "max_image_side": 64,
            **QUICK,
        }
    )
    tracker = InMemoryTracker()
    summary = run_experiment(prepare_experiment(cfg), tracker, progress=False)
    assert summary.n_predictions == 2
    assert 0.0 <= tracker.metrics[metric] <= 1.0 and "vqa_accuracy" not in tracker.metrics
    assert "batch_invariance_relaxed_accuracy_delta" in tracker.metrics  # named after the dataset's metric
    assert tracker.params["dataset"] == dataset and tracker.params["metric"] == metric
    assert "max_image_side=64 is below" in tracker.tags["vlm_quant.image_side_caveat"]
    rows = [json.loads(line) for line in tracker.artifacts["predictions/predictions.jsonl"].splitlines()]
    assert len(rows) == 2 and all(r["accuracy"] == r["relaxed_correct"] for r in rows)
    assert len(tracker.artifacts["spotcheck/spotcheck.csv"].strip().splitlines()) == 1 + 2
    assert f"{metric} " in tracker.tags["mlflow.note.content"]  # the run page leads with the dataset's metric


@pytest.mark.slow
def test_docvqa_deferred_scoring_then_score_run_logs_anls(tiny_vlm_dirs, coco_dir, tmp_path, tracking_uri):
    """score=later, then `vlm-quant score run`: the run gets the ANLS it would have had at once."""
    build_docvqa(tmp_path / "docvqa", coco_dir)
    options = {**QUICK, "max_image_side": 64, "score": "later"}
    args = [
        "evaluate",
        "--task",
        "vqa",
        "--dataset",
        "docvqa",
        "--data-dir",
        str(tmp_path / "docvqa"),
        "--model",
        str(tiny_vlm_dirs["idefics3"]),
        "--no-progress",
        "--json",
        *_cli_args(options),
    ]
    run_id = _printed(CliRunner().invoke(main, args))["run_id"]
    client = mlflow.MlflowClient(tracking_uri)
    assert "anls" not in client.get_run(run_id).data.metrics
    scored = _printed(CliRunner().invoke(main, ["score", "run", run_id]))
    run = client.get_run(run_id)
    assert 0.0 <= run.data.metrics["anls"] == scored["metrics"]["anls"] <= 1.0
    assert run.data.params["task_image_side_needed"] == "2048"
    assert "below the 2048 px" in run.data.tags["vlm_quant.image_side_caveat"]
    report = compare(tmp_path / "report", run_ids=[run_id], tracking_uri=tracking_uri, n_resamples=50)
    assert report.task == "docvqa"  # grouped by the dataset's own metric, not VQA accuracy
    assert report.tables.numbers["anls"].tolist() == [run.data.metrics["anls"]]
    assert any(line.startswith("° max_image_side is below") for line in report.tables.quality_legend)


@pytest.mark.slow
def test_evaluate_nocaps_logs_cider_per_domain(tiny_vlm_dirs, coco_dir, tmp_path, tracking_uri):
    """The issue's acceptance command on a NoCaps-format folder made from the COCO slice (2+2+1 images)."""
    build_nocaps(tmp_path / "nocaps", coco_dir)
    options = {**QUICK, "n_samples": 0, "max_image_side": 64}
    args = [
        "evaluate",
        "--task",
        "captioning",
        "--dataset",
        "nocaps",
        "--data-dir",
        str(tmp_path / "nocaps"),
        "--model",
        str(tiny_vlm_dirs["idefics3"]),
        "--no-progress",
        "--json",
    ]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value).lower()]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output[-3000:]
    printed = json.loads(result.output[result.output.index("{\n") :])
    run = mlflow.MlflowClient(tracking_uri).get_run(printed["run_id"])
    m, tags = run.data.metrics, run.data.tags
    assert {"cider", "cider_in_domain", "cider_near_domain"} <= set(m)
    assert (m["nocaps_n_in_domain"], m["nocaps_n_near_domain"], m["nocaps_n_out_domain"]) == (2, 2, 1)
    assert "cider_out_domain" not in m  # one image: CIDEr's IDF is log(1) = 0, absent with its reason
    assert "cider_out_domain: 1 evaluated out-domain image(s)" in tags["vlm_quant.domain_cider_absent_reason"]
    assert "CHAIR is COCO-only" in tags["vlm_quant.chair_absent_reason"] and "chair_i" not in m
    assert "CIDEr by NoCaps domain: in " in tags["mlflow.note.content"]
