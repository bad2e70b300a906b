"""An offline evaluate with quant=int8-vision-ort on tiny SmolVLM, Qwen2-VL and LLaVA models: the ORT
audit, size on disk, graphs exported and fidelity metrics in the run."""

from __future__ import annotations

import pytest

from vlm_quant.config import ExperimentConfig
from vlm_quant.run.runner import prepare_experiment, run_experiment
from vlm_quant.tracking import run_schema
from vlm_quant.tracking.tracker import InMemoryTracker

pytest.importorskip("onnxruntime")
FAMILIES = [
    ("idefics3", "model.vision_model"),
    ("qwen2_vl", "model.visual"),  # hidden_states + grid_thw; the projector (merger) nested in the tower
    ("llava", "model.vision_tower"),  # CLIP asked for its hidden states
]
FAST = dict(
    n_samples=3,
    batch_size=1,
    max_new_tokens=3,
    cost_samples=2,
    cost_iterations=1,
    cost_warmup=0,
    cost_new_tokens=2,
    idle_seconds=0,
    log_model=False,
    ort_calibration_samples=2,
)


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["int8-vision-ort"])  # static: test_onnxruntime_backend.py (faster)
@pytest.mark.parametrize("family, vision_path", FAMILIES)
def test_ort_evaluate_logs_audit_size_and_fidelity(
    quant, family, vision_path, tiny_vlm_dirs, coco_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("VLMQ_ONNX_CACHE", str(tmp_path / "onnx"))
    n = 3 if family == "idefics3" else 2
    cfg = ExperimentConfig.from_mapping(
        dict(
            model=str(tiny_vlm_dirs[family]), data_dir=str(coco_dir), quant=quant, **{**FAST, "n_samples": n}
        )
    )
    tracker = InMemoryTracker()
    summary = run_experiment(prepare_experiment(cfg), tracker, progress=False)
    assert summary.n_predictions == n and "cider" in tracker.metrics
    precision = "ort-int8" if quant == "int8-vision-ort" else "ort-int8-static"
    params = tracker.params
    assert params["realized_precision_vision"] == precision
    assert params["quantizer_vision"].startswith("onnxruntime")
    assert params["ort_execution_provider"] == "CPUExecutionProvider"
    modules = tracker.artifacts[run_schema.ARTIFACT_PRECISION_MAP]["modules"]
    vision = modules[vision_path]
    assert vision["weight_type"] == "onnxruntime.InferenceSession(CPUExecutionProvider)"
    assert any(t["dtype"] == "int8" and t["bytes"] > 0 for t in vision["tensors"])
    # Size on disk counts the ONNX file: at least the file itself plus the torch roles.
    assert tracker.metrics["size_on_disk_mib"] > vision["bytes"] / 2**20
    assert set(run_schema.FIDELITY_METRICS) <= set(tracker.metrics)
    assert 0.0 < tracker.metrics["fidelity_vision_cosine_token_mean"] < 1.0
    assert tracker.metrics[run_schema.METRIC_ORT_GRAPHS] >= 1  # one per distinct input shape seen
    if family == "qwen2_vl":  # the merger (projector) is inside the exported tower: said, and kept float32
        assert params["ort_exporter"] == "torchscript" and "dynamo" in params["ort_exporter_failures"]
        assert params["ort_graph_includes"] == "model.visual.merger"
        merger = modules["model.visual.merger"]
        assert merger["precision"] == "fp32" and "inside model.visual's graph" in merger["weight_type"]
        assert 0.0 < tracker.metrics["fidelity_projector_cosine_token_mean"] < 1.0
    if quant == "int8-vision-ort-static":
        calibration = {int(i) for i in params["ort_calibration_ids"].split(",")}
        evaluated = set(tracker.artifacts[run_schema.ARTIFACT_IDS]["ids"])
        assert len(calibration) == 2 and not calibration & evaluated
        assert params["ort_calibration_method"] == "minmax"
