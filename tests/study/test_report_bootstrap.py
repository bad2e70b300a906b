"""Paired bootstrap of Δ and the choice of baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import bootstrap as scipy_bootstrap

from vlm_quant.errors import UserError
from vlm_quant.study.report.bootstrap import paired_bootstrap, paired_scores, select_baseline
from vlm_quant.study.report.hallucination import paired_ratio_bootstrap


def _rows(scores, ids=None):
    ids = ids or [f"s{i}" for i in range(len(scores))]
    return [{"sample_id": i, "cider": s} for i, s in zip(ids, scores, strict=True)]


def test_identical_scores_give_zero_delta_and_zero_interval():
    scores = np.random.default_rng(1).uniform(0, 2, 50)
    estimate = paired_bootstrap(scores, scores.copy())
    assert (estimate.delta, estimate.low, estimate.high) == (0.0, 0.0, 0.0)
    assert estimate.n_samples == 50 and estimate.n_resamples == 2000


def test_constant_shift_gives_that_shift_with_a_degenerate_interval():
    scores = np.random.default_rng(2).uniform(0, 2, 40)
    estimate = paired_bootstrap(scores, scores - 0.25)
    assert estimate.delta == pytest.approx(-0.25)
    assert estimate.low == pytest.approx(-0.25) and estimate.high == pytest.approx(-0.25)


def test_matches_a_direct_numpy_computation_with_the_same_seed():
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 2, 30)
    conf = base + rng.normal(-0.1, 0.3, 30)
    estimate = paired_bootstrap(base, conf, n_resamples=1500, seed=11)
    diffs = conf - base
    idx = np.random.default_rng(11).integers(0, 30, size=(1500, 30))
    means = diffs[idx].mean(axis=1)
    assert estimate.delta == pytest.approx(diffs.mean())
    assert estimate.low == pytest.approx(np.percentile(means, 2.5))
    assert estimate.high == pytest.approx(np.percentile(means, 97.5))
    assert estimate.low < estimate.delta < estimate.high
    assert paired_bootstrap(base, conf, n_resamples=1500, seed=11) == estimate  # reproducible


def test_pairs_are_joined_on_sample_id_not_on_position():
    base = _rows([1.0, 2.0, 3.0], ["a", "b", "c"])
    conf = _rows([3.5, None, 1.5, 9.0], ["c", "b", "a", "z"])  # shuffled, one missing score, one extra
    b, c, images = paired_scores(base, conf, "cider")
    assert b.tolist() == [1.0, 3.0] and c.tolist() == [1.5, 3.5]
    assert images.tolist() == ["sample_id:a", "sample_id:c"]  # no image id: each row its own cluster
    with pytest.raises(UserError, match="no sample_id"):
        paired_scores(base, _rows([1.0], ["q"]), "cider")


def test_one_row_per_image_is_scipys_row_bootstrap():
    """The reference: with every image asked once, drawing images is drawing rows, as scipy does."""
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 2, 30)
    conf = base + rng.normal(-0.1, 0.3, 30)
    images = [f"img{i}" for i in rng.permutation(30)]  # labels in no particular order
    estimate = paired_bootstrap(base, conf, images, n_resamples=1500, seed=11)
    reference = scipy_bootstrap(
        (conf - base,), np.mean, n_resamples=1500, method="percentile", rng=np.random.default_rng(11)
    ).confidence_interval
    assert (estimate.low, estimate.high) == (pytest.approx(reference.low), pytest.approx(reference.high))
    assert estimate.n_images == 30 and estimate.n_samples == 30


def _clustered_scores(n_images=60, per_image=5, seed=7):
    """Paired scores whose differences share a strong per-image effect: rows of one image move together."""
    rng = np.random.default_rng(seed)
    image_effect = np.repeat(rng.normal(0, 1.0, n_images), per_image)
    base = rng.uniform(0, 1, n_images * per_image)
    conf = base - 0.2 + image_effect + rng.normal(0, 0.2, n_images * per_image)
    return base, conf, np.repeat([f"image{i}" for i in range(n_images)], per_image)


def test_correlated_rows_widen_the_image_level_interval():
    base, conf, images = _clustered_scores()
    rows = paired_bootstrap(base, conf, n_resamples=2000, seed=0)
    clusters = paired_bootstrap(base, conf, images, n_resamples=2000, seed=0)
    assert clusters.delta == rows.delta
    # 5 rows per image, within-image correlation ~0.96: the effective sample is ~60, not 300 (width ~x2).
    assert clusters.high - clusters.low > 1.8 * (rows.high - rows.low)
    assert clusters.n_images == 60 and clusters.n_samples == 300
    # The same holds for a ratio metric (CHAIR-like terms), drawn by image.
    terms = np.column_stack([(conf > 0.5).astype(float), np.ones_like(conf)])
    zero = np.column_stack([np.zeros_like(conf), np.ones_like(conf)])  # a baseline ratio of 0 everywhere
    rows_ratio = paired_ratio_bootstrap(zero, terms, n_resamples=2000, seed=0, confidence=0.95)
    by_image = paired_ratio_bootstrap(zero, terms, images, n_resamples=2000, seed=0, confidence=0.95)
    assert by_image.high - by_image.low > 1.5 * (rows_ratio.high - rows_ratio.low)


def test_an_interval_never_leaves_the_metrics_range():
    # Accuracy-like scores in {0, 1}: Δ lies in [-1, 1]; nearly every row flips from wrong to right.
    base = np.zeros(40)
    conf = np.ones(40)
    conf[:2] = 0
    images = np.repeat([f"image{i}" for i in range(8)], 5)
    estimate = paired_bootstrap(base, conf, images, n_resamples=2000, seed=0)
    assert -1 <= estimate.low <= estimate.delta <= estimate.high <= 1
    assert estimate.high == 1.0  # resamples without the one image holding the two misses reach the bound


def _runs(quants, weights=None):
    weights = weights or ["pretrained"] * len(quants)
    return pd.DataFrame(
        {
            "run_id": [f"id{i}" for i in range(len(quants))],
            "run_name": [f"run-{q}" for q in quants],
            "label": quants,
            "params.quant": quants,
            "weights": weights,
        }
    )


def test_baseline_is_fp16_then_bf16_then_the_argument():
    assert select_baseline(_runs(["int8", "fp16", "bf16"])) == "id1"
    assert select_baseline(_runs(["int8", "bf16"])) == "id1"
    assert select_baseline(_runs(["fp16", "int8"], ["random", "pretrained"]), "int8") == "id1"
    assert select_baseline(_runs(["int8", "nf4"]), "run-nf4") == "id1"
    assert select_baseline(_runs(["int8", "fp16"]), "id0") == "id0"
    with pytest.raises(UserError, match="baseline="):
        select_baseline(_runs(["int8", "fp16"], ["pretrained", "random"]))  # random fp16 never a baseline
    with pytest.raises(UserError, match="matches 2 runs"):
        select_baseline(_runs(["fp16", "fp16"]))
