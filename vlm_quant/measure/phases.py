"""Energy by phase: prefill per image and decode per token, from two kinds of NVML windows.

The split is the one optimum-benchmark and Hugging Face's AI Energy Score use: a window of *prefill-only*
calls (the same batch-1 requests, generating exactly one new token: preprocessing + vision + prefill) and
a window of *full* calls (the same requests at the run's output length, ``new_tokens`` tokens). Then

    prefill energy (J/image)       = E(prefill window) / calls in it
    full energy (J/image)          = E(full window) / calls in it
    decode energy (J/token)        = (full - prefill) / (new_tokens - 1)     <- a difference of two windows
    decode share of an image (0-1) = (full - prefill) / full

Each window must last at least ``PHASE_MIN_WINDOW_S`` (2 s: 20 refreshes of the ~100 ms counter, so its
two ends are off by at most ~10%); a shorter one is dropped and counted, and with none left the phase
metrics are absent with a reason. The windows are repeated and interleaved (prefill, full, prefill, ...)
so slow drift (temperature, clocks) lands in both kinds alike; the means are over the kept windows. A
difference that comes out <= 0 (noise larger than the decode energy) is absent, never clamped to 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vlm_quant.measure.energy import EnergyWindow
from vlm_quant.measure.stats import summarize

PHASE_MIN_WINDOW_S = 2.0  # shorter phase windows are dropped (the counter's refresh would dominate)


@dataclass(frozen=True)
class PhaseWindow:
    """One measured window: its energy reading and how many batch-1 calls (images) ran in it."""

    window: EnergyWindow
    calls: int

    @property
    def usable(self) -> bool:
        """True when the window has an energy and lasted >= ``PHASE_MIN_WINDOW_S``."""
        return (
            self.window.energy_j is not None
            and self.window.duration_s >= PHASE_MIN_WINDOW_S
            and self.calls > 0
        )

    @property
    def j_per_image(self) -> float:
        """GPU energy per call (J/image); only meaningful when ``usable``."""
        return float(self.window.energy_j or 0.0) / self.calls


@dataclass
class PhaseEnergy:
    """Phase metrics (units in the names) and the reasons for what is absent."""

    metrics: dict[str, float] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)  # metric name -> why it is absent
    full_j_per_image: list[float] = field(default_factory=list)  # per kept full window, for intervals


def phase_energy(prefill: Sequence[PhaseWindow], full: Sequence[PhaseWindow], new_tokens: int) -> PhaseEnergy:
    """Prefill J/image, full J/image at batch 1, decode J/token and the decode share (see module doc).

    ``new_tokens`` (>= 2) is the full calls' output length. Window and call counts of both kinds are
    metrics too (``phase_*_windows_n``, ``phase_*_calls_n``, ``phase_*_windows_dropped_n``).
    """
    if new_tokens < 2:
        raise ValueError(f"decode energy needs new_tokens >= 2, got {new_tokens}")
    result = PhaseEnergy()
    kept: dict[str, list[PhaseWindow]] = {}
    for kind, windows in (("prefill", prefill), ("full", full)):
        kept[kind] = [w for w in windows if w.usable]
        result.metrics[f"phase_{kind}_windows_n"] = float(len(kept[kind]))
        result.metrics[f"phase_{kind}_windows_dropped_n"] = float(len(windows) - len(kept[kind]))
        result.metrics[f"phase_{kind}_calls_n"] = float(sum(w.calls for w in kept[kind]))
    if not kept["prefill"] or not kept["full"]:
        reason = _no_window_reason(prefill, full)
        for name in ("prefill_energy_j_per_image", "bs1_energy_j_per_image", "decode_energy_j_per_token"):
            result.absent[name] = reason
        return result
    prefill_j = _pooled_j_per_image(kept["prefill"])
    full_j = _pooled_j_per_image(kept["full"])
    result.full_j_per_image = [w.j_per_image for w in kept["full"]]
    result.metrics["prefill_energy_j_per_image"] = prefill_j
    result.metrics.update(summarize(result.full_j_per_image).as_metrics("bs1_energy_j_per_image"))
    result.metrics["bs1_energy_j_per_image"] = full_j
    decode_j = full_j - prefill_j
    if decode_j <= 0:
        result.absent["decode_energy_j_per_token"] = (
            f"full windows ({full_j:.3g} J/image) did not exceed prefill windows ({prefill_j:.3g} J/image): "
            "the decode energy is below the windows' noise; lengthen cost_seconds or raise cost_new_tokens"
        )
        return result
    result.metrics["decode_energy_j_per_token"] = decode_j / (new_tokens - 1)
    result.metrics["decode_energy_share"] = decode_j / full_j
    return result


def _pooled_j_per_image(windows: Sequence[PhaseWindow]) -> float:
    """Total energy over total calls of the kept windows (J/image): longer windows weigh more."""
    return sum(float(w.window.energy_j or 0.0) for w in windows) / sum(w.calls for w in windows)


def _no_window_reason(prefill: Sequence[PhaseWindow], full: Sequence[PhaseWindow]) -> str:
    """Why no window of some kind was usable: the first window's own reason, or its length."""
    for window in (*prefill, *full):
        if window.window.absent_reason:
            return window.window.absent_reason
    if not prefill or not full:
        return "no phase windows were measured"
    shortest = min(w.window.duration_s for w in (*prefill, *full))
    return (
        f"a phase window lasted {shortest:.2f} s (< {PHASE_MIN_WINDOW_S:.0f} s): too short for the NVML "
        "energy counter's ~100 ms refresh; raise cost_seconds"
    )
