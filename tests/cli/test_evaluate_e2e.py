"""End to end: `mlflow run . -e evaluate` with a tiny model on the real COCO slice, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from click.testing import CliRunner

from vlm_quant.cli.commands import main
from vlm_quant.config import ExperimentConfig
from vlm_quant.run.runner import prepare_experiment, run_experiment
from vlm_quant.tracking import glossary
from vlm_quant.tracking.tracker import InMemoryTracker

REPO = Path(__file__).resolve().parents[2]
FAST_COST = dict(cost_samples=2, cost_iterations=1, cost_warmup=0, cost_new_tokens=2, idle_seconds=0)


def test_mlflow_run_evaluate_makes_one_complete_run(tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path):
    """The issue's acceptance path, with a tiny model instead of SmolVLM-256M."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    params = {
        "quant": "fp16",
        "model": str(tiny_vlm_dirs["idefics3"]),
        "n_samples": "4",
        "batch_size": "2",
        "max_new_tokens": "6",
        "data_dir": str(coco_dir),
        "seed": "3",
        "cost_iterations": "2",
        "cost_new_tokens": "3",
        "idle_seconds": "0",
        # the same as --experiment-name: accepted (another one fails, see test_launcher_params)
        "experiment": "e2e",
        "run_name": "tiny-e2e",  # renames the launcher's randomly named run
    }
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(REPO),
        "-e",
        "evaluate",
        "--env-manager",
        "local",
        "--experiment-name",
        "e2e",
    ]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("e2e")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    assert t["mlflow.runName"] == "tiny-e2e"
    assert p["quant"] == "fp16" and p["model"] == params["model"] and p["seed"] == "3"
    assert p["n_samples"] == "4" and p["batch_size"] == "2" and p["max_new_tokens"] == "6"
    assert (
        p["model_family"] == "idefics3"
        and p["precision_language"] == "fp16"
        and p["precision_vision"] == "fp16"
    )
    assert p["dataset"] == "coco" and p["split"] == "val2017" and len(p["ids_hash"]) == 16
    assert p["prompt"] and p["max_image_side"] == "1024" and p["device"] == "cpu" and p["dtype"] == "float32"
    assert p["revision"] and p["decoding"] == "greedy"
    assert t["vlm_quant.weights"] == "pretrained" and t["vlm_quant.task"] == "captioning"
    for key in (
        "cider",
        "bleu_1",
        "bleu_4",
        "meteor",
        "rouge_l",
        "load_time_s",
        "size_on_disk_mib",
        "latency_ms_p50",
        "latency_ms_p90",
        "latency_ms_mean",
        "ttft_ms_p50",
        "throughput_images_per_s",
        "peak_rss_mib",
        "n_samples_evaluated",
    ):
        assert key in m, key
    assert m["n_samples_evaluated"] == 4 and 0 <= m["bleu_4"] <= 1 and m["size_on_disk_mib"] > 0
    assert "peak_vram_allocated_mib" not in m and "energy_j_per_image" not in m  # absent on CPU, never 0
    assert "no CUDA" in t["vlm_quant.energy_absent_reason"]
    # the input pipeline: which image-processor backend ran, with how many workers, and the time split
    assert p["image_processor_backend"] in ("torchvision", "pil") and p["image_processor_device"] == "cpu"
    assert int(p["num_workers_resolved"]) >= 1  # -1 (auto): at least one worker
    assert 0 < m["quality_pass_model_s"] <= m["quality_pass_s"] and m["quality_pass_wait_s"] >= 0
    model_share = m["quality_pass_model_s"] / m["quality_pass_s"]
    assert m["harness_overhead_fraction"] == pytest.approx(1 - model_share)

    artifacts = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl")))
    rows = [
        json.loads(line) for line in (artifacts / "predictions/predictions.jsonl").read_text().splitlines()
    ]
    ids = json.loads((artifacts / "split/ids.json").read_text())["ids"]
    assert [r["image_id"] for r in rows] == ids and len(ids) == 4
    assert all({"prediction", "references", "cider", "prompt"} <= set(r) for r in rows)
    mean_cider = sum(r["cider"] for r in rows) / len(rows)
    assert mean_cider == pytest.approx(m["cider"], rel=1e-6)  # per-image CIDEr averages to the corpus CIDEr
    table = json.loads((artifacts / "predictions/predictions_table.json").read_text())
    assert table["columns"][:3] == ["image_id", "prompt", "prediction"] and len(table["data"]) == 4
    resolved = yaml.safe_load((artifacts / "config/resolved_config.yaml").read_text())
    assert resolved["quant"] == "fp16" and resolved["n_samples"] == 4
    environment = json.loads((artifacts / "environment/environment.json").read_text())
    assert environment["packages"]["torch"] and environment["cpu_count"] >= 1
    # `-P run_name` wins over the launcher's random name and over our default `<model> · <preset>` (that
    # default is checked under `mlflow run` in tests/tracking/test_mlflow_views.py). The checkpoint is the
    # run's logged model.
    assert run.info.run_name == "tiny-e2e"
    models = client.search_logged_models([experiment.experiment_id])
    assert [m.source_run_id for m in models] == [run.info.run_id]
    location = models[0].artifact_location
    model_files = Path(mlflow.artifacts.download_artifacts(location, dst_path=str(tmp_path)))
    assert (model_files / "config.json").is_file() and list(model_files.glob("*.safetensors"))
    assert (model_files / "vlm_quant_model.json").is_file()  # what `vlm-quant load` rebuilds from
    assert (artifacts / "logs/run.log").is_file()
    # Every metric, vlm_quant tag and artifact the run logged has its entry in the generated reference
    # (docs/reference/, from vlm_quant/tracking/glossary/); MLflow's own system/* metrics are not ours.
    files = [str(f.relative_to(artifacts)) for f in artifacts.rglob("*") if f.is_file()]
    ours = [k for k in m if not k.startswith("system/")]
    undocumented = [k for k in ours if not glossary.documented(k, glossary.METRICS)]
    undocumented += [k for k in t if k.startswith("vlm_quant.") and not glossary.documented(k, glossary.TAGS)]
    undocumented += [f for f in files if not glossary.documented(f, glossary.ARTIFACTS)]
    assert not undocumented, f"add them to vlm_quant/tracking/glossary/: {undocumented}"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--quant", "int4"], "unknown quant preset 'int4'; choose one of fp16"),
        (["--data-dir", "/nonexistent/coco"], "does not exist"),
        (["--n-samples", "1000"], "n_samples=1000 is larger than the split (159 images)"),
        (["--n-sample", "3"], "No such option"),
        (["--weights", "zeros"], "weights='zeros' is not valid"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_no_run(args, message, tiny_vlm_dirs, coco_dir, tracking_uri):
    base = ["evaluate", "--data-dir", str(coco_dir), "--model", str(tiny_vlm_dirs["llava"]), "--no-progress"]
    result = CliRunner().invoke(main, base + args)
    assert result.exit_code == 2
    assert message in result.output
    client = mlflow.MlflowClient(tracking_uri)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_unreachable_model_points_to_random_weights_or_local_path(coco_dir, tracking_uri, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--data-dir",
            str(coco_dir),
            "--model",
            "nobody/no-such-vlm",
            "--n-samples",
            "2",
            "--no-progress",
        ],
    )
    assert result.exit_code == 2
    assert "weights=random" in result.output or "local path" in result.output
    client = mlflow.MlflowClient(tracking_uri)
    assert not client.search_runs(
        [e.experiment_id for e in client.search_experiments()]
    )  # checked before a run


