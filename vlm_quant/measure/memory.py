"""Peak memory of a measured window (torch's CUDA allocator, process RSS) and the weights' footprint.

RSS peak, and why not plain ``getrusage``: ``ru_maxrss`` is the peak of the whole process lifetime,
which for us is dominated by model loading (safetensors are read into host memory before they move
to the GPU), so it would hide what inference costs. On Linux, writing ``5`` to
``/proc/self/clear_refs`` resets the kernel's RSS high-water mark (``VmHWM``) to the current RSS,
so ``VmHWM`` read later is the exact peak of the window: no sampling thread, no missed spikes.
Where that is not possible (macOS, a locked-down /proc) we fall back to the lifetime peak and say
so in ``MemoryReading.process_peak_rss_scope``.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
SCOPE_WINDOW = "window"  # peak since MemoryTracker.reset()
SCOPE_LIFETIME = "process_lifetime"  # peak since the process started


@dataclass(frozen=True)
class MemoryReading:
    """Peaks since the tracker's last reset. Torch fields are None off CUDA: absent, never zero."""

    torch_peak_allocated_mib: float | None  # bytes held by live tensors, at their peak
    torch_peak_reserved_mib: float | None  # bytes the caching allocator held from the driver
    process_peak_rss_mib: float | None  # host resident set size, at its peak
    process_peak_rss_scope: str  # SCOPE_WINDOW or SCOPE_LIFETIME (see module docstring)

    def as_metrics(self) -> dict[str, float]:
        """Metric dict (``peak_vram_allocated_mib``, ``peak_vram_reserved_mib``, ``peak_rss_mib``),
        leaving out what was not measured."""
        metrics = {
            "peak_vram_allocated_mib": self.torch_peak_allocated_mib,
            "peak_vram_reserved_mib": self.torch_peak_reserved_mib,
            "peak_rss_mib": self.process_peak_rss_mib,
        }
        return {key: value for key, value in metrics.items() if value is not None}


class MemoryTracker:
    """Tracks peak memory on ``device`` from construction (or the last ``reset()``) to ``read()``.

    ``cuda`` is the object offering ``reset_peak_memory_stats``/``max_memory_allocated``/
    ``max_memory_reserved`` (default ``torch.cuda`` on a CUDA device, nothing elsewhere);
    ``proc_dir`` is where ``clear_refs`` and ``status`` live. Both are injectable for tests.
    """

    def __init__(self, device: Any = "cpu", *, cuda: Any = None, proc_dir: str | Path = "/proc/self"):
        self.device = str(device)
        self._cuda = cuda if cuda is not None else _torch_cuda_for(self.device)
        self._proc_dir = Path(proc_dir)
        self.rss_peak_scope = SCOPE_LIFETIME
        self.reset()

    def reset(self) -> None:
        """Start a new window: reset torch's CUDA peaks and, where Linux allows, the RSS peak."""
        if self._cuda is not None:
            self._cuda.reset_peak_memory_stats(self.device)
        self.rss_peak_scope = SCOPE_WINDOW if _reset_rss_peak(self._proc_dir) else SCOPE_LIFETIME

    def read(self) -> MemoryReading:
        """Peaks (MiB) since the window began."""
        allocated = reserved = None
        if self._cuda is not None:
            allocated = self._cuda.max_memory_allocated(self.device) / MIB
            reserved = self._cuda.max_memory_reserved(self.device) / MIB
        if self.rss_peak_scope == SCOPE_WINDOW:
            rss = _read_vm_hwm_mib(self._proc_dir)
        else:
            rss = _lifetime_peak_rss_mib()
        return MemoryReading(allocated, reserved, rss, self.rss_peak_scope)


