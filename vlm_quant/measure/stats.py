"""Summary statistics of repeated measurements: n, mean, median, p90 and a 95% interval of the mean.

The interval is a percentile bootstrap of the mean (``scipy.stats.bootstrap``, ``method="percentile"``,
9,999 resamples, seeded so a run's numbers are reproducible). A percentile bootstrap interval is made of
means of resamples of the data, so it always lies within ``[min, max]`` of the values: an interval of
latencies never goes below 0, whatever their spread (a Student t interval on 3 skewed iterations did,
to -1.6 s). Below ``MIN_N_FOR_INTERVAL`` values no interval is given at all (``None``, absent from the
metrics): with so few values the resampling distribution has a handful of distinct points and its
percentiles say little. From 10 to ~30 values the interval still tends to be a little narrow (its
coverage is below 95% for skewed data); read it as "how well this run pins the mean down", not as a
between-run interval (thermal and clock drift are not independent draws).

Percentiles use linear interpolation between order statistics (numpy's default, Hyndman-Fan type 7).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_N_FOR_INTERVAL = 10  # fewer values: n and the point statistics only, no interval
BOOTSTRAP_RESAMPLES = 9_999
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Summary:
    """Statistics of ``n`` values, all in the unit of the values (the caller's key names the unit).

    ``ci95_low`` / ``ci95_high`` are None when ``n < MIN_N_FOR_INTERVAL``: no interval, not a fake one.
    """

    n: int
    mean: float
    p50: float
    p90: float
    ci95_low: float | None
    ci95_high: float | None

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """Metrics ``{prefix}_n``, ``_mean``, ``_p50``, ``_p90`` and, when there is one, the interval.

        ``prefix`` carries the unit, e.g. ``latency_ms`` -> ``latency_ms_p50``; ``{prefix}_n`` is the count
        of values the statistics come from. ``_ci95_low``/``_ci95_high`` are absent without an interval.
        """
        metrics = {
            f"{prefix}_n": float(self.n),
            f"{prefix}_mean": self.mean,
            f"{prefix}_p50": self.p50,
            f"{prefix}_p90": self.p90,
        }
        if self.ci95_low is not None and self.ci95_high is not None:
            metrics[f"{prefix}_ci95_low"] = self.ci95_low
            metrics[f"{prefix}_ci95_high"] = self.ci95_high
        return metrics


def summarize(values: Sequence[float], *, seed: int = BOOTSTRAP_SEED) -> Summary:
    """Summarize repeated measurements (any unit; the result is in the same unit).

    n == 0 and non-finite values raise ``ValueError`` (a NaN would silently poison every statistic).
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("summarize() needs at least one value")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError(f"summarize() got non-finite values: {xs}")
    low, high = bootstrap_mean_interval(xs, seed=seed) if len(xs) >= MIN_N_FOR_INTERVAL else (None, None)
    return Summary(
        n=len(xs),
        mean=math.fsum(xs) / len(xs),
        p50=percentile(xs, 50.0),
        p90=percentile(xs, 90.0),
        ci95_low=low,
        ci95_high=high,
    )


def bootstrap_mean_interval(values: Sequence[float], *, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``values`` (needs at least 2 values)."""
    from scipy.stats import bootstrap  # scipy is imported only when an interval is computed

    xs = np.asarray(values, dtype=float)
    if xs.size < 2:
        raise ValueError("a bootstrap interval needs at least 2 values")
    if np.all(xs == xs[0]):
        return float(xs[0]), float(xs[0])  # every resample has this mean
    result = bootstrap(
        (xs,),
        np.mean,
        confidence_level=0.95,
        method="percentile",
        n_resamples=BOOTSTRAP_RESAMPLES,
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 <= q <= 100) by linear interpolation, as ``numpy.percentile``."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile() needs at least one value")
    rank = (len(xs) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)
