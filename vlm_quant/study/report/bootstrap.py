"""Paired bootstrap of a quality Δ (configuration minus baseline) over the same samples, by image.

Both runs are scored on the identical id list (see ``comparability``), so the uncertainty that
matters is which samples happened to be drawn, and it is shared by both runs: resampling the
*per-sample differences* (a paired bootstrap) gives a much tighter and correct interval than
bootstrapping each run on its own.

The resampled unit is the IMAGE (a cluster bootstrap): every row that shares an image (its
``image_id`` in ``predictions.jsonl``; ``image_file``, then ``sample_id`` where a row has none) is
drawn together. VQA and POPE ask several questions about one image, and POPE asks each positive
question in all three splits with the same prompt: those rows are not independent draws, and
resampling them one by one gives intervals that are too narrow. Drawing whole images keeps every
question of an image, and every split a question appears in, together: a distinct question counts
once per drawn image, never independently of its own copies. Each resample draws as many images as
the pair holds, with replacement, from ``numpy.random.default_rng(seed)`` (one ``(n_resamples,
n_images)`` draw, images numbered in order of first appearance in ``sample_id`` order), and the
metric is recomputed on the resample exactly as on the full sample (a mean over rows, or a ratio of
sums over rows); the interval is the percentile interval of the resampled Δ. With one row per image
(captioning) the draw equals a row bootstrap's, number for number.

CIDEr note: CIDEr is a corpus metric, its IDF weights come from the reference captions of the whole
split being scored. The per-image ``cider`` values in ``predictions.jsonl`` are computed against the
full split's IDF, and pycocoevalcap's corpus CIDEr is exactly the mean of those per-image scores. The
bootstrap therefore resamples per-image CIDEr with the IDF held fixed at the full split's: it
captures sampling variability of the images, not of the IDF table (recomputing IDF on each resample
would change the metric itself). The same holds trivially for VQA accuracy, a plain per-question mean.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from vlm_quant.errors import UserError
from vlm_quant.study.report.power import clustered_standard_error
from vlm_quant.study.report.precision_labels import run_precision

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
RESAMPLED_UNIT = "image"  # what one bootstrap draw picks: every row of one image, together
# The unquantized reference, in order of preference (fp32: a CPU study computes in float32).
BASELINE_PREFERENCE = ("fp16", "bf16", "fp32")
# Resampled images whose (images x columns) sums are formed at once: bounds the memory of a draw.
_CHUNK_ROWS = 2_000_000


@dataclass(frozen=True)
class DeltaEstimate:
    """Mean paired difference of a per-sample score (metric units) with its percentile interval."""

    delta: float  # mean(config - baseline) over the paired samples
    low: float  # lower bound of the percentile interval
    high: float  # upper bound
    n_samples: int  # samples (rows) present in both runs
    n_resamples: int
    seed: int
    confidence: float  # e.g. 0.95
    n_images: int | None = None  # resampled units (images) behind the n_samples rows
    standard_error: float | None = None  # SE of Δ from the image-level paired differences (metric units)


class PairedScores(NamedTuple):
    """Per-sample scores of both runs and each row's image (the bootstrap's cluster), row-aligned."""

    baseline: np.ndarray
    config: np.ndarray
    images: np.ndarray  # str: the image each row asks about (see `image_key`)


def image_key(row: dict[str, Any]) -> str:
    """The image a prediction row belongs to: ``image_id``, else ``image_file``, else its ``sample_id``
    (then the row is its own cluster)."""
    for key in ("image_id", "image_file"):
        value = row.get(key)
        if value is not None and value != "":
            return f"{key}:{value}"
    return f"sample_id:{row['sample_id']}"


def cluster_codes(images: Sequence[Any]) -> np.ndarray:
    """Image index 0..C-1 per row, images numbered in order of first appearance."""
    _, first, inverse = np.unique(np.asarray(images, dtype=str), return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def cluster_bootstrap(
    terms: np.ndarray,
    codes: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    n_resamples: int,
    seed: int,
) -> np.ndarray:
    """The statistic on ``n_resamples`` image-level resamples (non-finite ones dropped).

    ``terms`` (rows x k): what each row adds to the metric's sums; ``codes``: each row's image index
    (`cluster_codes`); ``statistic``: (resamples x k) column sums -> (resamples,) metric values. One
    ``(n_resamples, n_images)`` index draw from ``numpy.random.default_rng(seed)``.
    """
    terms = np.asarray(terms, float).reshape(len(codes), -1)
    n_images = int(codes.max()) + 1
    totals = np.zeros((n_images, terms.shape[1]))
    np.add.at(totals, codes, terms)
    idx = np.random.default_rng(seed).integers(0, n_images, size=(n_resamples, n_images))
    step = max(1, _CHUNK_ROWS // max(1, n_images))
    sums = np.concatenate(
        [np.stack([totals[chunk, j].sum(axis=1) for j in range(terms.shape[1])], axis=1)
         for chunk in np.array_split(idx, range(step, n_resamples, step))]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        values = statistic(sums)
    return values[np.isfinite(values)]


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The ``confidence`` percentile interval (linear interpolation, numpy's default)."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def paired_scores(
    baseline_rows: list[dict], config_rows: list[dict], score_key: str
) -> PairedScores:
    """Per-sample scores of both runs joined on ``sample_id``, in sample_id order, with each row's image
    (from the baseline's row).

    Rows whose score is missing (None) in either run are dropped from the pair.
    """
    base = _scores_by_id(baseline_rows, score_key)
    conf = _scores_by_id(config_rows, score_key)
    joined = base.join(conf, how="inner", lsuffix="_base", rsuffix="_conf").dropna().sort_index()
    if joined.empty:
        raise UserError(f"no sample_id has a {score_key!r} score in both runs: cannot pair them")
    images = {str(r["sample_id"]): image_key(r) for r in baseline_rows}
    return PairedScores(
        joined.iloc[:, 0].to_numpy(float),
        joined.iloc[:, 1].to_numpy(float),
        np.array([images[i] for i in joined.index], dtype=str),
    )


def paired_bootstrap(
    baseline: np.ndarray,
    config: np.ndarray,
    images: Sequence[Any] | None = None,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
) -> DeltaEstimate:
    """Δ = mean(config - baseline) over rows and its ``confidence`` percentile interval, resampling images.

    ``images``: each row's image (rows of one image are drawn together); None: every row is its own
    image (a row bootstrap). Each resample's Δ is the mean over its drawn rows: sum of the drawn
    images' differences / number of their rows. Also the standard error of Δ from the image-level
    differences (`power.clustered_standard_error`).
    """
    diffs = np.asarray(config, float) - np.asarray(baseline, float)
    if diffs.ndim != 1 or diffs.size == 0:
        raise ValueError("paired_bootstrap needs two equally long, non-empty 1-D score arrays")
    codes = cluster_codes(np.arange(diffs.size) if images is None else images)
    if codes.size != diffs.size:
        raise ValueError("paired_bootstrap needs one image per row")
    terms = np.column_stack([diffs, np.ones_like(diffs)])
    means = cluster_bootstrap(terms, codes, lambda s: s[:, 0] / s[:, 1], n_resamples=n_resamples, seed=seed)
    low, high = percentile_interval(means, confidence)
    return DeltaEstimate(
        delta=float(diffs.mean()),
        low=low,
        high=high,
        n_samples=int(diffs.size),
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        n_images=int(codes.max()) + 1,
        standard_error=clustered_standard_error(diffs, codes),
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
