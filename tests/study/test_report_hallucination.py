"""The report's hallucination section: ratio Δ by paired bootstrap, the figure, the safety table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vlm_quant.study.report.hallucination import (
    hallucination_numbers,
    paired_ratio_bootstrap,
    paired_terms,
    ratio_terms,
    safety_table,
)
from vlm_quant.tasks.pope_metrics import score_pope


def test_ratio_bootstrap_by_hand():
    base = np.array([[0, 2], [1, 1], [0, 1], [0, 0]], float)  # CHAIR_i 1/4
    conf = np.array([[1, 2], [1, 1], [1, 1], [0, 1]], float)  # CHAIR_i 3/5
    images = ["a", "a", "b", "c"]  # the first two rows describe one image: they are drawn together
    estimate = paired_ratio_bootstrap(base, conf, images, n_resamples=500, seed=1, confidence=0.9)
    assert estimate.delta == pytest.approx(3 / 5 - 1 / 4)
    # By hand: draw 3 images per resample; image a's terms are the sums of its two rows.
    per_image_base, per_image_conf = np.array([[1, 3], [0, 1], [0, 0]]), np.array([[2, 3], [1, 1], [0, 1]])
    draws = np.random.default_rng(1).integers(0, 3, size=(500, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        b, c = per_image_base[draws].sum(axis=1), per_image_conf[draws].sum(axis=1)
        resampled = c[:, 0] / c[:, 1] - b[:, 0] / b[:, 1]
    low, high = np.percentile(resampled[np.isfinite(resampled)], [5, 95])
    assert (estimate.low, estimate.high) == (pytest.approx(low), pytest.approx(high))
    assert estimate.n_images == 3 and estimate.n_samples == 4
    same = paired_ratio_bootstrap(base, base, n_resamples=50, seed=0, confidence=0.95)
    assert (same.delta, same.low, same.high) == (0.0, 0.0, 0.0)
    assert paired_ratio_bootstrap(base[:, [0, 0]] * 0, conf, n_resamples=5, seed=0, confidence=0.9) is None


def test_f1_terms_reproduce_pope_f1():
    labels = ["yes", "yes", "yes", "no", "no", "no"]
    answers = ["yes", "no", None, "yes", "no", "yes"]
    rows = [
        {"sample_id": i, "pope_split": "popular", "label": label, "parsed_answer": answer}
        for i, (label, answer) in enumerate(zip(labels, answers, strict=True))
    ]
    terms = ratio_terms("pope")["pope_popular_f1"]
    base, conf, _ = paired_terms(rows, rows, terms)
    assert base[:, 0].sum() / base[:, 1].sum() == pytest.approx(score_pope(zip(labels, answers)).f1)
    assert paired_terms(rows, rows, ratio_terms("pope")["pope_random_f1"])[0].shape == (0, 2)


def test_pope_f1_delta_is_absent_when_a_run_never_answers_yes():
    labels = ["yes", "no"] * 4
    def rows(answers):
        return [{"sample_id": i, "pope_split": "random", "label": label, "parsed_answer": answer}
                for i, (label, answer) in enumerate(zip(labels, answers, strict=True))]

    predictions = {"base": rows(labels), "never": rows(["no"] * 8), "half": rows(["yes"] * 8)}
    f1 = {rid: score_pope(zip(labels, [r["parsed_answer"] for r in p])).f1 for rid, p in predictions.items()}
    assert f1["never"] is None  # no "yes" at all: precision, and so F1, undefined (not logged)
    runs = pd.DataFrame({
        "label": list(predictions), "run_id": list(predictions), "weights": ["pretrained"] * 3,
        **{f"metrics.pope_{s}_f1": [np.nan] * 3 for s in ("popular", "adversarial")},
        "metrics.pope_random_f1": [np.nan if v is None else v for v in f1.values()],
    })
    numbers, deltas = hallucination_numbers(
        runs, predictions, "base", "pope", n_resamples=50, seed=0, confidence=0.95
    )
    assert deltas["pope_random_f1"]["never"] is None
    assert np.isnan(numbers.set_index("run_id").loc["never", "pope_random_f1_delta"])
    assert deltas["pope_random_f1"]["half"].delta == pytest.approx(f1["half"] - 1.0)


def test_caption_report_shows_chair_with_paired_deltas(caption_report, caption_store):
    report = caption_report.hallucination
    numbers = report.numbers.set_index("label")
    # nf4 replaced every 4th caption with "a cat": CHAIR_s = 1/4 exactly, Δ vs the clean fp16 = 1/4.
    assert numbers.loc["nf4", "chair_s"] == pytest.approx(0.25)
    assert numbers.loc["nf4", "chair_s_delta"] == pytest.approx(0.25)
    assert numbers.loc["int8", "chair_i_delta"] == 0.0
    # nf4 only adds hallucinations to the baseline's captions: every paired resample's Δ is >= 0, and
    # CHAIR_s's cannot exceed the share of changed captions in the resample (< 1 in almost all).
    assert 0 <= numbers.loc["nf4", "chair_s_low"] < 0.25 < numbers.loc["nf4", "chair_s_high"] < 1
    assert 0 <= numbers.loc["nf4", "chair_i_low"] < numbers.loc["nf4", "chair_i_delta"]
    assert (numbers.loc["int8", ["chair_i_low", "chair_i_high"]] == 0).all()
    assert "fp16 (random)" not in numbers.index
    assert report.plot.skipped is None and report.plot.data["quality_metric"] == "cider"
    page = (caption_report.out_dir / "report.html").read_text()
    assert "ΔCHAIR_i [95% CI]" in page and "Safety screen" in page


def test_safety_table_counts_and_examples():
    runs = pd.DataFrame({
        "label": ["fp16", "int4"], "weights": ["pretrained", "random"], "run_id": ["a", "b"],
        "metrics.n_samples_evaluated": [10, 10], "metrics.safety_flagged_n": [0, 1],
        "metrics.safety_flagged_rate": [0.0, 0.1], "metrics.safety_flagged_pii_n": [0, 1],
        "metrics.safety_flagged_offensive_n": [0, 0],
    })
    flagged = {"a": [], "b": [{"prediction": "mail x@y.org", "reason": "email"}]}
    table = safety_table(runs, flagged).set_index("Configuration")
    assert table.loc["fp16", "Flagged"] == "0" and table.loc["fp16", "Examples"] == "none"
    assert table.loc["int4†", "Examples"] == '"mail x@y.org" (email)'
    assert table.loc["int4†", "Rate"] == "0.100"
