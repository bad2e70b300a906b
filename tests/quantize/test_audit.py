"""The audit reads what really loaded, counts bytes as stored, and catches plans that did not take effect."""

from __future__ import annotations

import pytest
import torch
from quant_helpers import caption, quantized

from vlm_quant.quantize import bitsandbytes_backend
from vlm_quant.quantize.audit import PlanNotRealizedError, audit_precision, verify_plan
from vlm_quant.quantize.presets import resolve_plan


def test_a_backend_that_skips_the_modules_is_caught(tiny_vlm_dirs, monkeypatch):
    """As when a skip list or filter is ignored: the plan says int8, the weights stayed float."""
    monkeypatch.setattr(bitsandbytes_backend, "quantize_modules", lambda *args, **kwargs: None)
    loaded, plan, _ = quantized(tiny_vlm_dirs["idefics3"], "int8")
    with pytest.raises(
        PlanNotRealizedError, match=r"role language: planned int8, realized fp32: 0 of 14 linears"
    ):
        verify_plan(plan, audit_precision(loaded.model, loaded.family, plan))


def test_a_role_quantized_that_should_not_be_is_caught(tiny_vlm_dirs):
    loaded, _, _ = quantized(tiny_vlm_dirs["idefics3"], "int8-all")
    plan = resolve_plan("int8")  # says: vision stays 16-bit
    with pytest.raises(
        PlanNotRealizedError, match=r"role vision: planned fp16 \(not quantized\), realized int8: 6 of 6"
    ):
        verify_plan(plan, audit_precision(loaded.model, loaded.family, plan))


def test_partly_quantized_role_is_reported_honestly(tiny_vlm_dirs):
    def first_half_only(model, names, precision, settings):
        original(model, names[: len(names) // 2], precision, settings)

    original = bitsandbytes_backend.quantize_modules
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bitsandbytes_backend, "quantize_modules", first_half_only)
        loaded, plan, _ = quantized(tiny_vlm_dirs["idefics3"], "int8")
    precision_map = audit_precision(loaded.model, loaded.family, plan)
    assert (
        precision_map.role_params()["realized_precision_language"]
        == "int8 (7/14 linears) + fp32 (7/14 linears)"
    )
    with pytest.raises(PlanNotRealizedError, match="7 of 14 linears quantized"):
        verify_plan(plan, precision_map)


def test_load_dtype_is_checked_when_given(tiny_vlm_dirs):
    loaded, plan, _ = quantized(tiny_vlm_dirs["llava"], "int8")
    precision_map = audit_precision(loaded.model, loaded.family, plan)
    verify_plan(plan, precision_map, dtype=torch.float32)
    with pytest.raises(PlanNotRealizedError, match="role vision: planned fp16 loaded as fp16, realized fp32"):
        verify_plan(plan, precision_map, dtype=torch.float16)


def test_int8_linears_take_a_quarter_of_their_fp32_bytes(tiny_vlm_dirs):
    reference, plan, _ = quantized(tiny_vlm_dirs["qwen2_vl"])
    fp32 = audit_precision(reference.model, reference.family, plan).roles()["language"]
    loaded, plan, _ = quantized(tiny_vlm_dirs["qwen2_vl"], "int8")
    int8 = audit_precision(loaded.model, loaded.family, plan).roles()["language"]
    assert int8.linear_params == fp32.linear_params
    assert 0.25 <= int8.linear_bytes / fp32.linear_bytes < 0.30  # 1 byte/weight + fp32 row scales + fp32 bias
    assert int8.other_bytes == fp32.other_bytes  # norms and embeddings untouched
    loaded4, plan4, _ = quantized(tiny_vlm_dirs["qwen2_vl"], "nf4")
    nf4 = audit_precision(loaded4.model, loaded4.family, plan4).roles()["language"]
    assert nf4.linear_bytes < int8.linear_bytes


def test_scales_are_counted_where_they_live(tiny_vlm_dirs):
    """LLM.int8() row scales move from the weight to the layer's matmul state on the first forward."""
    loaded, plan, _ = quantized(tiny_vlm_dirs["idefics3"], "int8")
    layer_name = "model.text_model.layers.0.self_attn.q_proj"
    before = audit_precision(loaded.model, loaded.family, plan).modules[layer_name]
    caption(loaded, new_tokens=1)
    layer = loaded.model.get_submodule(layer_name)
    assert layer.weight.SCB is None and layer.state.SCB is not None  # moved
    after = audit_precision(loaded.model, loaded.family, plan).modules[layer_name]
    assert before.bytes == after.bytes
    rows, cols = layer.weight.shape
    bias = 0 if layer.bias is None else 4 * rows
    assert after.bytes == rows * cols + 4 * rows + bias
    assert after.weight_type == "bitsandbytes.Int8Params(int8)" and after.module_type == "Linear8bitLt"


def test_nf4_bytes_include_the_quantization_state(tiny_vlm_dirs):
    loaded, plan, _ = quantized(tiny_vlm_dirs["idefics3"], "nf4")
    record = audit_precision(loaded.model, loaded.family, plan).modules[
        "model.text_model.layers.0.mlp.up_proj"
    ]
    names = {t.name for t in record.tensors}
    assert {"weight", "weight.quant_state.absmax", "weight.quant_state.state2.absmax"} <= names
    packed = next(t for t in record.tensors if t.name == "weight")
    assert packed.dtype == "uint8" and packed.bytes * 2 == record.params == 128 * 64  # two weights per byte
    assert record.weight_type == "bitsandbytes.Params4bit(nf4)"


def test_precision_map_views(tiny_vlm_dirs):
    loaded, plan, _ = quantized(tiny_vlm_dirs["qwen2_vl"], "int8-ao")
    precision_map = audit_precision(loaded.model, loaded.family, plan)
    data = precision_map.to_dict()
    assert set(data["roles"]) == {"vision", "projector", "language", "lm_head"}
    assert data["roles"]["language"]["realized"] == "int8wo"
    head = data["modules"]["lm_head"]
    assert head["bytes"] == 0 and head["tied_to"] == [
        "lm_head.weight -> model.language_model.embed_tokens.weight"
    ]
    footprint = precision_map.footprint_mib_by_role()
    assert set(footprint) == {
        "weights_mib_vision",
        "weights_mib_projector",
        "weights_mib_language",
        "weights_mib_lm_head",
    }
    assert sum(footprint.values()) * 2**20 == pytest.approx(precision_map.total_bytes())
    assert precision_map.role_params()["realized_other_language"] == "fp32"
    q_proj = data["modules"]["model.language_model.layers.0.self_attn.q_proj"]
    assert q_proj["weight_type"] == "torchao.Int8Tensor"
    assert {t["name"] for t in q_proj["tensors"]} >= {"weight.qdata", "weight.scale"}
