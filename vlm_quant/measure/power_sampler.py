"""A background thread that samples GPU power, temperature, SM clock and memory used over time.

The timeline is for the plot and for peak NVML memory; energy comes from the NVML energy counter
(``energy.EnergyMeter``), not from integrating these samples. Pacing uses the real monotonic clock
(so a fake ``clock`` in tests cannot stall the thread); the injectable ``clock`` only stamps samples.
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

Clock = Callable[[], float]  # seconds


@dataclass(frozen=True)
class PowerSample:
    """One reading; None where the GPU did not report the quantity."""

    t_ms: float  # milliseconds since the sampler started
    power_w: float | None
    temperature_c: float | None
    sm_clock_mhz: float | None
    memory_used_mib: float | None


CSV_COLUMNS = tuple(field.name for field in fields(PowerSample))


class PowerSampler:
    """Samples ``gpu`` at ``hz`` (default 10 Hz) from ``start()`` to ``stop()`` in a daemon thread.

    Use as a context manager; on leaving the block (also through an exception) the thread is
    stopped and joined, one last sample is taken, and every sample is kept in ``samples``. With a
    ``NullGpu`` nothing is recorded and ``reason`` says why.
    """

    def __init__(self, gpu: Any, hz: float = 10.0, clock: Clock = time.perf_counter) -> None:
        if hz <= 0:
            raise ValueError(f"hz must be > 0, got {hz}")
        self.gpu = gpu
        self.period_s = 1.0 / hz
        self.clock = clock
        self.samples: list[PowerSample] = []
        self.reason: str | None = None if gpu.available else f"no GPU to sample: {gpu.reason}"
        self.error: BaseException | None = None  # what stopped the thread early, if anything
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_s = 0.0

    def start(self) -> PowerSampler:
        """Start sampling (a no-op without a GPU). Returns self."""
        if self._thread is not None:
            raise RuntimeError("PowerSampler already started")
        if not self.gpu.available:
            return self
        self._start_s = self.clock()
        self._thread = threading.Thread(target=self._run, name="vlm-quant-power-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[PowerSample]:
        """Stop and join the thread; returns all samples (timestamps in ms since ``start()``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return list(self.samples)

    def __enter__(self) -> PowerSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()  # exceptions from the block propagate; the samples stay in self.samples

    def _run(self) -> None:
        """Sample on a fixed grid of real time until stopped, then take one closing sample."""
        next_tick = time.monotonic()
        try:
            while not self._stop.is_set():
                self.samples.append(self._sample())
                next_tick += self.period_s
                # A fixed grid (not "sleep a period after each sample") keeps the rate at hz even
                # though each NVML query takes time; if we fall behind, we resample at once.
                self._stop.wait(max(0.0, next_tick - time.monotonic()))
            self.samples.append(self._sample())  # the window's end, so the plot spans all of it
        except Exception as error:  # keep what we have; the caller can read .error
            self.error = error
            self.reason = f"sampling stopped early: {error!r}"

    def _sample(self) -> PowerSample:
        """One reading of every quantity, stamped in ms since start."""
        gpu = self.gpu
        return PowerSample(
            t_ms=(self.clock() - self._start_s) * 1000.0,
            power_w=gpu.power_w(),
            temperature_c=gpu.temperature_c(),
            sm_clock_mhz=gpu.sm_clock_mhz(),
            memory_used_mib=gpu.memory_used_mib(),
        )


def peak_memory_used_mib(samples: Sequence[PowerSample]) -> float | None:
    """Highest NVML device memory in use over the samples, in MiB; None if never reported."""
    values = [s.memory_used_mib for s in samples if s.memory_used_mib is not None]
    return max(values) if values else None


def write_power_csv(samples: Sequence[PowerSample], path: str | Path) -> Path:
    """Write samples as CSV with unit-carrying columns ``CSV_COLUMNS``; None becomes an empty cell."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for sample in samples:
            writer.writerow(["" if value is None else value for value in astuple(sample)])
    return path


def plot_power(samples: Sequence[PowerSample], path_png: str | Path, title: str) -> Path:
    """Plot power (W) and device memory used (MiB) against time (s) into a PNG; returns its path.

    Uses matplotlib's object API with the Agg canvas: no pyplot global state, no display needed,
    safe from any thread. An empty sample list gives a figure saying so rather than an error.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(figure)
    power_axes, memory_axes = figure.subplots(2, 1, sharex=True)
    _plot_series(power_axes, samples, "power_w", "GPU power (W)", "tab:red")
    _plot_series(memory_axes, samples, "memory_used_mib", "device memory used (MiB)", "tab:blue")
    memory_axes.set_xlabel("time since start (s)")
    figure.suptitle(title)
    if not samples:
        power_axes.text(0.5, 0.5, "no samples", ha="center", va="center", transform=power_axes.transAxes)
    figure.savefig(path, dpi=120)
    return path


def _plot_series(axes: Any, samples: Sequence[PowerSample], field: str, label: str, color: str) -> None:
    """One quantity against time in seconds, skipping samples where it was not reported."""
    points = [(s.t_ms / 1000.0, getattr(s, field)) for s in samples if getattr(s, field) is not None]
    axes.plot([t for t, _ in points], [v for _, v in points], color=color, linewidth=1.2)
    axes.set_ylabel(label)
    axes.grid(True, alpha=0.3)
