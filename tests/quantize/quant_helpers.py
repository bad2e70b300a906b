"""Shared by the quantization tests (imported as ``quant_helpers``): load, quantize, caption a tiny VLM."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vlm_quant.engines.generate import GenerationSettings, generate, single_image_request
from vlm_quant.models.loading import load_vlm
from vlm_quant.quantize.backends import apply_plan
from vlm_quant.quantize.presets import resolve_plan

CPU = torch.device("cpu")
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def load_tiny(path, dtype=torch.float32, device="cpu"):
    return load_vlm(str(path), dtype=dtype, device=device)


def quantized(path, quant="fp16", override="", *, dtype=torch.float32, device="cpu", **knobs):
    """(loaded, plan, applied) for the tiny model at ``path`` under preset ``quant`` + ``override``."""
    plan = resolve_plan(quant, override)
    loaded = load_tiny(path, dtype, device)
    applied = apply_plan(loaded.model, loaded.family, plan, device=device, compute_dtype=dtype, **knobs)
    return loaded, plan, applied


def caption(loaded, dtype=torch.float32, new_tokens=4):
    """Greedy new tokens for one blank 64x48 image (the tiny models' words are w0, w1, ...)."""
    request = single_image_request(Image.new("RGB", (64, 48)), "Describe the image")
    return generate(loaded.model, loaded.processor, [request], GenerationSettings(new_tokens), dtype=dtype)
