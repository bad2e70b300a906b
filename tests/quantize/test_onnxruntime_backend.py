"""The ONNX Runtime vision role on a tiny SmolVLM (idefics3): export, dynamic and static INT8, the
session standing in for the tower, calibration disjoint from the evaluated ids, audit and size on disk."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from quant_helpers import load_tiny

from vlm_quant.engines.generate import GenerationSettings, generate, prepare_inputs, single_image_request
from vlm_quant.errors import UserError
from vlm_quant.quantize import fidelity, onnx_export
from vlm_quant.quantize.audit import audit_precision, verify_plan
from vlm_quant.quantize.backends import apply_plan, check_plan_runnable
from vlm_quant.quantize.onnxruntime_backend import OrtSettings, OrtVisionModule, onnx_bytes_by_dtype
from vlm_quant.quantize.presets import resolve_plan
from vlm_quant.tasks.calibration_split import calibration_ids

pytest.importorskip("onnxruntime")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def _onnx_cache(tmp_path_factory):
    """One export cache for the module (the float32 export is shared, as in real runs), never ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLMQ_ONNX_CACHE", str(tmp_path_factory.mktemp("onnx-cache")))
        yield


def _inputs(loaded, colours):
    requests = [single_image_request(Image.new("RGB", (64, 48), c), "Describe the image") for c in colours]
    return [
        prepare_inputs(loaded.processor, [r], device=CPU, dtype=torch.float32, settings=GenerationSettings(3))
        for r in requests
    ]


def _settings(loaded, calibration_colours=((10, 200, 30), (250, 250, 0))):
    vision = loaded.family.roles["vision"][0]
    example = onnx_export.capture_vision_inputs(loaded.model, vision, _inputs(loaded, [(90, 90, 90)])[0])
    calibration = tuple(
        onnx_export.capture_vision_inputs(loaded.model, vision, batch)
        for batch in _inputs(loaded, calibration_colours)
    )
    return OrtSettings(example, calibration, (101, 102), "minmax", "cpu", {"model": "tiny-idefics3-test"})


@pytest.mark.parametrize(
    "precision, min_cosine", [("ort-fp32", 0.999999), ("ort-int8", 0.95), ("ort-int8-static", 0.9)]
)
def test_ort_vision_tower_matches_torch_and_generates(tiny_vlm_dirs, precision, min_cosine):
    loaded = load_tiny(tiny_vlm_dirs["idefics3"])
    inputs = _inputs(loaded, [(200, 30, 30), (30, 30, 200)])
    sequences = [fidelity.continue_greedily(loaded.model, loaded.processor, x, 3) for x in inputs]
    reference = [fidelity.capture(loaded.model, loaded.family, s) for s in sequences]
    plan = resolve_plan("fp16", f"vision={precision}")
    check_plan_runnable(plan, CPU, "cpu")
    applied = apply_plan(
        loaded.model, loaded.family, plan, device=CPU, compute_dtype=torch.float32, ort=_settings(loaded)
    )
    assert isinstance(loaded.model.model.vision_model, OrtVisionModule)
    assert applied.roles["vision"].settings["ort_execution_provider"] == "CPUExecutionProvider"
    after = [fidelity.capture(loaded.model, loaded.family, s) for s in sequences]
    metrics = fidelity.compare(reference, after)
    assert metrics["fidelity_vision_cosine_token_mean"] >= min_cosine
    if precision != "ort-fp32":
        assert metrics["fidelity_vision_cosine_token_mean"] < 1.0 - 1e-9  # int8 changed the tower's output
    else:
        assert metrics["fidelity_logits_kl_nats_token_mean"] < 1e-6
    out = generate(
        loaded.model,
        loaded.processor,
        [single_image_request(Image.new("RGB", (64, 48)), "Describe")],
        GenerationSettings(3),
        dtype=torch.float32,
    )
    assert out.new_tokens[0] >= 1

    precision_map = audit_precision(loaded.model, loaded.family, plan)
    verify_plan(plan, precision_map, dtype=torch.float32)
    vision = precision_map.roles()["vision"]
    assert vision.realized == precision
    path = loaded.model.model.vision_model.onnx_path
    assert vision.bytes == path.stat().st_size
    by_dtype, _ = onnx_bytes_by_dtype(path)
    record = precision_map.modules["model.vision_model"]
    assert {t.dtype: t.bytes for t in record.tensors} == by_dtype
    if precision == "ort-fp32":
        assert set(by_dtype) <= {"float32", "int64", "bool", "int32"}
    else:
        assert by_dtype.get("int8", 0) > by_dtype.get("float32", 0)  # the weights are int8 now


def test_exports_are_cached_by_key(tiny_vlm_dirs):
    loaded = load_tiny(tiny_vlm_dirs["idefics3"])
    settings = _settings(loaded)
    plan = resolve_plan("int8-vision-ort")
    apply_plan(loaded.model, loaded.family, plan, device=CPU, compute_dtype=torch.float32, ort=settings)
    first = loaded.model.model.vision_model.onnx_path
    stamp = first.stat().st_mtime_ns
    again = load_tiny(tiny_vlm_dirs["idefics3"])
    apply_plan(again.model, again.family, plan, device=CPU, compute_dtype=torch.float32, ort=settings)
    assert again.model.model.vision_model.onnx_path == first and first.stat().st_mtime_ns == stamp
    other = OrtSettings(settings.example, (), (), "minmax", "cpu", {"model": "another"})
    third = load_tiny(tiny_vlm_dirs["idefics3"])
    apply_plan(third.model, third.family, plan, device=CPU, compute_dtype=torch.float32, ort=other)
    assert third.model.model.vision_model.onnx_path != first


def test_calibration_ids_are_seeded_and_disjoint_from_evaluated_images():
    samples = {i: SimpleNamespace(image_file=f"img{i // 2}.jpg") for i in range(40)}  # 2 questions per image
    data = SimpleNamespace(samples=samples, ids=[0, 1, 2, 7, 30])
    ids = calibration_ids(data.samples, data.ids, 6, seed=3)
    evaluated_images = {samples[i].image_file for i in data.ids}
    assert len(ids) == 6 and not {samples[i].image_file for i in ids} & evaluated_images
    assert len({samples[i].image_file for i in ids}) == 6  # one question per image
    again, other = (calibration_ids(data.samples, data.ids, 6, seed) for seed in (3, 4))
    assert ids == again != other


def test_ort_precision_on_another_role_or_a_missing_provider_is_a_clear_error():
    with pytest.raises(UserError, match="vision role only"):
        check_plan_runnable(resolve_plan("fp16", "language=ort-int8"), CPU)
    with pytest.raises(UserError, match="onnxruntime-gpu"):
        check_plan_runnable(resolve_plan("int8-vision-ort"), CPU, "tensorrt")


def test_cpu_fast_mixes_onnxruntime_and_torchao_and_audits_both(tiny_vlm_dirs):
    loaded = load_tiny(tiny_vlm_dirs["idefics3"])
    plan = resolve_plan("cpu-fast")
    check_plan_runnable(plan, CPU)
    applied = apply_plan(
        loaded.model, loaded.family, plan, device=CPU, compute_dtype=torch.float32, ort=_settings(loaded)
    )
    assert {r: a.backend for r, a in applied.roles.items()} == {
        "vision": "onnxruntime",
        "language": "torchao",
    }
    precision_map = audit_precision(loaded.model, loaded.family, plan)
    verify_plan(plan, precision_map, dtype=torch.float32)
    assert precision_map.role_params()["realized_precision_language"] == "int8wo"
