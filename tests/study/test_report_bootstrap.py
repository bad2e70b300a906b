"""Paired bootstrap of Δ and the choice of baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vlm_quant.errors import UserError
from vlm_quant.study.report.bootstrap import paired_bootstrap, paired_scores, select_baseline


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
    b, c = paired_scores(base, conf, "cider")
    assert b.tolist() == [1.0, 3.0] and c.tolist() == [1.5, 3.5]
    with pytest.raises(UserError, match="no sample_id"):
        paired_scores(base, _rows([1.0], ["q"]), "cider")


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
