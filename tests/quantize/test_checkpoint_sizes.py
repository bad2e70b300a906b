"""Size on disk is the size at the loaded precision, or None with the reason: never a wrong number."""

from __future__ import annotations

import json

import pytest
from quant_helpers import quantized
from safetensors import safe_open

from vlm_quant.models import checkpoint
from vlm_quant.models.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def saved(tiny_vlm_dirs, tmp_path_factory):
    """SavedCheckpoint per preset for the tiny Qwen2-VL (tied lm_head, fp32 on CPU)."""
    out = {}
    for preset in ("fp16", "int8", "nf4", "int8-ao", "w8a8-ao"):
        loaded, _, _ = quantized(tiny_vlm_dirs["qwen2_vl"], preset)
        out[preset] = save_checkpoint(loaded.model, loaded.processor, tmp_path_factory.mktemp(preset))
    return out


def test_quantized_checkpoints_are_smaller_and_hold_quantized_tensors(saved):
    for preset, result in saved.items():
        assert result.reason is None and result.weights_mib is not None, preset
    fp32 = saved["fp16"]  # fp16 requested, float32 on CPU
    assert set(fp32.bytes_by_dtype) == {"F32"}
    assert saved["int8"].weights_mib < fp32.weights_mib
    assert saved["int8"].bytes_by_dtype["I8"] > 0 and saved["nf4"].bytes_by_dtype["U8"] > 0
    assert saved["nf4"].weights_mib < saved["int8"].weights_mib
    for preset in ("int8-ao", "w8a8-ao"):
        assert saved[preset].writer == "torchao.flatten_tensor_state_dict+safetensors"
        assert saved[preset].bytes_by_dtype["I8"] > 0
        assert saved[preset].weights_mib < fp32.weights_mib


def test_quantized_language_shrinks_to_a_quarter_of_fp32_on_disk(saved):
    """The tiny model's 14 language linears hold 73,728 weights in 1,024 rows: 4 bytes per weight in
    fp32; in int8 1 byte per weight plus one fp32 scale per row."""
    fp32_bytes_freed = saved["fp16"].bytes_by_dtype["F32"] - saved["int8"].bytes_by_dtype["F32"]
    assert saved["int8"].bytes_by_dtype["I8"] == 73_728
    assert fp32_bytes_freed == 73_728 * 4 - 1_024 * 4


def test_torchao_checkpoint_round_trips_through_torchao(saved):
    from torchao.prototype.safetensors.safetensors_support import unflatten_tensor_state_dict

    path = saved["int8-ao"].path / "model.safetensors"
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    state, leftover = unflatten_tensor_state_dict(tensors, metadata)
    assert not leftover
    assert type(state["model.language_model.layers.0.mlp.up_proj.weight"]).__name__ == "Int8Tensor"
    manifest = json.loads((saved["int8-ao"].path / checkpoint.MANIFEST).read_text())
    assert manifest["modules"]["model.language_model.layers.0.mlp.up_proj"]["precision"] == "int8wo"
    assert not (saved["fp16"].path / checkpoint.MANIFEST).exists()


def test_a_serialiser_that_dequantizes_gives_no_size(tiny_vlm_dirs, tmp_path):
    reference, _, _ = quantized(tiny_vlm_dirs["idefics3"])
    loaded, _, _ = quantized(tiny_vlm_dirs["idefics3"], "int8")
    loaded.model.save_pretrained = reference.model.save_pretrained  # writes fp32 weights
    result = save_checkpoint(loaded.model, loaded.processor, tmp_path)
    assert result.weights_mib is None
    assert "did not keep the loaded precision" in result.reason


def test_a_serialiser_that_fails_gives_the_reason(tiny_vlm_dirs, tmp_path, monkeypatch):
    def refuse(model, out_dir):
        raise RuntimeError("Attempted to access the data pointer on an invalid python storage.")

    monkeypatch.setattr(checkpoint, "_write_weights", refuse)
    loaded, _, _ = quantized(tiny_vlm_dirs["idefics3"], "int8-ao")
    result = save_checkpoint(loaded.model, loaded.processor, tmp_path)
    assert result.weights_mib is None and "invalid python storage" in result.reason


def test_torch_save_fallback_is_measured(tiny_vlm_dirs, tmp_path, monkeypatch):
    """Without torchao's safetensors support the state dict is pickled, and still measured honestly."""
    import torchao.prototype.safetensors.safetensors_support as support

    monkeypatch.delattr(support, "flatten_tensor_state_dict")
    loaded, _, _ = quantized(tiny_vlm_dirs["idefics3"], "int8-ao")
    result = save_checkpoint(loaded.model, loaded.processor, tmp_path)
    assert result.writer == "torch.save" and result.reason is None
    assert (tmp_path / "model.pt").exists() and result.weights_mib is not None
