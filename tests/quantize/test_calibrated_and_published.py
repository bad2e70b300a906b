"""Calibrated PTQ (AutoRound on the language model) and published quantized checkpoints (compressed-tensors).

Both run end to end on a tiny VLM and the real COCO slice on CPU: the language model's linears hold the
library's quantized layers, the audit says so, the run finishes, and what was calibrated on is logged.
"""

from __future__ import annotations

import json

import pytest
import torch

from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.run.runner import prepare_experiment, run_experiment
from vlm_quant.tasks.calibration_split import calibration_ids, require_calibration_ids
from vlm_quant.tracking.tracker import InMemoryTracker

pytest.importorskip("auto_round", reason="auto-round is not installed (pip install 'vlm-quant[quant]')")
FAST = dict(
    n_samples=3,
    batch_size=3,
    max_new_tokens=4,
    cost_samples=1,
    cost_iterations=1,
    cost_warmup=0,
    cost_new_tokens=2,
    idle_seconds=0,
    log_model=False,
)


def _run(model_dir, coco_dir, **overrides):
    cfg = ExperimentConfig.from_mapping(
        dict(model=str(model_dir), data_dir=str(coco_dir), **FAST, **overrides)
    )
    tracker = InMemoryTracker()
    run_experiment(prepare_experiment(cfg), tracker, progress=False)
    return tracker


@pytest.mark.parametrize("iters", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_autoround_quantizes_the_language_model_and_the_audit_says_so(tiny_vlm_dirs, coco_dir, iters):
    tracker = _run(
        tiny_vlm_dirs["idefics3"], coco_dir, quant="ar-w4", ar_iters=iters, ar_calibration_samples=2
    )
    p, m = tracker.params, tracker.metrics
    assert p["realized_precision_language"] == "ar-w4"  # every language linear is AutoRound's QuantLinear
    assert p["realized_precision_vision"] == p["realized_precision_projector"] == "bf16"  # kept 16-bit
    assert p["ar_group_size"] == "64"  # auto: 128 does not divide the tiny model's 64-wide linears
    assert p["quantizer_language"] == "auto-round" and p["ar_iters"] == str(iters) and p["ar_bits"] == "4"
    assert p["dtype"] == "bfloat16"  # AutoRound's reloaded kernels are 16-bit; the run says so
    assert m["quantize_s"] > 0 and m["quantize_peak_rss_mib"] > 0
    language = tracker.artifacts["precision/precision_map.json"]["roles"]["language"]
    assert language["linear_precisions"] == {"ar-w4": language["n_linears"]} and language["n_linears"] == 14
    # 4-bit packed weights + group scales: well under a quarter of the fp32 bytes... but above an eighth
    assert 1 / 8 < language["linear_bytes"] / (language["linear_params"] * 4) < 1 / 4
    calibration = tracker.artifacts["split/calibration_ids.json"]
    evaluated = tracker.artifacts["split/ids.json"]["ids"]
    if iters == 0:
        assert calibration["ids"] == [] and p["ar_mode"] == "data-free round-to-nearest"
    else:
        assert len(calibration["ids"]) == 2 and p["ar_calibration_n"] == "2" and p["ar_mode"] == "SignRound"
        assert not set(calibration["ids"]) & set(evaluated)
    assert m["n_samples_evaluated"] == 3


def test_group_size_divides_every_width_or_is_refused():
    from vlm_quant.quantize.calibrated import resolve_group_size

    assert resolve_group_size(-1, [576, 1536]) == 64  # SmolVLM-256M's language model
    assert resolve_group_size(-1, [2048, 8192]) == 128 and resolve_group_size(-1, [100]) == 4
    assert resolve_group_size(32, [576, 1536]) == 32
    with pytest.raises(UserError, match="ar_group_size=128 does not divide.*576"):
        resolve_group_size(128, [576, 1536])


def test_calibration_ids_are_seeded_and_never_evaluated_nor_the_same_image():
    class Sample:
        def __init__(self, image_file):
            self.image_file = image_file

    samples = {i: Sample(f"{i // 2}.jpg") for i in range(40)}  # two questions per image
    evaluated = [0, 5, 10]
    first = calibration_ids(samples, evaluated, 8, seed=1)
    assert (
        first == calibration_ids(samples, evaluated, 8, seed=1) != calibration_ids(samples, evaluated, 8, 2)
    )
    banned_images = {samples[i].image_file for i in evaluated}
    assert len(first) == 8 and not {samples[i].image_file for i in first} & banned_images
    everything = calibration_ids(samples, evaluated, 1000, seed=1)  # one question per remaining image
    assert sorted(samples[i].image_file for i in everything) == sorted(
        {s.image_file for s in samples.values()} - banned_images
    )
    assert calibration_ids(samples, list(samples), 4, seed=0) == []
    with pytest.raises(UserError, match="AutoRound needs calibration images.*all 40 samples"):
        require_calibration_ids(samples, list(samples), 4, seed=0, quantizer="AutoRound")


def test_autoround_only_applies_to_the_language_role():
    from vlm_quant.quantize.presets import resolve_plan

    with pytest.raises(UserError, match="ar-w4 applies only to role"):
        resolve_plan("fp16", "vision=ar-w4")


@pytest.fixture(scope="module")
def compressed_tensors_checkpoint(tiny_vlm_dirs, tmp_path_factory):
    """The tiny idefics3's language model in compressed-tensors W4A16 (pack-quantized), made with the
    library's own API: apply a quantization config, set group scales from the weights, compress, save."""
    pytest.importorskip("compressed_tensors")
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (
        QuantizationArgs,
        QuantizationConfig,
        QuantizationScheme,
        QuantizationStatus,
        apply_quantization_config,
    )
    from compressed_tensors.quantization.utils import calculate_qparams

    from vlm_quant.models.loading import load_vlm

    loaded = load_vlm(str(tiny_vlm_dirs["idefics3"]), dtype=torch.float32, device="cpu")
    args = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=32)
    config = QuantizationConfig(
        config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=args)},
        ignore=["lm_head", "re:.*vision_model.*", "re:.*connector.*"],
        format="pack-quantized",
    )
    apply_quantization_config(loaded.model, config)
    for module in loaded.model.modules():
        if hasattr(module, "weight_scale"):
            groups = module.weight.detach().reshape(module.weight.shape[0], -1, 32)
            scale, zero = calculate_qparams(groups.amin(-1), groups.amax(-1), args)
            module.weight_scale.data = scale.reshape(module.weight_scale.shape).to(module.weight_scale.dtype)
            module.weight_zero_point.data = zero.reshape(module.weight_zero_point.shape).to(torch.int8)
            module.quantization_status = QuantizationStatus.FROZEN
    compressor = ModelCompressor.from_pretrained_model(loaded.model, quantization_format="pack-quantized")
    compressor.compress_model(loaded.model)
    out = tmp_path_factory.mktemp("ct-w4a16")
    loaded.model.save_pretrained(out)
    loaded.processor.save_pretrained(out)
    compressor.update_config(out)
    assert (
        json.loads((out / "config.json").read_text())["quantization_config"]["quant_method"]
        == "compressed-tensors"
    )
    return out


