"""One GPU seen through NVML (power, energy counter, memory, clocks), or a null object saying why not.

``open_gpu`` never raises for a missing GPU, driver or library: it returns a ``NullGpu`` whose
readings are None and whose ``reason`` says what was missing, so measurement code has no ``if gpu:``.
A ``Gpu`` reading that the board does not support (e.g. the energy counter before Volta) is None
too: absent, never zero.

Index mapping: ``device_index`` is the CUDA index torch uses. NVML enumerates every GPU of the
machine in PCI order and ignores ``CUDA_VISIBLE_DEVICES``, so we translate through that variable
(entries may be NVML indices or ``GPU-``/``MIG-`` UUIDs). CUDA's own default order is
"fastest first"; on a machine with mixed GPU models set ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so the two
orders agree.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

MIB = 1024 * 1024
T = TypeVar("T")


class NullGpu:
    """No GPU to measure: every reading is None, ``reason`` says why."""

    available = False
    name: str | None = None
    driver_version: str | None = None
    index: int | None = None

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def energy_mj(self) -> float | None:
        """Always None: there is no energy counter."""
        return None

    def power_w(self) -> float | None:
        """Always None."""
        return None

    def memory_used_mib(self) -> float | None:
        """Always None."""
        return None

    def temperature_c(self) -> float | None:
        """Always None."""
        return None

    def sm_clock_mhz(self) -> float | None:
        """Always None."""
        return None

    def other_processes(self) -> list[int]:
        """No GPU, so no other process on it."""
        return []

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> NullGpu:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NullGpu(reason={self.reason!r})"


class Gpu:
    """An NVML handle to one GPU. Readings return None when the board does not support them.

    Built by ``open_gpu``, which has already called ``nvmlInit``; ``close()`` calls the matching
    ``nvmlShutdown`` (NVML counts init/shutdown pairs, so several ``Gpu`` objects may coexist).
    """

    available = True
    reason: str | None = None

    def __init__(self, nvml: Any, handle: Any, index: int, *, own_pid: int | None = None) -> None:
        self._nvml = nvml
        self._handle = handle
        self.index = index
        self._own_pid = os.getpid() if own_pid is None else own_pid
        self._instant_power = hasattr(nvml, "NVML_FI_DEV_POWER_INSTANT")
        self._closed = False
        self.name = _text(self._read(lambda: nvml.nvmlDeviceGetName(handle))) or "unknown NVIDIA GPU"
        self.driver_version = _text(self._read(nvml.nvmlSystemGetDriverVersion))

    def energy_mj(self) -> float | None:
        """Total energy the board used since the driver loaded, in millijoules (Volta and newer).

        The counter is updated about every 100 ms, so differences are only meaningful over windows
        of seconds (see ``energy.EnergyMeter``).
        """
        return _number(self._read(lambda: self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)))

    def power_w(self) -> float | None:
        """Current board power draw in watts.

        Prefers NVML's instantaneous field: since Ampere ``nvmlDeviceGetPowerUsage`` returns a
        1-second average, which smooths the power timeline. Falls back to it where the field is
        not supported.
        """
        if self._instant_power:
            milliwatts = self._read(self._instant_power_mw)
            if milliwatts is not None:
                return milliwatts / 1000.0
            self._instant_power = False  # not supported here: stop asking
        milliwatts = self._read(lambda: self._nvml.nvmlDeviceGetPowerUsage(self._handle))
        return None if milliwatts is None else milliwatts / 1000.0

    def memory_used_mib(self) -> float | None:
        """Device memory in use by all processes (NVML's view, includes the CUDA context), in MiB."""
        info = self._read(lambda: self._nvml.nvmlDeviceGetMemoryInfo(self._handle))
        return None if info is None else info.used / MIB

    def temperature_c(self) -> float | None:
        """GPU die temperature in degrees Celsius."""
        nvml = self._nvml
        return _number(
            self._read(lambda: nvml.nvmlDeviceGetTemperature(self._handle, nvml.NVML_TEMPERATURE_GPU))
        )

    def sm_clock_mhz(self) -> float | None:
        """Current streaming-multiprocessor clock in MHz (drops under thermal or power throttling)."""
        nvml = self._nvml
        return _number(self._read(lambda: nvml.nvmlDeviceGetClockInfo(self._handle, nvml.NVML_CLOCK_SM)))

    def other_processes(self) -> list[int]:
        """PIDs of other processes with a context on this GPU (they disturb the measurements).

        Inside a container NVML may report host PIDs, so our own process can appear here too; treat
        the list as a reason to warn, not to fail.
        """
        pids: set[int] = set()
        for query in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            function = getattr(self._nvml, query, None)
            processes = self._read(lambda f=function: f(self._handle)) if function else None
            pids.update(process.pid for process in processes or [])
        return sorted(pid for pid in pids if pid != self._own_pid)

    def close(self) -> None:
        """Release this object's NVML reference; idempotent."""
        if not self._closed:
            self._closed = True
            self._read(self._nvml.nvmlShutdown)

    def __enter__(self) -> Gpu:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gpu(index={self.index}, name={self.name!r}, driver={self.driver_version!r})"

    def _instant_power_mw(self) -> float | None:
        """Instantaneous power in milliwatts from NVML's field-value API, None if not supported."""
        nvml = self._nvml
        value = nvml.nvmlDeviceGetFieldValues(self._handle, [nvml.NVML_FI_DEV_POWER_INSTANT])[0]
        if value.nvmlReturn != nvml.NVML_SUCCESS:
            return None
        return float(value.value.uiVal)

    def _read(self, query: Callable[[], T]) -> T | None:
        """Run one NVML query; an NVML error (not supported, GPU lost, ...) reads as None."""
        try:
            return query()
        except self._nvml.NVMLError:
            return None


def open_gpu(
    device_index: int | None,
    *,
    nvml: Any = None,
    environ: Mapping[str, str] | None = None,
) -> Gpu | NullGpu:
    """Open the GPU that torch calls ``cuda:{device_index}``; ``None`` means a CPU run.

    ``nvml`` is the pynvml module (injectable for tests); ``environ`` defaults to ``os.environ``
    and is read for ``CUDA_VISIBLE_DEVICES``. Returns a ``NullGpu`` with a reason instead of raising.
    """
    if device_index is None:
        return NullGpu("no CUDA device: the run is on CPU")
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return NullGpu("pynvml not installed (pip install nvidia-ml-py)")
    try:
        nvml.nvmlInit()
    except Exception as error:  # NVMLError, or OSError from a broken driver install
        return NullGpu(f"NVML init failed: {error}")
    env = os.environ if environ is None else environ
    try:
        handle = _handle_for_cuda_index(nvml, device_index, env.get("CUDA_VISIBLE_DEVICES"))
    except (nvml.NVMLError, LookupError) as error:
        nvml.nvmlShutdown()
        return NullGpu(f"no NVML device for cuda:{device_index}: {error}")
    return Gpu(nvml, handle, device_index)


def _handle_for_cuda_index(nvml: Any, cuda_index: int, visible: str | None) -> Any:
    """NVML handle of the GPU that CUDA numbers ``cuda_index`` under ``CUDA_VISIBLE_DEVICES``."""
    if visible is None:
        return nvml.nvmlDeviceGetHandleByIndex(cuda_index)
    entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if cuda_index >= len(entries):
        raise LookupError(f"CUDA_VISIBLE_DEVICES={visible!r} exposes {len(entries)} device(s)")
    entry = entries[cuda_index]
    if entry.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(entry))
    return nvml.nvmlDeviceGetHandleByUUID(entry)


def _text(value: Any) -> str | None:
    """NVML strings are bytes in older bindings and str in newer ones."""
    return value.decode() if isinstance(value, bytes) else value


def _number(value: Any) -> float | None:
    """An NVML integer reading as float, None staying None."""
    return None if value is None else float(value)
