"""Structural plan checks on models without weights (meta device)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlm_quant.errors import UserError
from vlm_quant.quantize.calibrated import autoround_skipped_layers
from vlm_quant.quantize.plan_fit import autoround_group_size, check_ort_exportable


def test_autoround_refuses_linears_it_would_keep_at_16_bit():
    """AutoRound 0.16 keeps int weight-only layers whose width is not a multiple of 32 in 16-bit."""
    assert autoround_skipped_layers({"a": (64, 576), "b": (96, 48), "c": (40, 64)}) == ["b", "c"]
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(64, 128), nn.Linear(128, 48))
    with pytest.raises(UserError, match=r"not a multiple of 32, and 1 of .* linears are such \(e.g. 1\)"):
        autoround_group_size(model, ["0", "1"], -1)
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(64, 128), nn.Linear(96, 64))
    assert autoround_group_size(model, ["0", "1"], -1) == 32  # the largest power of two dividing 64 and 96


class _Tower(nn.Module):
    def __init__(self, forward):
        super().__init__()
        self.vision = nn.Linear(4, 4)
        self.vision.forward = forward


def test_an_ort_tower_whose_inputs_have_no_names_is_refused_before_the_run():
    check_ort_exportable(_Tower(lambda pixel_values, grid_thw=None: None), "vision", "vision=ort-int8")
    with pytest.raises(UserError, match=r"vision=ort-int8 is not possible .* takes \*images"):
        check_ort_exportable(_Tower(lambda *images: None), "vision", "vision=ort-int8")
    qwen_like = _Tower(lambda hidden_states, grid_thw: None)
    check_ort_exportable(qwen_like, "vision", "vision=ort-int8")
    with pytest.raises(UserError, match=r"takes grid_thw.*Use vision=ort-int8 \(dynamic\)"):
        check_ort_exportable(qwen_like, "vision", "vision=ort-int8-static")
