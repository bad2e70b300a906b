"""An offline evaluate with quant=int8-vision-ort on a tiny SmolVLM: the ORT audit, size on disk and
fidelity metrics in the run."""

from __future__ import annotations

import pytest

from vlm_quant.config import ExperimentConfig
from vlm_quant.run.runner import prepare_experiment, run_experiment
from vlm_quant.tracking import run_schema
from vlm_quant.tracking.tracker import InMemoryTracker

pytest.importorskip("onnxruntime")
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
def test_ort_evaluate_logs_audit_size_and_fidelity(quant, tiny_vlm_dirs, coco_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("VLMQ_ONNX_CACHE", str(tmp_path / "onnx"))
    cfg = ExperimentConfig.from_mapping(
        dict(model=str(tiny_vlm_dirs["idefics3"]), data_dir=str(coco_dir), quant=quant, **FAST)
    )
    tracker = InMemoryTracker()
    summary = run_experiment(prepare_experiment(cfg), tracker, progress=False)
    assert summary.n_predictions == 3 and "cider" in tracker.metrics
    precision = "ort-int8" if quant == "int8-vision-ort" else "ort-int8-static"
    params = tracker.params
    assert params["realized_precision_vision"] == precision
    assert params["quantizer_vision"].startswith("onnxruntime")
    assert params["ort_execution_provider"] == "CPUExecutionProvider"
    vision = tracker.artifacts[run_schema.ARTIFACT_PRECISION_MAP]["modules"]["model.vision_model"]
    assert vision["weight_type"] == "onnxruntime.InferenceSession(CPUExecutionProvider)"
    assert any(t["dtype"] == "int8" and t["bytes"] > 0 for t in vision["tensors"])
    # Size on disk counts the ONNX file: at least the file itself plus the torch roles.
    assert tracker.metrics["size_on_disk_mib"] > vision["bytes"] / 2**20
    assert set(run_schema.FIDELITY_METRICS) <= set(tracker.metrics)
    assert 0.0 < tracker.metrics["fidelity_vision_cosine_token_mean"] < 1.0
    if quant == "int8-vision-ort-static":
        calibration = {int(i) for i in params["ort_calibration_ids"].split(",")}
        evaluated = set(tracker.artifacts[run_schema.ARTIFACT_IDS]["ids"])
        assert len(calibration) == 2 and not calibration & evaluated
        assert params["ort_calibration_method"] == "minmax"