def test_unreadable_image_is_skipped_counted_and_logged(tiny_vlm_dirs, coco_dir, tmp_path):
    data = tmp_path / "coco"
    (data / "val2017").mkdir(parents=True)
    (data / "annotations").mkdir()
    coco = json.loads((coco_dir / "annotations/captions_val2017.json").read_text())
    images = coco["images"][:4]
    for image in images:
        shutil.copy(coco_dir / "val2017" / image["file_name"], data / "val2017")
    (data / "val2017" / images[0]["file_name"]).write_bytes(b"not a jpeg")
    keep = {im["id"] for im in images}
    coco = {"images": images, "annotations": [a for a in coco["annotations"] if a["image_id"] in keep]}
    (data / "annotations/captions_val2017.json").write_text(json.dumps(coco))
    cfg = ExperimentConfig.from_mapping(
        dict(
            model=str(tiny_vlm_dirs["qwen2_vl"]),
            data_dir=str(data),
            n_samples=0,
            batch_size=2,
            max_new_tokens=4,
            log_model=False,
            **FAST_COST,
        )
    )
    tracker = InMemoryTracker()
    summary = run_experiment(prepare_experiment(cfg), tracker, progress=False)
    assert summary.n_skipped == 1 and summary.n_predictions == 3
    assert tracker.metrics["n_samples_skipped"] == 1
    skipped = tracker.artifacts["predictions/skipped_samples.json"]
    assert skipped[0]["sample_id"] == images[0]["id"] and "UnidentifiedImageError" in skipped[0]["reason"]


