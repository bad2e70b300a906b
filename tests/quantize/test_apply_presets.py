"""Every preset that runs on CPU applies to the tiny VLMs, generates, and audits exactly as planned."""

from __future__ import annotations

import json

import pytest
import torch
from quant_helpers import CPU, caption, gpu, needs_cuda, quantized

from vlm_quant.models.checkpoint import save_checkpoint
from vlm_quant.quantize.audit import audit_precision, verify_plan
from vlm_quant.quantize.backends import check_plan_runnable
from vlm_quant.quantize.presets import PRESETS, ROLES, resolve_plan

# The families of the two benchmark models (SmolVLM, Qwen2-VL) run the full preset matrix; every
# family runs two mixed plans that, between them, put each backend and each quantized precision on
# each role kind (two backends in one model included).
MIXED = ("vision=int8,projector=nf4,language=int8wo", "vision=nf4,language=w8a8")
# Presets applied in place after loading (linear layers swapped by bitsandbytes/torchao). Calibrated
# (AutoRound) and prequantized ones replace the model (test_calibrated_and_published.py); ONNX Runtime
# presets need example inputs (OrtSettings: test_onnxruntime_backend.py); gguf-* presets leave torch
# (tests/run/test_llama_cpp_run.py).
IN_PLACE = [
    name
    for name in PRESETS
    if not resolve_plan(name).calibrated_roles
    and not resolve_plan(name).prequantized
    and "onnxruntime" not in resolve_plan(name).backends().values()
    and resolve_plan(name).engine == "torch"
]
CASES = [(family, preset, "") for family in ("idefics3", "qwen2_vl") for preset in IN_PLACE] + [
    (family, "fp16", override)
    for family in ("idefics3", "qwen2_vl", "qwen2_5_vl", "llava")
    for override in MIXED
]


@pytest.mark.parametrize("family, preset, override", CASES)
def test_plan_applies_generates_and_audits_as_planned(tiny_vlm_dirs, family, preset, override):
    plan = resolve_plan(preset, override)
    check_plan_runnable(plan, CPU)  # everything we ship runs on CPU with bnb >= 0.46 and torchao 0.18
    loaded, plan, applied = quantized(tiny_vlm_dirs[family], preset, override)

    out = caption(loaded)
    assert out.new_tokens[0] >= 1 and isinstance(out.texts[0], str)

    precision_map = audit_precision(loaded.model, loaded.family, plan)
    verify_plan(plan, precision_map, dtype=torch.float32)
    realized = precision_map.role_params()
    for role, precision in plan.roles.items():
        expected = "fp32" if precision in ("fp16", "bf16") else precision  # CPU runs 16-bit roles in fp32
        assert realized[f"realized_precision_{role}"] == expected, role
    assert set(applied.roles) == set(plan.quantized_roles)
    for role, applied_role in applied.roles.items():
        n_linears = precision_map.roles()[role].n_linears
        assert applied_role.module_count == n_linears > 0
        assert applied.to_params()[f"quantized_linears_{role}"] == n_linears
    json.loads(precision_map.to_json())  # the artifact is valid JSON


def test_quantization_keeps_the_logical_parameter_count(tiny_vlm_dirs):
    """Packed 4-bit weights hold two weights per byte: the audit counts weights, not bytes."""
    reference, plan, _ = quantized(tiny_vlm_dirs["llava"])
    counts = audit_precision(reference.model, reference.family, plan).to_dict()["roles"]
    for override in MIXED:
        loaded, plan, _ = quantized(tiny_vlm_dirs["llava"], "fp16", override)
        roles = audit_precision(loaded.model, loaded.family, plan).to_dict()["roles"]
        assert {r: roles[r]["params"] for r in ROLES} == {r: counts[r]["params"] for r in ROLES}
    assert sum(counts[r]["params"] for r in ROLES) == sum(p.numel() for p in reference.model.parameters())


def test_applied_plan_records_settings_as_params(tiny_vlm_dirs):
    loaded, plan, applied = quantized(
        tiny_vlm_dirs["idefics3"], "int8", "vision=nf4", int8_threshold=4.5, double_quant=False
    )
    params = applied.to_params()
    assert params["quantizer_language"] == "bitsandbytes.Linear8bitLt"
    assert params["quantizer_vision"] == "bitsandbytes.Linear4bit"
    assert params["int8_threshold"] == 4.5
    assert params["nf4_compute_dtype"] == "float32" and params["nf4_double_quant"] is False
    assert params["nf4_blocksize"] == 64
    assert "bitsandbytes_version" in params and applied.quantize_time_s >= 0
    language = loaded.model.model.text_model.layers[0].self_attn.q_proj
    assert language.state.threshold == 4.5
    vision_weight = loaded.model.model.vision_model.encoder.layers[0].self_attn.q_proj.weight
    assert vision_weight.quant_state.nested is False  # no double quantization asked

    _, _, torchao_applied = quantized(tiny_vlm_dirs["idefics3"], "w8a8-ao")
    assert (
        torchao_applied.to_params()["quantizer_language"] == "torchao.Int8DynamicActivationInt8WeightConfig"
    )


@gpu
@needs_cuda
@pytest.mark.parametrize("preset", ["int8", "int8-all", "nf4", "int8-ao", "w8a8-ao"])
def test_presets_on_cuda_in_fp16(tiny_vlm_dirs, preset, tmp_path):
    plan = resolve_plan(preset)
    check_plan_runnable(plan, torch.device("cuda"))
    loaded, plan, _ = quantized(tiny_vlm_dirs["idefics3"], preset, dtype=torch.float16, device="cuda")
    assert caption(loaded, dtype=torch.float16).new_tokens[0] >= 1
    verify_plan(plan, audit_precision(loaded.model, loaded.family, plan), dtype=torch.float16)
    saved = save_checkpoint(loaded.model, loaded.processor, tmp_path)
    assert saved.reason is None and saved.weights_mib is not None
