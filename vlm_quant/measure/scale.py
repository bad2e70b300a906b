"""Scale projections: what a configuration's per-image cost becomes at a million and a billion images.

Inference matters through the number of invocations, so the per-image measurements are multiplied out:

    facility energy (kWh) = J/image x N x PUE / 3.6e6
    CO2e (t)              = facility energy (kWh) x carbon intensity (g/kWh) / 1e6
    water (m3)            = L/image x N / 1000

A linear projection: it assumes every image costs what the micro-set's did at batch 1.

The saving of a quantized configuration against the baseline is ``1 - E_q / E_base`` of their mean J/image,
with a 95% percentile-bootstrap interval that resamples each run's per-window values independently (the
repeated NVML windows are the replicates). A ratio's interval stays within the range a saving can have
(<= 1) because every resampled mean is positive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlm_quant.measure.energy import J_PER_KWH
from vlm_quant.measure.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, MIN_N_FOR_INTERVAL

SCALES = {"1m": 1e6, "1b": 1e9}  # label in the metric name -> number of images


def scale_metrics(
    j_per_image: float,
    *,
    pue: float,
    carbon_intensity_g_per_kwh: float | None,
    water_l_per_image: float | None,
) -> dict[str, float]:
    """``scale_energy_kwh_per_{1m,1b}_images``, ``scale_co2e_t_...`` and ``scale_water_m3_...``.

    A quantity whose input is None (no intensity, no sourced water) is left out: absent, never 0.
    """
    metrics = {}
    for label, n in SCALES.items():
        facility_kwh = j_per_image * n * pue / J_PER_KWH
        metrics[f"scale_energy_kwh_per_{label}_images"] = facility_kwh
        if carbon_intensity_g_per_kwh is not None:
            metrics[f"scale_co2e_t_per_{label}_images"] = facility_kwh * carbon_intensity_g_per_kwh / 1e6
        if water_l_per_image is not None:
            metrics[f"scale_water_m3_per_{label}_images"] = water_l_per_image * n / 1000.0
    return metrics


def saving(
    baseline: Sequence[float], candidate: Sequence[float], *, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float | None, float | None]:
    """``(saving, ci95_low, ci95_high)`` of ``1 - mean(candidate)/mean(baseline)`` (a fraction, <= 1).

    Both inputs are per-window J/image values. The interval is None when either side has fewer than
    ``MIN_N_FOR_INTERVAL`` windows (the project's rule for intervals: too few values pin nothing down).
    """
    base, cand = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if base.size == 0 or cand.size == 0 or base.mean() <= 0:
        raise ValueError("a saving needs per-window energies of both runs, with a positive baseline")
    point = float(1.0 - cand.mean() / base.mean())
    if min(base.size, cand.size) < MIN_N_FOR_INTERVAL:
        return point, None, None
    rng = np.random.default_rng(seed)
    base_means = rng.choice(base, size=(BOOTSTRAP_RESAMPLES, base.size)).mean(axis=1)
    cand_means = rng.choice(cand, size=(BOOTSTRAP_RESAMPLES, cand.size)).mean(axis=1)
    savings = 1.0 - cand_means / base_means
    low, high = np.percentile(savings, [2.5, 97.5])
    return point, float(low), float(high)
