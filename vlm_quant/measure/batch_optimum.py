"""The energy-optimal batch size: the cost-pass batch size with the least GPU energy per image.

ML.ENERGY's leaderboard compares models at their minimum-energy batch size; this picks it from the
``energy_j_per_image_bs{B}`` metrics the cost pass measured (one NVML window per batch size). Only the
batch sizes that were measured count: one that ran out of memory or whose window gave no energy is not
a candidate, and with none measured there is no optimum (absent, never a guess).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_PER_BATCH = re.compile(r"^energy_j_per_image_bs(\d+)$")


def energy_per_image_by_batch(metrics: Mapping[str, float | None]) -> dict[int, float]:
    """``{batch size: J/image}`` of every ``energy_j_per_image_bs{B}`` metric that has a value."""
    curve = {}
    for key, value in metrics.items():
        match = _PER_BATCH.match(key)
        if match and value is not None:
            curve[int(match.group(1))] = float(value)
    return dict(sorted(curve.items()))


def energy_optimal_batch(curve: Mapping[int, float]) -> tuple[int, float] | None:
    """``(batch size, J/image)`` of the least J/image; a tie goes to the smaller batch (less latency).

    None when ``curve`` is empty.
    """
    if not curve:
        return None
    best = min(curve, key=lambda batch: (curve[batch], batch))
    return best, curve[best]


def optimum_metrics(metrics: Mapping[str, float | None]) -> dict[str, float]:
    """``energy_optimal_batch_size`` and ``energy_j_per_image_optimal`` (J/image), or {} when unmeasured."""
    best = energy_optimal_batch(energy_per_image_by_batch(metrics))
    if best is None:
        return {}
    return {"energy_optimal_batch_size": float(best[0]), "energy_j_per_image_optimal": best[1]}
