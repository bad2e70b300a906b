"""Fakes for the measurement tests: a stepping clock, a pynvml module, a GPU with scripted readings."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import SimpleNamespace

import pytest


class FakeClock:
    """A clock (seconds) that moves only when told, or by ``step`` on every read. Thread-safe."""

    def __init__(self, start: float = 0.0, step: float = 0.0) -> None:
        self.now = start
        self.step = step
        self.reads = 0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += self.step
            self.reads += 1
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class FakeNVMLError(Exception):
    """Stands in for pynvml.NVMLError."""


class FakeNvml:
    """The subset of the pynvml module our code calls, with scripted readings.

    ``energy_mj`` is an iterable of successive counter readings (or None: not supported);
    ``instant_power_mw`` None makes the instant-power field answer "not supported". ``uuids`` and
    ``pci_bus_ids`` (by NVML index) make the lookups by UUID / PCI bus id strict: only those exist,
    with handles ``handle-<nvml index>``, and ``device_energy_mj`` (by NVML index) gives each device
    its own counter, so a test can tell which GPU was read.
    """

    NVMLError = FakeNVMLError
    NVML_SUCCESS = 0
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_FI_DEV_POWER_INSTANT = 186

    def __init__(
        self,
        *,
        device_count: int = 1,
        energy_mj: Iterable[int] | None = (1_000_000,),
        power_mw: int = 150_000,
        instant_power_mw: int | None = 180_000,
        memory_used_bytes: int = 3 * 1024 * 1024 * 1024,
        temperature_c: int = 55,
        sm_clock_mhz: int = 1980,
        compute_pids: tuple[int, ...] = (),
        graphics_pids: tuple[int, ...] = (),
        init_error: str | None = None,
        name: str | bytes = "NVIDIA H100 80GB HBM3",
        uuids: tuple[str, ...] | None = None,
        pci_bus_ids: tuple[str, ...] | None = None,
        device_energy_mj: dict[int, int] | None = None,
    ) -> None:
        self.device_count = device_count
        self._energy = None if energy_mj is None else iter(energy_mj)
        self.power_mw = power_mw
        self.instant_power_mw = instant_power_mw
        self.memory_used_bytes = memory_used_bytes
        self.temperature = temperature_c
        self.sm_clock = sm_clock_mhz
        self.compute_pids = compute_pids
        self.graphics_pids = graphics_pids
        self.init_error = init_error
        self.name = name
        self.init_calls = 0
        self.shutdown_calls = 0
        self.field_calls = 0
        self.average_power_calls = 0
        self.handle_requests: list[tuple[str, object]] = []
        self.uuids = uuids
        self.pci_bus_ids = pci_bus_ids
        self.device_energy_mj = device_energy_mj

    def nvmlInit(self) -> None:
        if self.init_error:
            raise FakeNVMLError(self.init_error)
        self.init_calls += 1

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        self.handle_requests.append(("index", index))
        if index >= self.device_count:
            raise FakeNVMLError("Invalid Argument")
        return f"handle-{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        self.handle_requests.append(("uuid", uuid))
        if self.uuids is None:
            return f"handle-{uuid}"
        if uuid not in self.uuids:
            raise FakeNVMLError("Not Found")
        return f"handle-{self.uuids.index(uuid)}"

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> str:
        self.handle_requests.append(("pci", bus_id))
        if bus_id not in (self.pci_bus_ids or ()):
            raise FakeNVMLError("Not Found")
        return f"handle-{self.pci_bus_ids.index(bus_id)}"

    def nvmlDeviceGetIndex(self, handle: str) -> int:
        index = handle.removeprefix("handle-")
        if not index.isdigit():
            raise FakeNVMLError("Not Supported")  # e.g. a MIG instance
        return int(index)

    def nvmlDeviceGetUUID(self, handle: str) -> str:
        index = handle.removeprefix("handle-")
        if self.uuids is not None and index.isdigit():
            return self.uuids[int(index)]
        return index if index.startswith(("GPU-", "MIG-")) else f"GPU-fake-{index}"

    def nvmlDeviceGetName(self, handle: str) -> str | bytes:
        return self.name

    def nvmlSystemGetDriverVersion(self) -> str:
        return "570.86.15"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if self.device_energy_mj is not None:
            return self.device_energy_mj[self.nvmlDeviceGetIndex(handle)]
        if self._energy is None:
            raise FakeNVMLError("Not Supported")
        return next(self._energy)

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        self.average_power_calls += 1
        return self.power_mw

    def nvmlDeviceGetFieldValues(self, handle: str, field_ids: list[int]) -> list[SimpleNamespace]:
        self.field_calls += 1
        assert field_ids == [self.NVML_FI_DEV_POWER_INSTANT]
        if self.instant_power_mw is None:
            return [SimpleNamespace(nvmlReturn=self.NVML_ERROR_NOT_SUPPORTED, value=None)]
        return [
            SimpleNamespace(nvmlReturn=self.NVML_SUCCESS, value=SimpleNamespace(uiVal=self.instant_power_mw))
        ]

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> SimpleNamespace:
        return SimpleNamespace(used=self.memory_used_bytes, total=80 * 1024**3)

    def nvmlDeviceGetTemperature(self, handle: str, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self.temperature

    def nvmlDeviceGetClockInfo(self, handle: str, clock_type: int) -> int:
        assert clock_type == self.NVML_CLOCK_SM
        return self.sm_clock

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=0) for pid in self.compute_pids]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=0) for pid in self.graphics_pids]


class ScriptedGpu:
    """A ``Gpu``-shaped object whose readings come from a counter; counts every read. Thread-safe."""

    available = True
    reason = None
    name = "Fake GPU"

    def __init__(self, *, fail_after: int | None = None, energy_mj: Iterable[float] = ()) -> None:
        self.reads = 0
        self.fail_after = fail_after
        self._energy = iter(energy_mj)
        self._lock = threading.Lock()

    def energy_mj(self) -> float | None:
        return next(self._energy)

    def power_w(self) -> float:
        with self._lock:
            self.reads += 1
            if self.fail_after is not None and self.reads > self.fail_after:
                raise RuntimeError("GPU fell off the bus")
            return 100.0 + self.reads

    def temperature_c(self) -> float:
        return 50.0

    def sm_clock_mhz(self) -> float | None:
        return None  # a reading the board does not report

    def memory_used_mib(self) -> float:
        return 1000.0 + self.reads


@pytest.fixture
def fake_clock() -> type[FakeClock]:
    return FakeClock


@pytest.fixture
def fake_nvml() -> type[FakeNvml]:
    return FakeNvml


@pytest.fixture
def scripted_gpu() -> type[ScriptedGpu]:
    return ScriptedGpu
