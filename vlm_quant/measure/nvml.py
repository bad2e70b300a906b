"""One GPU seen through NVML (power, energy counter, memory, clocks), or a null object saying why not.

``open_gpu`` never raises for a missing GPU, driver or library: it returns a ``NullGpu`` whose
readings are None and whose ``reason`` says what was missing, so measurement code has no ``if gpu:``.
A ``Gpu`` reading that the board does not support (e.g. the energy counter before Volta) is None
too: absent, never zero.

Device mapping: ``device_index`` is the CUDA index torch uses (``cuda:{i}``). NVML enumerates every
GPU of the machine in PCI order and ignores ``CUDA_VISIBLE_DEVICES``, and CUDA's own default order
is "fastest first", so an index means different GPUs to the two. The GPU is therefore found by what
torch reports about ``cuda:{i}`` itself (`cuda_identity`): its UUID, else its PCI bus id. Only when
torch cannot tell (no CUDA, or an injected fake NVML without an ``identity``) is the index
translated through ``CUDA_VISIBLE_DEVICES`` (entries may be NVML indices or ``GPU-``/``MIG-`` UUIDs).
Each rank of a multi-process run thus reads its own GPU, never GPU 0 for all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

MIB = 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class DeviceIdentity:
    """What torch reports about ``cuda:{index}``, by which NVML can find the same GPU."""

    index: int
    uuid: str | None = None  # torch's form, without NVML's "GPU-"/"MIG-" prefix
    pci_bus_id: str | None = None  # domain:bus:device.function, e.g. "0000:3b:00.0"


def cuda_identity(index: int, properties: Any = None) -> DeviceIdentity | None:
    """UUID and PCI bus id of ``cuda:{index}`` from ``torch.cuda.get_device_properties`` (None without CUDA).

    ``properties`` replaces torch's answer in tests. A field this torch does not report stays None.
    """
    if properties is None:
        try:
            import torch

            if not torch.cuda.is_available():
                return None
            properties = torch.cuda.get_device_properties(index)
        except Exception:  # a CPU build, a broken driver: nothing to match by
            return None
    uuid = getattr(properties, "uuid", None)
    pci = None
    if all(hasattr(properties, name) for name in ("pci_domain_id", "pci_bus_id", "pci_device_id")):
        pci = f"{properties.pci_domain_id:04x}:{properties.pci_bus_id:02x}:{properties.pci_device_id:02x}.0"
    return DeviceIdentity(index, str(uuid) if uuid else None, pci)


def cuda_index_of(device: Any) -> int | None:
    """The ``i`` of ``cuda:{i}`` for a torch device, None for a CPU device.

    A bare ``"cuda"`` means torch's current device, which `run.distributed.setup` pins to the local
    rank: read as 0 it would make every rank measure the machine's first GPU.
    """
    if getattr(device, "type", str(device).split(":")[0]) != "cuda":
        return None
    if getattr(device, "index", None) is not None:
        return int(device.index)
    import torch

    return int(torch.cuda.current_device())


def nvml_indices(
    cuda_indices: Sequence[int],
    *,
    nvml: Any = None,
    identity_of: Callable[[int], DeviceIdentity | None] | None = None,
) -> list[int]:
    """NVML's indices (what codecarbon's ``gpu_ids`` mean) of the GPUs torch calls ``cuda:{i}``.

    A device NVML cannot find, or a MIG instance (no index of its own), is left out: measured by
    nobody rather than as another GPU. ``identity_of`` replaces `cuda_identity` in tests.
    """
    found = []
    for index in cuda_indices:
        identity = identity_of(index) if identity_of is not None else None
        with open_gpu(index, nvml=nvml, identity=identity) as gpu:
            if gpu.nvml_index is not None:
                found.append(int(gpu.nvml_index))
    return found


class NullGpu:
    """No GPU to measure: every reading is None, ``reason`` says why."""

    available = False
    name: str | None = None
    driver_version: str | None = None
    index: int | None = None
    nvml_index: int | None = None
    uuid: str | None = None
    matched_by: str | None = None

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

    def __init__(
        self, nvml: Any, handle: Any, index: int, *, own_pid: int | None = None, matched_by: str = "index"
    ) -> None:
        self._nvml = nvml
        self._handle = handle
        self.index = index  # torch's cuda:{index}
        self.matched_by = matched_by  # how the NVML device was found: "uuid", "pci_bus_id" or "index"
        self._own_pid = os.getpid() if own_pid is None else own_pid
        self._instant_power = hasattr(nvml, "NVML_FI_DEV_POWER_INSTANT")
        self._closed = False
        self.name = _text(self._read(lambda: nvml.nvmlDeviceGetName(handle))) or "unknown NVIDIA GPU"
        self.driver_version = _text(self._read(nvml.nvmlSystemGetDriverVersion))
        self.uuid = _text(self._read(lambda: nvml.nvmlDeviceGetUUID(handle)))  # NVML's "GPU-..." form
        index_query = getattr(nvml, "nvmlDeviceGetIndex", None)
        # NVML's own index of this GPU (what codecarbon's gpu_ids mean), None for a MIG instance
        self.nvml_index = self._read(lambda: index_query(handle)) if index_query else None

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
        return (
            f"Gpu(cuda:{self.index}, nvml index {self.nvml_index}, {self.uuid}, name={self.name!r}, "
            f"driver={self.driver_version!r}, matched by {self.matched_by})"
        )

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
    identity: DeviceIdentity | None = None,
) -> Gpu | NullGpu:
    """Open the GPU that torch calls ``cuda:{device_index}``; ``None`` means a CPU run.

    ``nvml`` is the pynvml module (injectable for tests); ``identity`` is what torch reports about
    the device (default: `cuda_identity` when the real pynvml is used); ``environ`` defaults to
    ``os.environ`` and is read for ``CUDA_VISIBLE_DEVICES`` when there is no identity to match.
    Returns a ``NullGpu`` with a reason instead of raising.
    """
    if device_index is None:
        return NullGpu("no CUDA device: the run is on CPU")
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return NullGpu("pynvml not installed (pip install nvidia-ml-py)")
        identity = identity or cuda_identity(device_index)
    try:
        nvml.nvmlInit()
    except Exception as error:  # NVMLError, or OSError from a broken driver install
        return NullGpu(f"NVML init failed: {error}")
    env = os.environ if environ is None else environ
    try:
        if identity is not None:
            handle, matched_by = _handle_for_identity(nvml, identity)
        else:
            handle, matched_by = _handle_for_cuda_index(nvml, device_index, env.get("CUDA_VISIBLE_DEVICES"))
    except (nvml.NVMLError, LookupError) as error:
        nvml.nvmlShutdown()
        return NullGpu(f"no NVML device for cuda:{device_index}: {error}")
    return Gpu(nvml, handle, device_index, matched_by=matched_by)


def _handle_for_identity(nvml: Any, identity: DeviceIdentity) -> tuple[Any, str]:
    """NVML handle of the GPU torch described: by UUID, else by PCI bus id (a MIG instance's parent)."""
    tried = []
    if identity.uuid:
        bare = identity.uuid.removeprefix("GPU-").removeprefix("MIG-")
        for uuid in (f"GPU-{bare}", f"MIG-{bare}"):
            try:
                return nvml.nvmlDeviceGetHandleByUUID(uuid), "uuid"
            except nvml.NVMLError as error:
                tried.append(f"UUID {uuid}: {error}")
    by_pci = getattr(nvml, "nvmlDeviceGetHandleByPciBusId", None)
    if identity.pci_bus_id and by_pci is not None:
        try:
            return by_pci(identity.pci_bus_id), "pci_bus_id"
        except nvml.NVMLError as error:
            tried.append(f"PCI bus id {identity.pci_bus_id}: {error}")
    # Never fall back to an index here: it may name another GPU, which would be measured as ours.
    raise LookupError("NVML knows no GPU with torch's " + ("; ".join(tried) or "identity (none reported)"))


def _handle_for_cuda_index(nvml: Any, cuda_index: int, visible: str | None) -> tuple[Any, str]:
    """NVML handle of the GPU that CUDA numbers ``cuda_index`` under ``CUDA_VISIBLE_DEVICES``."""
    if visible is None:
        return nvml.nvmlDeviceGetHandleByIndex(cuda_index), "index"
    entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if cuda_index >= len(entries):
        raise LookupError(f"CUDA_VISIBLE_DEVICES={visible!r} exposes {len(entries)} device(s)")
    entry = entries[cuda_index]
    if entry.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(entry)), "index"
    return nvml.nvmlDeviceGetHandleByUUID(entry), "uuid"


def _text(value: Any) -> str | None:
    """NVML strings are bytes in older bindings and str in newer ones."""
    return value.decode() if isinstance(value, bytes) else value


def _number(value: Any) -> float | None:
    """An NVML integer reading as float, None staying None."""
    return None if value is None else float(value)