def weights_footprint_mib(model: Any) -> float:
    """Bytes of the model's parameters and buffers as stored in memory, in MiB.

    Why not just ``model.get_memory_footprint()`` (transformers): it sums ``nelement() *
    element_size()``, which is right for plain tensors and for bitsandbytes (whose weights are
    stored packed as int8/uint8), but wrong for torchao's tensor subclasses: an int8 weight wrapped
    as ``Int8Tensor`` reports the bf16 element size of the tensor it stands for, doubling the count.
    So we count storage ourselves: plain tensors as ``nelement * element_size`` (equal to
    ``get_memory_footprint`` there), tensor subclasses through their inner tensors
    (``__tensor_flatten__``), and bitsandbytes' side tensors (4-bit ``quant_state``: absmax, code;
    int8 ``SCB`` row scales), which ``get_memory_footprint`` omits. A tower run by ONNX Runtime holds
    no torch parameters: its stand-in module's ONNX initializers (``onnx_summary["bytes_by_dtype"]``,
    the weights the session loaded) are counted instead.
    """
    counted: dict[int, Any] = {}  # id -> plain tensor; tied weights and shared code tables count once
    for tensor in (*model.parameters(), *model.buffers()):
        for leaf in _storage_tensors(tensor):
            counted.setdefault(id(leaf), leaf)
    torch_bytes = sum(leaf.nelement() * leaf.element_size() for leaf in counted.values())
    return (torch_bytes + _onnx_initializer_bytes(model)) / MIB


def _onnx_initializer_bytes(model: Any) -> int:
    """Bytes of the ONNX initializers of the model's ONNX Runtime stand-ins (0 without any)."""
    modules = model.modules() if hasattr(model, "modules") else ()
    summaries = [getattr(module, "onnx_summary", None) for module in modules]
    return sum(sum(s["bytes_by_dtype"].values()) for s in summaries if isinstance(s, dict))


def _storage_tensors(tensor: Any) -> Iterator[Any]:
    """The plain tensors holding a (possibly quantized) tensor's bytes.

    Tensor subclasses (torchao) are unwrapped through ``__tensor_flatten__``; bitsandbytes keeps
    its scales beside the packed weight: ``SCB`` (int8, one fp32 per row) and ``quant_state``
    (4-bit: absmax, code, offset, and a nested ``state2`` under double quantization).
    """
    if hasattr(tensor, "__tensor_flatten__"):
        inner_names, _ = tensor.__tensor_flatten__()
        for name in inner_names:
            yield from _storage_tensors(getattr(tensor, name))
    else:
        yield tensor
    scb = getattr(tensor, "SCB", None)
    if _is_tensor(scb):
        yield scb
    yield from _quant_state_tensors(getattr(tensor, "quant_state", None))


def _quant_state_tensors(state: Any) -> Iterator[Any]:
    """Tensors of a bitsandbytes ``QuantState``, recursing into the nested state of double quant."""
    if state is None or not hasattr(state, "__dict__"):
        return
    for value in vars(state).values():
        if _is_tensor(value):
            yield value
        elif type(value).__name__ == "QuantState":
            yield from _quant_state_tensors(value)


def _is_tensor(value: Any) -> bool:
    """True for torch tensors, without importing torch for callers that never pass one."""
    return hasattr(value, "nelement") and hasattr(value, "element_size")


def _torch_cuda_for(device: str) -> Any:
    """``torch.cuda`` for a CUDA device, None otherwise (torch fields then read as absent)."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda


def _reset_rss_peak(proc_dir: Path) -> bool:
    """Reset Linux's RSS high-water mark; False where the kernel or sandbox does not allow it."""
    try:
        (proc_dir / "clear_refs").write_text("5")
        return _read_vm_hwm_mib(proc_dir) is not None
    except OSError:
        return False


def _read_vm_hwm_mib(proc_dir: Path) -> float | None:
    """``VmHWM`` (peak RSS since the last reset) from ``status``, in MiB; None if unreadable."""
    try:
        for line in (proc_dir / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # the kernel reports kB (KiB)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _lifetime_peak_rss_mib() -> float:
    """Peak RSS of the whole process lifetime from ``getrusage``, in MiB."""
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux but bytes on macOS.
    return max_rss / MIB if sys.platform == "darwin" else max_rss / 1024
