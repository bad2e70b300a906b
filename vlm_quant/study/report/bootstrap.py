"""Paired bootstrap of a quality Δ (configuration minus baseline) over the same samples.

Both runs are scored on the identical id list (see ``comparability``), so the uncertainty that
matters is which samples happened to be drawn, and it is shared by both runs: resampling the
*per-sample differences* (a paired bootstrap) gives a much tighter and correct interval than
bootstrapping each run on its own.

CIDEr note: CIDEr is a corpus metric, its IDF weights come from the reference captions of the whole
split being scored. The per-image ``cider`` values in ``predictions.jsonl`` are computed against the
full split's IDF, and pycocoevalcap's corpus CIDEr is exactly the mean of those per-image scores. The
bootstrap therefore resamples per-image CIDEr with the IDF held fixed at the full split's: it
captures sampling variability of the images, not of the IDF table (recomputing IDF on each resample
would change the metric itself). The same holds trivially for VQA accuracy, a plain per-question mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from vlm_quant.errors import UserError
from vlm_quant.study.report.precision_labels import run_precision

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
# The unquantized reference, in order of preference (fp32: a CPU study computes in float32).
BASELINE_PREFERENCE = ("fp16", "bf16", "fp32")


@dataclass(frozen=True)
class DeltaEstimate:
    """Mean paired difference of a per-sample score (metric units) with its percentile interval."""

    delta: float  # mean(config - baseline) over the paired samples
    low: float  # lower bound of the percentile interval
    high: float  # upper bound
    n_samples: int  # samples present in both runs
    n_resamples: int
    seed: int
    confidence: float  # e.g. 0.95


def paired_scores(
    baseline_rows: list[dict], config_rows: list[dict], score_key: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample scores of both runs joined on ``sample_id``, in sample_id order.

    Rows whose score is missing (None) in either run are dropped from the pair.
    """
    base = _scores_by_id(baseline_rows, score_key)
    conf = _scores_by_id(config_rows, score_key)
    joined = base.join(conf, how="inner", lsuffix="_base", rsuffix="_conf").dropna().sort_index()
    if joined.empty:
        raise UserError(f"no sample_id has a {score_key!r} score in both runs: cannot pair them")
    return joined.iloc[:, 0].to_numpy(float), joined.iloc[:, 1].to_numpy(float)


def paired_bootstrap(
    baseline: np.ndarray,
    config: np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
) -> DeltaEstimate:
    """Δ = mean(config - baseline) and its ``confidence`` percentile interval from a paired bootstrap.

    Resample indices are drawn once as an ``(n_resamples, n)`` array from
    ``numpy.random.default_rng(seed)``, so the result is reproducible and can be checked directly.
    """
    diffs = np.asarray(config, float) - np.asarray(baseline, float)
    if diffs.ndim != 1 or diffs.size == 0:
        raise ValueError("paired_bootstrap needs two equally long, non-empty 1-D score arrays")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diffs.size, size=(n_resamples, diffs.size))
    means = diffs[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return DeltaEstimate(
        delta=float(diffs.mean()),
        low=float(low),
        high=float(high),
        n_samples=int(diffs.size),
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
    )


def select_baseline(runs: pd.DataFrame, baseline: str | None = None) -> str:
    """The run id of the baseline among pretrained-weight runs.

    ``baseline`` (a run id, run name, label or realized precision) wins when given; otherwise the run
    whose realized precision is ``fp16`` in every role, else ``bf16``, else ``fp32``. Precision is
    what the audit found (``realized_precision_<role>``, see `precision_labels`), never the ``quant``
    request: ``quant=fp16`` with an int8 language model is not an fp16 run. Only a run that logged
    no realized precision (before the audit existed) is matched by its ``quant`` param; the request
    also breaks a tie between runs realized alike. Raises ``UserError`` when nothing or several runs match.
    """
    pretrained = runs[runs["weights"] != "random"]
    if "precision" in pretrained.columns:
        precision = pretrained["precision"].astype(object)
    else:  # a frame not built by runs_frame: derive it from the params
        precision = pd.Series(
            [run_precision(row) for _, row in pretrained.iterrows()], index=pretrained.index, dtype=object
        )
    # The request stands in for the realized precision only where none was logged.
    effective = precision.where(precision.notna(), _column(pretrained, "params.quant"))
    if baseline:
        match = pretrained[
            (pretrained["run_id"] == baseline)
            | (pretrained["run_name"] == baseline)
            | (pretrained["label"] == baseline)
            | (effective == baseline)
        ]
        return _exactly_one(match, f"baseline {baseline!r}", pretrained)
    quant = _column(pretrained, "params.quant")
    for preferred in BASELINE_PREFERENCE:
        match = pretrained[effective == preferred]
        # Several runs realized alike (on CPU quant=fp16 and quant=bf16 both compute in fp32): the
        # request breaks the tie, in the same order of preference.
        for asked in BASELINE_PREFERENCE if len(match) > 1 else ():
            if (quant[match.index] == asked).sum() == 1:
                match = match[quant[match.index] == asked]
                break
        if len(match):
            return _exactly_one(match, f"the {preferred} baseline", pretrained)
    return _exactly_one(pretrained.iloc[0:0], "an unquantized (fp16, bf16 or fp32) baseline", pretrained)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name].astype(object)
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _exactly_one(match: pd.DataFrame, what: str, candidates: pd.DataFrame) -> str:
    if len(match) == 1:
        return str(match["run_id"].iat[0])
    listing = ", ".join(f"{r.label} ({r.run_id})" for r in candidates.itertuples())
    if len(match) == 0:
        raise UserError(
            f"{what} matches no pretrained-weight run; pass baseline=<run id, run name or quant> "
            f"from: {listing}"
        )
    raise UserError(f"{what} matches {len(match)} runs; pass baseline=<run id> from: {listing}")


def _scores_by_id(rows: list[dict], score_key: str) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"sample_id": [str(r["sample_id"]) for r in rows], score_key: [r.get(score_key) for r in rows]}
    )
    if frame["sample_id"].duplicated().any():
        raise UserError("predictions.jsonl holds a sample_id twice: cannot pair samples")
    return frame.set_index("sample_id").astype(float)
