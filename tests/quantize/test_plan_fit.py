"""Structural plan checks on models without weights (meta device)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlm_quant.errors import UserError
from vlm_quant.quantize.calibrated import autoround_skipped_layers
from vlm_quant.quantize.plan_fit import autoround_group_size


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
