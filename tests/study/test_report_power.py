"""Power of a paired comparison: the image-level SE of Δ and the minimum detectable difference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlm_quant.study.report.bootstrap import cluster_codes, paired_bootstrap
from vlm_quant.study.report.power import (
    clustered_standard_error,
    minimum_detectable_difference,
    power_note,
    power_of,
)

# z quantiles from a printed normal table: z_0.975 and z_0.80.
Z_975, Z_80 = 1.959964, 0.841621


def test_image_level_se_by_hand():
    # Four images with 2, 1, 3 and 2 rows; the paired differences of their rows:
    diffs = np.array([1.0, 3.0, 0.0, 2.0, 2.0, 2.0, -1.0, 1.0])
    images = ["A", "A", "B", "C", "C", "C", "D", "D"]
    # By hand: N = 8 rows, Δ = 10 / 8 = 1.25; per image D_c - Δ m_c: 4 - 2.5, 0 - 1.25, 6 - 3.75, 0 - 2.5.
    squares = 1.5**2 + 1.25**2 + 2.25**2 + 2.5**2  # 15.125
    by_hand = math.sqrt(4 / 3 * squares) / 8  # sqrt(C / (C - 1) * sum) / N = 0.5613...
    assert clustered_standard_error(diffs, cluster_codes(images)) == pytest.approx(by_hand)
    estimate = paired_bootstrap(np.zeros(8), diffs, images, n_resamples=10)
    assert estimate.standard_error == pytest.approx(by_hand) and estimate.n_images == 4
    assert minimum_detectable_difference(by_hand) == pytest.approx((Z_975 + Z_80) * by_hand, rel=1e-6)


def test_one_row_per_image_is_the_textbook_standard_error():
    diffs = np.array([0.5, -0.25, 1.0, 0.0, 0.75])
    mean = sum(diffs) / 5
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 4)  # sample standard deviation, n - 1
    assert clustered_standard_error(diffs, cluster_codes(range(5))) == pytest.approx(sd / math.sqrt(5))
    assert clustered_standard_error(diffs[:1], cluster_codes([0])) is None  # one image: no spread


def test_the_note_states_n_se_and_mde():
    note = power_note([power_of("int8", 400, 200, 0.01), power_of("nf4", 200, 200, 0.02)], "CIDEr")
    assert "int8: n = 200 images (400 rows), SE 0.010, MDE 0.028" in note
    assert "nf4: n = 200 images, SE 0.020, MDE 0.056" in note
    assert "80% power" in note and "α = 0.05" in note
    assert power_of("int8", 4, None, None) is None and power_note([], "CIDEr") is None
