"""Fidelity to the unquantized model: exactly 1 / 0 when nothing changed, strictly worse when quantized."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from quant_helpers import load_tiny

from vlm_quant.engines.generate import GenerationSettings, prepare_inputs, single_image_request
from vlm_quant.quantize import fidelity
from vlm_quant.quantize.backends import apply_plan
from vlm_quant.quantize.presets import resolve_plan


def _inputs(loaded, n=2):
    images = [Image.new("RGB", (64, 48), (40 * i, 200 - 30 * i, 90)) for i in range(n)]
    requests = [single_image_request(image, "Describe the image") for image in images]
    return [
        prepare_inputs(
            loaded.processor,
            [r],
            device=torch.device("cpu"),
            dtype=torch.float32,
            settings=GenerationSettings(4),
        )
        for r in requests
    ]


@pytest.mark.parametrize("family", ["idefics3", "qwen2_vl"])
def test_unquantized_plan_is_identical_and_quantized_is_strictly_worse(tiny_vlm_dirs, family):
    loaded = load_tiny(tiny_vlm_dirs[family])
    inputs = _inputs(loaded)
    reference = fidelity.capture(loaded.model, loaded.family, inputs)
    assert {"vision", "projector"} <= set(reference[0].roles)

    apply_plan(loaded.model, loaded.family, resolve_plan("fp16"), device="cpu", compute_dtype=torch.float32)
    same = fidelity.compare(reference, fidelity.capture(loaded.model, loaded.family, inputs))
    assert same["fidelity_vision_cosine"] == pytest.approx(1.0, abs=1e-12)
    assert same["fidelity_projector_cosine"] == pytest.approx(1.0, abs=1e-12)
    assert same["fidelity_logits_kl"] == 0.0
    assert same["fidelity_top1_agreement"] == 1.0

    plan = resolve_plan("fp16", "vision=w8a8,projector=w8a8,language=w8a8")
    apply_plan(loaded.model, loaded.family, plan, device="cpu", compute_dtype=torch.float32)
    moved = fidelity.compare(reference, fidelity.capture(loaded.model, loaded.family, inputs))
    assert moved["fidelity_vision_cosine"] < 1.0 - 1e-9
    assert moved["fidelity_projector_cosine"] < 1.0 - 1e-9
    assert moved["fidelity_logits_kl"] > 0.0
    assert 0.0 <= moved["fidelity_top1_agreement"] <= 1.0


def test_metric_formulas_against_torch_references():
    generator = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(50, generator=generator, dtype=torch.float64),
        torch.randn(50, generator=generator, dtype=torch.float64),
    )
    assert fidelity.cosine(a, b) == pytest.approx(float(torch.nn.functional.cosine_similarity(a, b, dim=0)))
    assert fidelity.cosine(a, -a) == pytest.approx(-1.0)
    expected = torch.nn.functional.kl_div(
        torch.log_softmax(b, 0), torch.log_softmax(a, 0), log_target=True, reduction="sum"
    )
    assert fidelity.kl_divergence(a, b) == pytest.approx(float(expected))
    ref = [fidelity.Outputs({}, torch.tensor([0.0, 2.0, 1.0], dtype=torch.float64))] * 2
    out = [
        fidelity.Outputs({}, torch.tensor([0.0, 2.0, 1.0], dtype=torch.float64)),
        fidelity.Outputs({}, torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)),
    ]
    metrics = fidelity.compare(ref, out)
    assert metrics["fidelity_top1_agreement"] == 0.5
    assert metrics["fidelity_vision_cosine"] is None  # no vision output: absent, not 0 or 1
