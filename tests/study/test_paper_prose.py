"""The paper's generated sentences, checked against the synthetic store's known numbers (no TeX needed).

The store (report_store.py) is built so the answers are known: int8 repeats fp16's captions (Δ 0) at
1.3x the cost, nf4 is fp16 shifted by SHIFT at 0.9x the cost without energy, int4 is noisy at 0.8x.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from paper_checks import StoreValues, check_numbers, printed_as, prose_numbers
from report_store import SHIFT

from vlm_quant.study.paper import results_prose as rp
from vlm_quant.study.paper import setup_prose as sp
from vlm_quant.study.paper.build import build_draft
from vlm_quant.study.paper.tex import Stated


def store_values(caption_store, study) -> StoreValues:
    from mlflow import MlflowClient

    by_id = {run.run_id: run for run in caption_store.runs.values()}
    client = MlflowClient(caption_store.uri)
    logged = {rid: client.get_run(rid).data.metrics for rid in by_id}  # the store itself (CHAIR included)
    return StoreValues(
        metric=lambda rid, name: logged[rid][name],
        param=lambda rid, name: by_id[rid].params[name],
        scores=lambda rid: {r["sample_id"]: r["cider"] for r in by_id[rid].rows},
        images=lambda rid: {r["sample_id"]: r["image_id"] for r in by_id[rid].rows},
        baseline_id=caption_store.runs["fp16"].run_id,
        counts={
            "runs": 5,
            "pretrained_runs": 4,
            "random_runs": 1,
            "examples": len(study.report.qualitative.examples),
        },
        n_resamples=1000,
    )


def row(study, label):
    return study.runs[study.runs["label"] == label].iloc[0]


def test_describe_is_the_realized_label_not_the_requested_roles(caption_study):
    # The store's int8 run asked int8 for vision and language only, but the audit found int8 in every
    # role: the label says so, and no requested role list is added (test_paper_labels: the remainder).
    assert rp.describe(caption_study, row(caption_study, "int8")) == "int8"
    assert rp.describe(caption_study, row(caption_study, "fp16")) == "fp16"


def test_the_headline_sentence_states_the_vram_change_and_the_paired_interval(caption_study, caption_store):
    stated = Stated()
    text = " ".join(rp.comparison_sentences(caption_study, stated))
    fp16, nf4 = caption_store.runs["fp16"].metrics, caption_store.runs["nf4"].metrics
    a, b = fp16["peak_vram_allocated_mib"], nf4["peak_vram_allocated_mib"]
    pct = (a - b) / a * 100
    assert f"cut peak VRAM by {pct:.1f}\\% ({a:.0f} $\\rightarrow$ {b:.0f} MiB)" in text
    # nf4 is fp16 + SHIFT on every sample: the paired interval collapses onto SHIFT
    assert f"CIDEr change of \\mbox{{{SHIFT:.3f} [{SHIFT:.3f}, {SHIFT:.3f}]}}" in text
    # int8 costs more than fp16: the verb says so
    assert "int8 raised peak VRAM by 30.0\\%" in text


def test_a_cost_one_run_did_not_measure_is_said_not_measured_never_computed(caption_study):
    stated = Stated()
    sentences = rp.comparison_sentences(caption_study, stated)
    nf4 = [s for s in sentences if "energy per image" in s and "Not measured" in s]
    assert nf4 == ["Not measured for this pair: energy per image."]
    assert not any(n.source.endswith(":energy_j_per_image") and "nf4" in n.source for n in stated.numbers)
    energy_pct = [
        n
        for n in stated.numbers
        if n.source == f"pct:{row(caption_study, 'nf4')['run_id']}:energy_j_per_image"
    ]
    assert energy_pct == []


def test_significance_follows_the_interval_not_the_point_estimate(caption_study):
    text = " ".join(rp.significance_sentences(caption_study, Stated()))
    assert "No CIDEr change of int8 is detectable" in text  # Δ exactly 0
    assert "nf4 lowers CIDEr" in text and "int4 lowers CIDEr" in text


def test_winners_and_the_pareto_front_come_from_the_logged_costs(caption_study, caption_store):
    text = " ".join(rp.winner_sentences(caption_study, Stated()))
    assert f"Highest CIDEr: fp16 ({caption_store.runs['fp16'].metrics['cider']:.3f})" in text
    assert "Lowest peak VRAM: int4 (1200 MiB)" in text  # scale 0.8 of 1500
    assert "fp16 (random)" not in text  # random weights never win a quality-cost comparison
    assert "int8 is dominated" in text


def test_limitations_count_random_runs_and_say_the_subset_size(caption_study):
    text = " ".join(sp.limitation_sentences(caption_study, Stated()))
    assert "1 random-weight run measures speed and memory only and is excluded" in text
    assert "24 samples" in text
    worst = max(
        (d.standard_error, rid) for rid, d in caption_study.report.deltas.items()
        if d and rid != caption_study.report.baseline_run_id
    )
    mde = (1.959964 + 0.841621) * worst[0]  # z_0.975 + z_0.80 from a normal table
    assert f"With $n$ = 24 images, CIDEr differences smaller than {mde:.3f} cannot be told apart" in text


def test_every_number_the_paper_states_equals_the_store_value(caption_study, caption_store):
    draft = build_draft(caption_study, "paper", compile=False)
    records = json.loads((draft.folder / "numbers.json").read_text())
    check_numbers(records, store_values(caption_store, caption_study))
    tex = (draft.folder / "paper.tex").read_text()
    printed = {r["text"] for r in records}
    unsourced = [n for n in prose_numbers(tex) if n not in printed]
    assert not unsourced, f"numbers in the prose with no store source: {unsourced}"


def test_the_checker_itself_rejects_a_wrong_number(caption_study, caption_store):
    values = store_values(caption_store, caption_study)
    good = {
        "text": "0.980",
        "value": caption_store.runs["fp16"].metrics["cider"],
        "source": f"metric:{caption_store.runs['fp16'].run_id}:cider",
    }
    check_numbers([good], values)
    with pytest.raises(AssertionError):
        check_numbers([{**good, "text": "0.981"}], values)
    assert printed_as(-0.0001, "0.000") and not printed_as(0.0016, "0.001")
    assert prose_numbers(r"\maketitle fp16 cut 12.5\% at \texttt{9654} $E_1$ seed 3. \bibliographystyle") == [
        "12.5",
        "3",
    ]


def test_the_stated_delta_is_the_mean_paired_difference(caption_study, caption_store):
    stated = Stated()
    rp.comparison_sentences(caption_study, stated)
    int4 = caption_store.runs["int4"]
    delta = next(n for n in stated.numbers if n.source == f"delta:{int4.run_id}:delta")
    base = np.array([r["cider"] for r in caption_store.runs["fp16"].rows])
    assert delta.value == pytest.approx(np.mean(np.array([r["cider"] for r in int4.rows]) - base))


def test_the_safety_paragraph_states_the_headline_metrics_only(caption_study):
    """CHAIR and the screen's flagged count/rate, each once per pretrained run; not every count metric."""
    runs = caption_study.runs.copy()
    for count in ("chair_n_mentions", "safety_flagged_pii_n", "safety_flagged_email_n"):
        runs[f"metrics.{count}"] = 3.0  # logged by every run; no sentence of their own
    study = dataclasses.replace(caption_study, runs=runs)
    sentences = rp.safety_sentences(study, Stated())
    named = [s.split("}", 1)[0].removeprefix(r"\texttt{") for s in sentences]
    assert {"chair\\_i", "chair\\_s"} <= set(named)
    counts = ("chair\\_n", "safety\\_flagged\\_pii", "safety\\_flagged\\_email")
    assert not any(n.startswith(counts) for n in named) and len(named) == len(set(named))
