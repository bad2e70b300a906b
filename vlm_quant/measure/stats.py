"""Summary statistics of repeated measurements: mean, median, p90 and a 95% interval of the mean.

The interval is the Student t interval of the mean, ``mean +/- t(0.975, n-1) * s / sqrt(n)`` with
``s`` the sample standard deviation (``n-1`` in the denominator). It assumes the iterations are
independent draws; timed iterations of one warm process are close to that, but not exactly (thermal
and clock drift), so read the interval as "how well the mean is pinned down by this run", not as a
between-run interval. Percentiles use linear interpolation between order statistics (numpy's
default, Hyndman-Fan type 7), so they agree with ``numpy.percentile``.

No scipy: the t quantile comes from a table for n-1 <= 30 and a Cornish-Fisher expansion above it
(error < 1e-7 there), which keeps this module importable with the standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

# t(0.975, df) for df = 1..30 (two-sided 95%), to 6 decimals; checked against scipy in the tests.
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157,
    2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922,
    2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831,
    2.048407, 2.045230, 2.042272,
)  # fmt: skip


@dataclass(frozen=True)
class Summary:
    """Statistics of ``n`` values, all in the unit of the values (the caller's key names the unit)."""

    n: int
    mean: float
    p50: float
    p90: float
    ci95_low: float
    ci95_high: float

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """Metric dict keyed ``{prefix}_mean``, ``_p50``, ``_p90``, ``_ci95_low``, ``_ci95_high``.

        ``prefix`` carries the unit, e.g. ``latency_ms`` -> ``latency_ms_p50``. ``n`` is not a metric
        (it has no unit of the values); read it from the ``Summary``.
        """
        return {
            f"{prefix}_mean": self.mean,
            f"{prefix}_p50": self.p50,
            f"{prefix}_p90": self.p90,
            f"{prefix}_ci95_low": self.ci95_low,
            f"{prefix}_ci95_high": self.ci95_high,
        }


def summarize(values: Sequence[float]) -> Summary:
    """Summarize repeated measurements (any unit; the result is in the same unit).

    n == 1 gives a degenerate interval ``[mean, mean]``: one value says nothing about spread, and a
    zero-width interval is easier to spot in a table than an infinite one. n == 0 and non-finite
    values raise ``ValueError`` (a NaN would silently poison every statistic).
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("summarize() needs at least one value")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError(f"summarize() got non-finite values: {xs}")
    n = len(xs)
    mean = math.fsum(xs) / n
    half_width = 0.0 if n == 1 else t_quantile_975(n - 1) * _sample_std(xs, mean) / math.sqrt(n)
    return Summary(
        n=n,
        mean=mean,
        p50=percentile(xs, 50.0),
        p90=percentile(xs, 90.0),
        ci95_low=mean - half_width,
        ci95_high=mean + half_width,
    )


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


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (two-sided 95%)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    # Cornish-Fisher expansion of t around the normal quantile (Abramowitz & Stegun 26.7.5).
    z = NormalDist().inv_cdf(0.975)
    v = float(df)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4)
    )


def _sample_std(xs: list[float], mean: float) -> float:
    """Sample standard deviation (Bessel-corrected, n-1 in the denominator)."""
    return math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
