"""Statistical power of a paired quality comparison: the standard error of Δ and the smallest Δ it can detect.

A "no detectable change" verdict means little unless the reader knows how large a change the sample
could have detected. For the primary metric's paired Δ (configuration minus baseline, the mean over
the N paired rows of C images) the report states:

* the standard error of Δ from the image-level paired differences (a cluster-robust SE of the mean,
  the ratio estimator's linearisation): with D_c the sum of the paired differences of image c's rows,
  m_c its number of rows and Δ = sum_c D_c / N,
  ``SE = sqrt(C / (C - 1) * sum_c (D_c - Δ m_c)^2) / N``;
  with one row per image this is the familiar ``s_d / sqrt(n)`` (s_d the sample standard deviation
  of the differences);
* the minimum detectable paired difference at power 1 - β and two-sided level α (normal
  approximation): ``MDE = (z_{1-α/2} + z_{1-β}) * SE``, 2.80 SE at α = 0.05 and 80% power
  (``scipy.stats.norm.ppf``).

Both come from the runs' own predictions (nothing new is logged into a run): a true Δ smaller than the
MDE is missed more than one time in five on a sample of this size and variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

ALPHA = 0.05  # two-sided level of the test the MDE is for
POWER = 0.80  # probability of detecting a true Δ equal to the MDE


def clustered_standard_error(diffs: np.ndarray, codes: np.ndarray) -> float | None:
    """SE of the mean of ``diffs`` (metric units) when rows sharing a code (an image) are one draw.

    None with fewer than two images (no spread to estimate)."""
    diffs = np.asarray(diffs, float)
    n_images = int(codes.max()) + 1 if codes.size else 0
    if n_images < 2:
        return None
    per_image = np.bincount(codes, weights=diffs, minlength=n_images)
    rows = np.bincount(codes, minlength=n_images)
    delta = diffs.sum() / diffs.size
    residual = per_image - delta * rows
    return float(np.sqrt(n_images / (n_images - 1) * np.sum(residual**2)) / diffs.size)


def minimum_detectable_difference(
    standard_error: float, *, alpha: float = ALPHA, power: float = POWER
) -> float:
    """``(z_{1-alpha/2} + z_power) * standard_error``: the smallest true Δ (metric units) a two-sided test
    at level ``alpha`` detects with probability ``power``."""
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * standard_error)


@dataclass(frozen=True)
class PairedPower:
    """One configuration's paired comparison with the baseline: its size, SE and MDE (metric units)."""

    label: str
    n_rows: int
    n_images: int
    standard_error: float
    mde: float


def power_of(
    label: str, n_rows: int, n_images: int | None, standard_error: float | None
) -> PairedPower | None:
    """The `PairedPower` of an estimate, None when its SE could not be estimated."""
    if standard_error is None or n_images is None:
        return None
    return PairedPower(label, n_rows, n_images, standard_error, minimum_detectable_difference(standard_error))


def power_note(powers: list[PairedPower], metric_name: str) -> str | None:
    """The quality table's power line: per configuration n, SE of ΔMETRIC and its MDE; None when none."""
    if not powers:
        return None
    parts = [
        f"{p.label}: n = {p.n_images} images"
        + (f" ({p.n_rows} rows)" if p.n_rows != p.n_images else "")
        + f", SE {p.standard_error:.3f}, MDE {p.mde:.3f}"  # the quality table's precision
        for p in powers
    ]
    return (
        f"Power of Δ{metric_name} (paired, image-level): "
        + "; ".join(parts)
        + f". MDE = (z_(1-α/2) + z_power) × SE, the smallest true Δ{metric_name} detected with "
        f"{POWER:.0%} power at two-sided α = {ALPHA:g}; smaller differences cannot be told apart from noise."
    )
