import resource
import sys

import pytest
import torch
from torch import nn

from vlm_quant.measure.memory import (
    MIB,
    SCOPE_LIFETIME,
    SCOPE_WINDOW,
    MemoryTracker,
    weights_footprint_mib,
)


class FakeCuda:
    """torch.cuda's peak-memory API with scripted peaks in bytes."""

    def __init__(self, allocated: int, reserved: int) -> None:
        self.allocated, self.reserved = allocated, reserved
        self.resets: list[str] = []

    def reset_peak_memory_stats(self, device: str) -> None:
        self.resets.append(device)

    def max_memory_allocated(self, device: str) -> int:
        return self.allocated

    def max_memory_reserved(self, device: str) -> int:
        return self.reserved


def test_cpu_reading_has_no_torch_fields_absent_not_zero():
    reading = MemoryTracker("cpu").read()
    assert reading.torch_peak_allocated_mib is None
    assert reading.torch_peak_reserved_mib is None
    assert reading.process_peak_rss_mib is not None and reading.process_peak_rss_mib > 0
    metrics = reading.as_metrics()
    assert set(metrics) == {"peak_rss_mib"}


def test_cuda_peaks_are_reset_at_start_and_read_in_mib():
    cuda = FakeCuda(allocated=3 * MIB, reserved=5 * MIB // 2)
    tracker = MemoryTracker("cuda:1", cuda=cuda)
    assert cuda.resets == ["cuda:1"]
    reading = tracker.read()
    assert reading.torch_peak_allocated_mib == pytest.approx(3.0)
    assert reading.torch_peak_reserved_mib == pytest.approx(2.5)
    assert reading.as_metrics()["peak_vram_allocated_mib"] == pytest.approx(3.0)
    tracker.reset()
    assert cuda.resets == ["cuda:1", "cuda:1"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM reset is Linux-only")
def test_rss_peak_is_the_peak_of_the_window_not_of_the_process():
    tracker = MemoryTracker("cpu")
    if tracker.rss_peak_scope != SCOPE_WINDOW:
        pytest.skip("this kernel/sandbox does not allow resetting VmHWM")
    block = b"\x01" * (96 * MIB)  # written, so resident (not lazily mapped zero pages)
    del block
    peak_with_block = tracker.read().process_peak_rss_mib
    tracker.reset()
    peak_without_block = tracker.read().process_peak_rss_mib
    assert peak_with_block - peak_without_block >= 80  # the freed 96 MiB no longer counts
    assert tracker.read().process_peak_rss_scope == SCOPE_WINDOW


def test_rss_falls_back_to_the_lifetime_peak_and_says_so(tmp_path):
    tracker = MemoryTracker("cpu", proc_dir=tmp_path / "no-such-proc")
    reading = tracker.read()
    assert reading.process_peak_rss_scope == SCOPE_LIFETIME
    lifetime_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    expected_mib = lifetime_kib / MIB if sys.platform == "darwin" else lifetime_kib / 1024
    assert reading.process_peak_rss_mib == pytest.approx(expected_mib, rel=0.05)


def test_footprint_of_plain_model_counts_parameters_buffers_and_tied_weights_once():
    model = nn.Module()
    model.embed = nn.Embedding(100, 32)
    model.head = nn.Linear(32, 100, bias=False)
    model.head.weight = model.embed.weight  # tied, as in most language models
    model.norm = nn.BatchNorm1d(32)  # running_mean/var/num_batches_tracked are buffers
    model = model.to(torch.bfloat16)
    # transformers' get_memory_footprint formula: sum of nelement * element_size over params + buffers.
    expected = sum(p.nelement() * p.element_size() for p in model.parameters())
    expected += sum(b.nelement() * b.element_size() for b in model.buffers())
    assert weights_footprint_mib(model) * MIB == expected
    assert expected == (100 * 32 + 32 + 32) * 2 + (32 + 32) * 2 + 8  # bf16 params/buffers, int64 counter


class FakeLeaf:
    """A plain tensor reduced to what the footprint needs."""

    def __init__(self, n: int, element_size: int) -> None:
        self.n, self.size = n, element_size

    def nelement(self) -> int:
        return self.n

    def element_size(self) -> int:
        return self.size


class FakeInt8Tensor(FakeLeaf):
    """Like torchao's Int8Tensor: claims bf16 (2 bytes) but stores int8 qdata plus scales."""

    def __init__(self, n: int, rows: int) -> None:
        super().__init__(n, 2)
        self.qdata, self.scale = FakeLeaf(n, 1), FakeLeaf(rows, 4)

    def __tensor_flatten__(self):
        return ["qdata", "scale"], {}


class QuantState:
    """Named like bitsandbytes' QuantState, which the footprint recognises by name."""

    def __init__(self, **tensors) -> None:
        self.__dict__.update(tensors)


class FakeModel:
    def __init__(self, params, buffers=()) -> None:
        self._params, self._buffers = list(params), list(buffers)

    def parameters(self):
        return iter(self._params)

    def buffers(self):
        return iter(self._buffers)


def test_footprint_counts_torchao_subclass_storage_not_its_nominal_dtype():
    weight = FakeInt8Tensor(n=256 * 256, rows=256)
    assert weights_footprint_mib(FakeModel([weight])) * MIB == 256 * 256 * 1 + 256 * 4  # not 256*256*2


def test_footprint_counts_bitsandbytes_scales_and_shared_code_tables_once():
    code = FakeLeaf(16, 4)  # the NF4 code table, shared by every layer
    nested = QuantState(absmax=FakeLeaf(4, 4), code=FakeLeaf(256, 4))
    packed = [FakeLeaf(256 * 256 // 2, 1) for _ in range(2)]  # two 4-bit layers, 2 weights per byte
    for layer, weight in enumerate(packed):
        weight.quant_state = QuantState(
            absmax=FakeLeaf(1024, 1), code=code, state2=nested, blocksize=64 + layer
        )
    int8 = FakeLeaf(256 * 256, 1)
    int8.SCB = FakeLeaf(256, 4)  # one fp32 scale per row
    bytes_4bit = 2 * (32768 + 1024) + 16 * 4 + (4 * 4 + 256 * 4)
    bytes_8bit = 65536 + 256 * 4
    assert weights_footprint_mib(FakeModel([*packed, int8])) * MIB == bytes_4bit + bytes_8bit


def test_footprint_counts_an_onnx_runtime_tower_by_its_initializers():
    class OrtStandIn(nn.Module):  # holds no torch parameters, like quantize.onnxruntime_backend's
        onnx_summary = {"bytes_by_dtype": {"float32": 4000, "int8": 1000}, "file_bytes": 5600}

    model = nn.Module()
    model.head = nn.Linear(10, 10, bias=False)  # 100 float32 = 400 bytes
    model.vision = OrtStandIn()
    assert weights_footprint_mib(model) * MIB == 400 + 5000  # initializers, not the file (graph too)
