"""Each rank measures its own GPU: torch's cuda:{i} found in NVML by UUID / PCI bus id, never by index alone.

The fake machine has four GPUs in NVML's (PCI) order; the run sees two of them
(``CUDA_VISIBLE_DEVICES=2,3``) and CUDA orders them fastest first, so torch's cuda:0 is NVML's GPU 3
and cuda:1 is NVML's GPU 2. Any mapping by index reads the wrong boards.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch

from vlm_quant.measure import carbon, nvml
from vlm_quant.measure.nvml import (
    DeviceIdentity,
    NullGpu,
    cuda_identity,
    cuda_index_of,
    nvml_indices,
    open_gpu,
)

UUIDS = tuple(f"GPU-0000000{i}-aaaa-bbbb-cccc-0123456789ab" for i in range(4))
PCI = ("0000:1b:00.0", "0000:3b:00.0", "0000:86:00.0", "0000:af:00.0")
ENERGY_MJ = {0: 1_000, 1: 2_000, 2: 30_000, 3: 400_000}  # every board's counter differs
CUDA_TO_NVML = {0: 3, 1: 2}  # under CUDA_VISIBLE_DEVICES=2,3 with CUDA's fastest-first order


def torch_properties(cuda_index: int, *, uuid: str | None = None) -> SimpleNamespace:
    """What torch.cuda.get_device_properties reports for cuda:{i} (uuid without NVML's prefix)."""
    nvml_index = CUDA_TO_NVML[cuda_index]
    domain, bus, rest = PCI[nvml_index].split(":")
    return SimpleNamespace(uuid=uuid or UUIDS[nvml_index].removeprefix("GPU-"), pci_domain_id=int(domain, 16),
                           pci_bus_id=int(bus, 16), pci_device_id=int(rest.split(".")[0], 16))


@pytest.fixture
def machine(fake_nvml):
    return fake_nvml(device_count=4, uuids=UUIDS, pci_bus_ids=PCI, device_energy_mj=ENERGY_MJ)


def test_torch_identity_gives_nvml_uuid_and_pci_bus_id_forms():
    identity = cuda_identity(1, torch_properties(1))
    assert identity == DeviceIdentity(1, UUIDS[2].removeprefix("GPU-"), "0000:86:00.0")
    assert cuda_identity(0, SimpleNamespace(uuid="abc")) == DeviceIdentity(0, "abc", None)  # older torch
    assert cuda_identity(0) is None  # this machine has no CUDA: nothing to match by


def test_each_rank_reads_its_own_board_so_the_sum_over_ranks_is_the_sum_of_boards(machine):
    environ = {"CUDA_VISIBLE_DEVICES": "2,3"}
    gpus = [open_gpu(i, nvml=machine, environ=environ, identity=cuda_identity(i, torch_properties(i)))
            for i in (0, 1)]
    assert [gpu.nvml_index for gpu in gpus] == [3, 2]
    assert [gpu.uuid for gpu in gpus] == [UUIDS[3], UUIDS[2]] and {g.matched_by for g in gpus} == {"uuid"}
    assert sum(gpu.energy_mj() for gpu in gpus) == ENERGY_MJ[3] + ENERGY_MJ[2]  # not 2 x one board's
    assert not any(kind == "index" for kind, _ in machine.handle_requests)


def test_pci_bus_id_finds_the_board_when_nvml_does_not_know_the_uuid(machine):
    properties = torch_properties(1, uuid="deadbeef-0000-0000-0000-000000000000")  # e.g. a MIG instance
    gpu = open_gpu(1, nvml=machine, environ={}, identity=cuda_identity(1, properties))
    assert (gpu.nvml_index, gpu.matched_by) == (2, "pci_bus_id")


def test_an_unmatched_device_is_absent_with_a_reason_never_another_board(machine):
    identity = DeviceIdentity(0, "deadbeef-0000-0000-0000-000000000000", "0000:ff:00.0")
    gpu = open_gpu(0, nvml=machine, environ={}, identity=identity)
    assert isinstance(gpu, NullGpu) and "deadbeef" in gpu.reason and "0000:ff:00.0" in gpu.reason
    assert not any(kind == "index" for kind, _ in machine.handle_requests)
    assert machine.init_calls == machine.shutdown_calls == 1


def test_cuda_index_of_a_bare_cuda_device_is_the_current_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)  # distributed.setup pinned local rank 1
    assert cuda_index_of(torch.device("cuda")) == 1
    assert cuda_index_of(torch.device("cuda", 0)) == 0
    assert cuda_index_of(torch.device("cpu")) is None


def test_codecarbon_gets_nvml_indices_of_the_machines_ranks(machine):
    def identity_of(i):
        return cuda_identity(i, torch_properties(i))

    assert nvml_indices([0, 1], nvml=machine, identity_of=identity_of) == [3, 2]


def test_codecarbon_runs_once_per_machine_in_local_rank_0():
    built = []

    def factory(**options):
        built.append(options)
        return SimpleNamespace()

    other = carbon.open_machine_codecarbon_tracker(local_rank=1, gpu_ids=[2], tracker_factory=factory)
    assert isinstance(other, carbon.NullCodecarbonTracker) and "local rank 0" in other.reason
    assert other.stop().as_metrics() == {}  # absent on that rank, not 0: the total is local rank 0's
    first = carbon.open_machine_codecarbon_tracker(local_rank=0, gpu_ids=[3, 2], tracker_factory=factory)
    assert first.available and [options["gpu_ids"] for options in built] == [[3, 2]]


def test_run_instruments_of_rank_1_measure_its_gpu_and_leave_the_machine_to_rank_0(machine, monkeypatch):
    from vlm_quant.run import instruments
    from vlm_quant.run.distributed import RankInfo

    monkeypatch.setitem(sys.modules, "pynvml", machine)
    monkeypatch.setattr(nvml, "cuda_identity", lambda i: cuda_identity(i, torch_properties(i)))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    codecarbon_calls = []

    def fake_codecarbon(**kwargs):
        codecarbon_calls.append(kwargs)
        return carbon.NullCodecarbonTracker("fake")

    monkeypatch.setattr(instruments, "open_machine_codecarbon_tracker", fake_codecarbon)
    common = dict(power_hz=10.0, idle_seconds=0.0, country_iso_code="USA", pue=1.0)
    rank1 = instruments.RunInstruments(torch.device("cuda"), rank=RankInfo(1, 2, 1, 2), **common)
    assert rank1.gpu.nvml_index == 2 and rank1.gpu.energy_mj() == ENERGY_MJ[2]
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    rank0 = instruments.RunInstruments(torch.device("cuda"), rank=RankInfo(0, 2, 0, 2), **common)
    assert rank0.gpu.nvml_index == 3
    assert [(c["local_rank"], c["gpu_ids"]) for c in codecarbon_calls] == [(1, None), (0, [3, 2])]
    rank0.gpu.close(), rank1.gpu.close()
