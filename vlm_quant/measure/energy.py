"""GPU energy of named measurement windows, from NVML's total-energy counter (zeus's design).

Energy is the difference of ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded)
between the window's ends, not an integral of sampled power: the counter is maintained by the
board itself and misses no spikes between samples. It is refreshed about every 100 ms, so a window
carries an error of up to ~0.1 s of power at each end. A window shorter than ``SHORT_WINDOW_S``
(1 s, where the two ends alone can be off by ~20%, and an 80 ms window can read a delta of exactly 0)
gives no energy at all, and so does a counter that went backwards (driver reload): the window's
``absent_reason`` says why, and callers log it as a tag. Without a GPU (``NullGpu``) or on boards
without the counter (before Volta) energy is None too: absent, never zero.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], float]  # seconds
SHORT_WINDOW_S = 1.0  # shorter windows: energy absent (the ~100 ms counter refresh would dominate)
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class EnergyWindow:
    """Time and GPU energy of one window; ``absent_reason`` says why ``energy_j`` is None, when it is."""

    name: str
    duration_s: float
    energy_j: float | None
    mean_power_w: float | None
    absent_reason: str | None = None


class EnergyMeter:
    """Named, possibly nested or overlapping, energy windows on one GPU.

    ``clock`` (seconds) is injectable for tests. ``synchronize`` is called at both ends of a window
    so queued GPU work is billed to the right window: pass ``DeviceTimer(device).synchronize``.
    """

    def __init__(
        self, gpu: Any, clock: Clock = time.perf_counter, synchronize: Callable[[], None] | None = None
    ):
        self.gpu = gpu
        self.clock = clock
        self.synchronize = synchronize or (lambda: None)
        self._open: dict[str, tuple[float, float | None]] = {}  # name -> (start s, start mJ)

    def begin_window(self, name: str) -> None:
        """Open window ``name``; raises ValueError if a window of that name is already open."""
        if name in self._open:
            raise ValueError(f"energy window {name!r} is already open")
        self.synchronize()
        self._open[name] = (self.clock(), self.gpu.energy_mj())

    def end_window(self, name: str) -> EnergyWindow:
        """Close window ``name`` and return its duration (s), energy (J) and mean power (W)."""
        if name not in self._open:
            raise ValueError(f"energy window {name!r} was not begun (open: {sorted(self._open)})")
        self.synchronize()
        end_s, end_mj = self.clock(), self.gpu.energy_mj()
        start_s, start_mj = self._open.pop(name)
        return _window(name, end_s - start_s, start_mj, end_mj)


    def discard_window(self, name: str) -> None:
        """Close window ``name`` without a result (its work failed, e.g. out of memory); no-op if not open."""
        self._open.pop(name, None)


def _window(name: str, duration_s: float, start_mj: float | None, end_mj: float | None) -> EnergyWindow:
    """Build the window result from the two counter readings (mJ); energy absent when untrustworthy."""
    if start_mj is None or end_mj is None:
        return EnergyWindow(name, duration_s, None, None, "no GPU energy counter on this device")
    if end_mj < start_mj:  # the counter restarts when the driver reloads
        return EnergyWindow(
            name, duration_s, None, None, "NVML energy counter went backwards (driver reload?)"
        )
    if duration_s < SHORT_WINDOW_S:
        return EnergyWindow(
            name,
            duration_s,
            None,
            None,
            f"window lasted {duration_s:.3f} s (< {SHORT_WINDOW_S:.0f} s): the NVML energy counter "
            "updates about every 100 ms, too coarse for it; measure over more seconds (cost_seconds)",
        )
    energy_j = (end_mj - start_mj) / 1000.0
    return EnergyWindow(name, duration_s, energy_j, energy_j / duration_s)


def measure_idle_window(
    gpu: Any,
    seconds: float = 5.0,
    *,
    clock: Clock = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> EnergyWindow | None:
    """The GPU energy window over ``seconds`` of doing nothing (its ``mean_power_w`` in W, or the reason
    it has none); None without an energy counter.

    Take it before loading the model, so the reading is the board's idle floor to compare against.
    """
    if not gpu.available:
        return None  # no counter to read: do not spend the seconds waiting
    meter = EnergyMeter(gpu, clock=clock)
    meter.begin_window("idle")
    sleep(seconds)
    return meter.end_window("idle")


def derive_energy_metrics(window: EnergyWindow, n_images: int, n_tokens: int) -> dict[str, float]:
    """Per-unit energy metrics of a window in which ``n_images`` images / ``n_tokens`` tokens were made.

    Keys: ``energy_kwh``, ``energy_j_per_image``, ``energy_j_per_token`` (when ``n_tokens > 0``),
    ``images_per_kwh`` (when energy > 0). An empty dict when the energy is unknown: absent, never 0.
    """
    if n_images <= 0 or n_tokens < 0:
        raise ValueError(f"need n_images > 0 and n_tokens >= 0, got {n_images}, {n_tokens}")
    if window.energy_j is None:
        return {}
    energy_kwh = window.energy_j / J_PER_KWH
    metrics = {"energy_kwh": energy_kwh, "energy_j_per_image": window.energy_j / n_images}
    if n_tokens > 0:
        metrics["energy_j_per_token"] = window.energy_j / n_tokens
    if energy_kwh > 0:
        metrics["images_per_kwh"] = n_images / energy_kwh
    return metrics