@pytest.mark.parametrize("family", ["idefics3", "qwen2_vl", "qwen2_5_vl", "llava"])
def test_every_family_evaluates_in_process(family, tiny_vlm_dirs, coco_dir):
    cfg = ExperimentConfig.from_mapping(
        dict(
            model=str(tiny_vlm_dirs[family]),
            data_dir=str(coco_dir),
            n_samples=3,
            batch_size=2,
            max_new_tokens=5,
            log_model=False,
            **FAST_COST,
        )
    )
    tracker = InMemoryTracker()
    run_experiment(prepare_experiment(cfg), tracker, progress=False)
    assert tracker.params["model_family"] == family  # the config's model_type
    assert tracker.metrics["n_samples_evaluated"] == 3 and "cider" in tracker.metrics
    rows = tracker.artifacts["predictions/predictions.jsonl"].splitlines()
    assert len(rows) == 3
    # Sustainability on a CPU: FLOPs counted (vision inside prefill), GPU-only quantities absent with reasons.
    m = tracker.metrics
    assert 0 < m["flops_vision_per_image"] < m["flops_prefill_per_image"] < m["flops_per_image"]
    assert m["achieved_flop_per_s"] == pytest.approx(m["flops_per_image"] * m["throughput_images_per_s_bs1"])
    assert not any(k.startswith(("flop_per_j", "mfu", "water_", "scale_", "energy_optimal")) for k in m)
    assert "GPU only" in tracker.tags["vlm_quant.phase_energy_absent_reason"]
    assert "GPU only" in tracker.tags["vlm_quant.sustainability_absent_reason"]
    if "codecarbon_energy_kwh" in m:  # codecarbon measured the CPU + RAM: placed, labelled an estimate
        place = tracker.artifacts["sustainability/co2e_by_place.json"]
        assert place["basis"].startswith("ESTIMATE") and len(place["rows"]) == 9


def test_score_captions_command_rescores_a_results_file(coco_dir, tmp_path):
    from vlm_quant.tasks.caption_metrics import score_caption_files

    coco = json.loads((coco_dir / "annotations/captions_val2017.json").read_text())
    first = {}
    for ann in coco["annotations"]:
        first.setdefault(ann["image_id"], ann["caption"])
    results = [{"image_id": i, "caption": c} for i, c in list(first.items())[:5]]
    predictions = tmp_path / "results.json"
    predictions.write_text(json.dumps(results))
    annotations = coco_dir / "annotations/captions_val2017.json"
    result = CliRunner().invoke(
        main, ["score", "captions", "--predictions", str(predictions), "--annotations", str(annotations)]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output[result.output.index("{") :])
    assert {"cider", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l"} <= set(printed)
    assert printed["n_images"] == 5
    expected = score_caption_files(predictions, annotations)
    assert (
        printed["cider"] == pytest.approx(expected["cider"]) and printed["cider"] > 1.0
    )  # a human caption scores high
    assert "chair_i" not in printed  # no --instances, no CHAIR


def test_score_captions_with_instances_rescores_chair_from_files(coco_dir, tmp_path):
    """CHAIR from files alone: the slice's 79 annotated images, first human caption as the candidate and
    the other four as the references; the reference chair.py's counts (see tests/tasks/test_chair.py)."""
    coco = json.loads((coco_dir / "annotations/captions_val2017.json").read_text())
    instances = coco_dir / "annotations/instances_val2017.json"
    annotated = {im["id"] for im in json.loads(instances.read_text())["images"]}
    candidates, references = {}, []
    for ann in coco["annotations"]:
        if ann["image_id"] in annotated:
            if ann["image_id"] in candidates:
                references.append(ann)
            else:
                candidates[ann["image_id"]] = ann["caption"]
    predictions = tmp_path / "results.json"
    predictions.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in candidates.items()]))
    annotations = tmp_path / "captions.json"
    images = [im for im in coco["images"] if im["id"] in annotated]
    annotations.write_text(json.dumps({"images": images, "annotations": references}))
    result = CliRunner().invoke(
        main,
        [
            "score",
            "captions",
            "--predictions",
            str(predictions),
            "--annotations",
            str(annotations),
            "--instances",
            str(instances),
        ],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output[result.output.index("{") :])
    assert printed["n_images"] == printed["chair_n_images"] == 79
    assert (printed["chair_n_hallucinated"], printed["chair_n_mentions"]) == (4, 131)
    assert (printed["chair_n_recalled"], printed["chair_n_objects"]) == (125, 310)
    assert printed["chair_i"] == 4 / 131 and printed["chair_s"] == 4 / 79
    assert printed["object_recall"] == 125 / 310


def test_quantized_run_logs_what_really_loaded(tiny_vlm_dirs, coco_dir):
    """int8 preset end to end: realized precision per role, precision map, smaller checkpoint."""
    sizes = {}
    for quant in ("fp16", "int8"):
        cfg = ExperimentConfig.from_mapping(
            dict(
                model=str(tiny_vlm_dirs["qwen2_vl"]),
                data_dir=str(coco_dir),
                quant=quant,
                n_samples=2,
                batch_size=2,
                max_new_tokens=3,
                log_model=False,
                **FAST_COST,
            )
        )
        tracker = InMemoryTracker()
        run_experiment(prepare_experiment(cfg), tracker, progress=False)
        sizes[quant] = tracker.metrics["size_on_disk_mib"]
        realized = tracker.params["realized_precision_language"]
        assert realized.startswith("int8" if quant == "int8" else "fp32"), realized
        assert tracker.params["realized_precision_vision"].startswith("fp32")  # CPU: 16-bit roles run in fp32
        precision_map = tracker.artifacts["precision/precision_map.json"]
        assert set(precision_map["roles"]) == {"vision", "projector", "language", "lm_head"}
    assert tracker.params["quantizer_language"].startswith("bitsandbytes")
    assert sizes["int8"] < sizes["fp16"]
