"""A run's logged model loads back at its precision and predicts what the run predicted."""

from __future__ import annotations

import json

import mlflow
import pytest

from vlm_quant.config import ExperimentConfig
from vlm_quant.models.logged_model import load_logged_model
from vlm_quant.quantize.audit import audit_precision
from vlm_quant.run.quality_pass import run_quality_pass
from vlm_quant.run.runner import prepare_experiment, run_experiment
from vlm_quant.tracking.tracker import open_run

FAST_COST = dict(cost_samples=2, cost_iterations=1, cost_warmup=0, cost_new_tokens=2, idle_seconds=0)


def evaluate(model_dir, coco_dir, quant, **extra):
    cfg = ExperimentConfig.from_mapping(
        dict(model=str(model_dir), data_dir=str(coco_dir), quant=quant, n_samples=4, batch_size=2,
             max_new_tokens=6, seed=5, **FAST_COST, **extra)
    )
    prepared = prepare_experiment(cfg)
    with open_run("roundtrip", f"tiny · {quant}") as tracker:
        run_experiment(prepared, tracker, progress=False)
    return prepared, tracker.run_id


def logged_json(client, run_id, path, tmp_path):
    return json.loads(open(client.download_artifacts(run_id, path, str(tmp_path))).read())


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["int8", "nf4", "int8-ao", "int8-vision"])
def test_logged_model_loads_back_with_the_runs_precision_and_predictions(
    quant, tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path
):
    prepared, run_id = evaluate(tiny_vlm_dirs["idefics3"], coco_dir, quant)
    client = mlflow.MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    found = f"source_run_id = '{run_id}'"
    models = client.search_logged_models([run.info.experiment_id], filter_string=found)
    assert len(models) == 1 and str(models[0].status).endswith("READY")
    assert models[0].params["quant"] == quant

    loaded = load_logged_model(run_id)
    assert loaded.verified_tensors > 0  # bit-identical to the logged weight files
    logged_map = logged_json(client, run_id, "precision/precision_map.json", tmp_path)
    assert audit_precision(loaded.model, loaded.family, prepared.plan).to_dict() == logged_map

    again = run_quality_pass(
        loaded.model, loaded.processor, prepared.task, prepared.data, batch_size=2,
        max_image_side=prepared.cfg.max_image_side, settings=prepared.settings, dtype=prepared.dtype,
        progress=False,
    )
    rows = [json.loads(line) for line in open(
        client.download_artifacts(run_id, "predictions/predictions.jsonl", str(tmp_path))
    )]
    assert len(rows) == 4
    assert {r["image_id"]: r["prediction"] for r in rows} == again.predictions


@pytest.mark.slow
def test_vlm_quant_load_regenerates_the_runs_first_images(tiny_vlm_dirs, coco_dir, tracking_uri):
    from click.testing import CliRunner

    from vlm_quant.cli.commands import main

    _, run_id = evaluate(tiny_vlm_dirs["idefics3"], coco_dir, "int8")
    result = CliRunner().invoke(main, ["load", run_id, "--check", "4"])
    assert result.exit_code == 0, result.output
    assert "language   int8" in result.output
    assert result.output.count("  same  ") == 4 and "DIFFERENT" not in result.output
