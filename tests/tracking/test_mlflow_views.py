"""What the MLflow UI shows of an evaluate run: its name, dataset inputs, logged model, description,
system metrics and registry version (one in-process run into a real sqlite store)."""

from __future__ import annotations

import json
import time

import mlflow
import pytest

from vlm_quant.config import ExperimentConfig
from vlm_quant.run.runner import prepare_experiment, run_experiment
from vlm_quant.tracking.run_story import TAG_NOTE
from vlm_quant.tracking.tracker import open_run

FAST_COST = dict(cost_samples=2, cost_iterations=1, cost_warmup=0, cost_new_tokens=2, idle_seconds=0)


@pytest.fixture()
def evaluated(tiny_vlm_dirs, coco_dir, tracking_uri):
    cfg = ExperimentConfig.from_mapping(
        dict(
            model=str(tiny_vlm_dirs["idefics3"]),
            data_dir=str(coco_dir),
            quant="int8",
            n_samples=3,
            batch_size=3,
            max_new_tokens=4,
            register="tiny-vlm",
            experiment="views",
            **FAST_COST,
        )
    )
    from vlm_quant.cli.commands import default_run_name

    prepared = prepare_experiment(cfg)
    with open_run(cfg.experiment, default_run_name(cfg, prepared), system_metrics_interval_s=0.2) as tracker:
        run_experiment(prepared, tracker, progress=False)
        time.sleep(0.6)  # at least one system-metrics sample
    return mlflow.MlflowClient(tracking_uri), tracker.run_id


def test_evaluate_run_is_named_has_its_split_a_logged_model_and_a_description(evaluated, tiny_vlm_dirs):
    client, run_id = evaluated
    run = client.get_run(run_id)
    # the 16-bit roles of an int8 run computed in float32 on this CPU: the name says so, never "fp16"
    assert run.info.run_name == f"{tiny_vlm_dirs['idefics3'].name} · int8 (fp32 on cpu)"

    inputs = {i.tags[0].value if i.tags else "": i.dataset for i in run.inputs.dataset_inputs}
    evaluation = inputs["evaluation"]
    assert evaluation.name == "coco-val2017" and evaluation.digest == run.data.params["ids_hash"]
    assert json.loads(evaluation.profile)["num_samples"] == 3
    assert json.loads(evaluation.source)["uri"].endswith("coco_val2017_mini")
    assert inputs["cost_micro_set"].name == "coco-val2017-cost-micro-set"

    models = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    assert len(models) == 1 and models[0].params["quant"] == "int8" and models[0].tags["preset"] == "int8"
    assert run.outputs.model_outputs[0].model_id == models[0].model_id
    linked = {m.key for m in models[0].metrics or []}
    assert "latency_ms_p50" in linked and "cider" in linked  # the model page shows the run's metrics

    note = run.data.tags[TAG_NOTE]
    assert "CIDER" in note and "ms" in note and "MiB" in note and "RANDOM" not in note
    assert "float32 on CPU" in note  # the caveat of a 16-bit plan run in fp32 on CPU

    assert any(key.startswith("system/cpu_utilization") for key in run.data.metrics)
    versions = client.search_model_versions("name = 'tiny-vlm'")
    assert len(versions) == 1 and versions[0].tags["preset"] == "int8"


@pytest.mark.parametrize("given", [None, "my own name"])
def test_under_mlflow_run_the_launchers_random_name_is_replaced_a_chosen_one_kept(
    given, tracking_uri, monkeypatch
):
    from mlflow.utils.name_utils import _generate_random_name

    client = mlflow.MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("launched")
    launched = client.create_run(experiment_id, run_name=given or _generate_random_name())  # as `mlflow run`
    monkeypatch.setenv("MLFLOW_RUN_ID", launched.info.run_id)
    with open_run("launched", "M · int8"):
        pass
    assert client.get_run(launched.info.run_id).info.run_name == (given or "M · int8")
