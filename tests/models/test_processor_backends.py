"""The torchvision image processors stay within a stated distance of the PIL ones on real COCO images.

Tolerances (normalised pixel units) sit above what benchmarks/processor_agreement.py measured on 32
COCO images (README, "Image processors"), so a backend that resized differently (another filter,
another size) fails: SmolVLM mean 1.4e-4 / max 0.031, Qwen2-VL 1.5e-3 / 0.33, LLaVA 5.0e-5 / 0.030.
"""

from __future__ import annotations

import pytest

from vlm_quant.models.processor_agreement import pixel_agreement
from vlm_quant.tasks.captioning_data import downscale

pytest.importorskip("torchvision", reason="the torchvision image processors need torchvision")

TOLERANCES = {  # model: (mean abs diff, max abs diff)
    "HuggingFaceTB/SmolVLM-256M-Instruct": (5e-4, 0.05),
    "Qwen/Qwen2-VL-2B-Instruct": (5e-3, 0.5),
    "llava-hf/llava-1.5-7b-hf": (2e-4, 0.05),
}


@pytest.fixture(scope="module")
def images(coco_dir):
    from PIL import Image

    files = sorted((coco_dir / "val2017").glob("*.jpg"))[:6]
    return [downscale(Image.open(path).convert("RGB"), 1024) for path in files]


@pytest.mark.parametrize("model_id", list(TOLERANCES))
def test_torchvision_pixels_are_within_the_stated_tolerance_of_pil(model_id, images):
    agreement = pixel_agreement(model_id, images)
    mean_tolerance, max_tolerance = TOLERANCES[model_id]
    assert agreement.same_shape == len(images)  # same tiles / patches: the same image-token counts
    assert 0 < agreement.mean_abs_diff < mean_tolerance  # > 0: two backends really ran
    assert agreement.max_abs_diff < max_tolerance