def test_prequantized_checkpoint_loads_as_published_and_is_audited(compressed_tensors_checkpoint, coco_dir):
    tracker = _run(compressed_tensors_checkpoint, coco_dir, quant="prequantized")
    p = tracker.params
    assert p["realized_precision_language"] == "ct-w4a16"  # never re-quantized: what the checkpoint holds
    assert p["realized_precision_vision"] == "fp32" and p["realized_precision_lm_head"] == "fp32"
    assert p["prequantized_method"] == "compressed-tensors" and p["prequantized_format"] == "pack-quantized"
    assert p["precision_language"] == "checkpoint" and "quantizer_language" not in p
    roles = tracker.artifacts["precision/precision_map.json"]["roles"]
    assert roles["language"]["linear_precisions"] == {"ct-w4a16": 14}
    assert tracker.metrics["n_samples_evaluated"] == 3


def test_prequantized_refuses_a_checkpoint_without_a_quantization_config(tiny_vlm_dirs, coco_dir):
    cfg = ExperimentConfig.from_mapping(
        dict(model=str(tiny_vlm_dirs["idefics3"]), data_dir=str(coco_dir), quant="prequantized", **FAST)
    )
    with pytest.raises(UserError, match="has none \\(it is not quantized\\)"):
        prepare_experiment(cfg)


def test_prequantized_names_the_missing_package(compressed_tensors_checkpoint, coco_dir, monkeypatch):
    from vlm_quant.quantize import prequantized

    # As if compressed-tensors were not installed: its import name resolves to nothing.
    monkeypatch.setitem(
        prequantized.METHOD_PACKAGES, "compressed-tensors", ("no_such_module_x", "compressed-tensors")
    )
    cfg = ExperimentConfig.from_mapping(
        dict(model=str(compressed_tensors_checkpoint), data_dir=str(coco_dir), quant="prequantized", **FAST)
    )
    with pytest.raises(
        UserError, match="needs the package 'compressed-tensors'.*pip install compressed-tensors"
    ):
        prepare_experiment(cfg)
