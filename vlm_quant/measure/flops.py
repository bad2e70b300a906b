"""FLOPs of one image's generation, counted by ``torch.utils.flop_counter``, and what they mean per joule.

``count_generation_flops`` runs one batch-1 generate() under ``FlopCounterMode`` and splits its count:

- vision: the vision tower's forward passes (forward hooks on its modules read the running total);
- prefill: the first forward pass (vision + projector + the prompt through the language model), read
  by a logits processor when the first token's logits exist: one call, no subtraction of two runs;
- decode: everything after it (the ``new_tokens - 1`` one-token steps).

FlopCounterMode counts the matrix products (mm, bmm, addmm, convolutions, attention kernels) at 2 FLOPs per
multiply-add, and nothing else (norms, activations, softmax: a few % of a transformer). It counts shapes,
not precisions: the work of a forward pass is the same at every precision, so it is counted once on the
unquantized model and every configuration of the run's model is compared against that count.

Efficiency:  FLOP/s = FLOPs per image x images/s;  FLOP/J = FLOPs per image / J per image;
MFU (model FLOPs utilisation) = achieved FLOP/s / the board's dense 16-bit tensor peak (``BOARD_PEAKS``);
the lecture's estimate "energy = FLOPs / efficiency" with the board's peak FLOP/J (peak FLOP/s / TDP).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


@dataclass(frozen=True)
class GenerationFlops:
    """FLOPs of one image's generation at batch 1 (FLOP, i.e. floating-point operations, not per second)."""

    vision: float
    prefill: float  # includes vision
    decode: float
    new_tokens: int

    @property
    def total(self) -> float:
        """Prefill + decode (FLOP per image)."""
        return self.prefill + self.decode

    def as_metrics(self) -> dict[str, float]:
        """``flops_per_image`` and its parts (FLOP); ``flops_decode_per_token`` (FLOP/token)."""
        metrics = {
            "flops_per_image": self.total,
            "flops_vision_per_image": self.vision,
            "flops_prefill_per_image": self.prefill,
            "flops_decode_per_image": self.decode,
        }
        if self.new_tokens > 1:
            metrics["flops_decode_per_token"] = self.decode / (self.new_tokens - 1)
        return metrics


def count_generation_flops(
    generate: Callable[[list[Any]], Any],
    model: torch.nn.Module,
    vision_modules: Sequence[str],
    new_tokens: int,
) -> GenerationFlops:
    """Count one generation's FLOPs: ``generate(logits_processors)`` must run one batch-1 generate() of
    ``new_tokens`` tokens passing the processors on; ``vision_modules`` are the vision tower's paths."""
    counter = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION)
    vision = _VisionTally(counter)
    first = _AfterFirstForward(counter)
    handles = []
    for path in vision_modules:
        module = model.get_submodule(path)
        handles.append(module.register_forward_pre_hook(vision.enter))
        handles.append(module.register_forward_hook(vision.leave))
    try:
        with counter, torch.inference_mode():
            generate([first])
    finally:
        for handle in handles:
            handle.remove()
    total = float(counter.get_total_flops())
    if first.flops is None:
        raise RuntimeError("the generate() call never produced a token: no FLOPs to split")
    return GenerationFlops(
        vision=vision.flops, prefill=first.flops, decode=total - first.flops, new_tokens=new_tokens
    )


def _cpu_attention_flops(
    query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any
) -> int:
    """PyTorch's own SDPA formula (2 matmuls; the full square even when causal), for the CPU kernel."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# PyTorch's counter knows the CUDA attention kernels (flash, efficient, cudnn) but not the CPU one
# (``_scaled_dot_product_flash_attention_for_cpu``): without this, a CPU count leaves attention out
# (16% of SmolVLM-256M's FLOPs at 512x512, its 1,024-patch vision tower) and disagrees with a GPU count.
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}


class _AfterFirstForward:
    """A logits processor that reads the running FLOP total when the first token's logits exist."""

    def __init__(self, counter: FlopCounterMode) -> None:
        self.counter = counter
        self.flops: float | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.flops is None:
            self.flops = float(self.counter.get_total_flops())
        return scores


class _VisionTally:
    """Forward hooks that add up the FLOPs counted between a vision module's entry and exit."""

    def __init__(self, counter: FlopCounterMode) -> None:
        self.counter = counter
        self.flops = 0.0
        self._depth = 0
        self._start = 0.0

    def enter(self, module: Any, args: Any) -> None:
        if self._depth == 0:  # nested vision modules (a tower inside a tower) count once
            self._start = float(self.counter.get_total_flops())
        self._depth += 1

    def leave(self, module: Any, args: Any, output: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.flops += float(self.counter.get_total_flops()) - self._start


@dataclass(frozen=True)
class BoardPeak:
    """A board's dense (no sparsity) 16-bit tensor-core peak (FLOP/s) and its board power (W)."""

    name: str
    peak_flop_per_s: float
    board_power_w: float
    source: str

    @property
    def peak_flop_per_j(self) -> float:
        """Peak FLOP/s over board power: the best the board can do per joule (FLOP/J)."""
        return self.peak_flop_per_s / self.board_power_w


# Matched against NVML's device name, first match wins (so "H100 PCIe" before "H100").
# Dense FP16/BF16 tensor peaks; the datasheets' headline numbers with sparsity are twice these.
BOARD_PEAKS = (
    # NVIDIA T4 datasheet (2019): mixed precision FP16/FP32 65 TFLOPS; 70 W.
    BoardPeak("T4", 65e12, 70.0, "NVIDIA T4 Tensor Core GPU datasheet"),
    # NVIDIA L4 datasheet (2023): FP16/BF16 tensor 242 TFLOPS with sparsity -> 121 dense; 72 W.
    BoardPeak("L4", 121e12, 72.0, "NVIDIA L4 Tensor Core GPU datasheet"),
    # NVIDIA A100 datasheet (2021): BF16/FP16 tensor 312 TFLOPS (624 with sparsity); SXM 400 W, PCIe 300 W.
    BoardPeak("A100-PCIE", 312e12, 300.0, "NVIDIA A100 Tensor Core GPU datasheet (PCIe)"),
    BoardPeak("A100", 312e12, 400.0, "NVIDIA A100 Tensor Core GPU datasheet (SXM)"),
    # NVIDIA H100 datasheet: BF16 tensor SXM 1,979 TFLOPS with sparsity -> 989 dense, up to 700 W;
    # PCIe 1,513 with sparsity -> 756 dense, 300-350 W (350 W used).
    BoardPeak("H100 PCIe", 756e12, 350.0, "NVIDIA H100 Tensor Core GPU datasheet (PCIe)"),
    BoardPeak("H100", 989e12, 700.0, "NVIDIA H100 Tensor Core GPU datasheet (SXM)"),
    # NVIDIA H200 datasheet: BF16 tensor SXM 1,979 TFLOPS with sparsity -> 989 dense, up to 700 W.
    BoardPeak("H200", 989e12, 700.0, "NVIDIA H200 Tensor Core GPU datasheet (SXM)"),
    # NVIDIA Ada Lovelace architecture whitepaper (v2.1), RTX 4090: peak FP16 tensor with FP32 accumulate
    # 165.2 TFLOPS dense (330.3 with sparsity); total graphics power 450 W.
    BoardPeak("RTX 4090", 165.2e12, 450.0, "NVIDIA Ada GPU architecture whitepaper, RTX 4090"),
)


def board_peak(device_name: str | None) -> BoardPeak | None:
    """The table's entry for an NVML device name (e.g. "NVIDIA H100 80GB HBM3"), or None if unknown."""
    if not device_name:
        return None
    words = f" {re.sub(r'[^A-Z0-9]+', ' ', device_name.upper())} "
    for board in BOARD_PEAKS:  # whole words, so an L40S is not taken for an L4
        if f" {re.sub(r'[^A-Z0-9]+', ' ', board.name.upper())} " in words:
            return board
    return None


def efficiency_metrics(
    flops_per_image: float,
    *,
    images_per_s: float | None,
    j_per_image: float | None,
    board: BoardPeak | None,
) -> dict[str, float]:
    """``achieved_flop_per_s``, ``flop_per_j``, ``mfu`` (0-1) and ``energy_j_per_image_from_flops``.

    Each is left out when an input is missing (no energy on a CPU, an unknown board): absent, never 0.
    """
    metrics: dict[str, float] = {}
    if images_per_s is not None:
        metrics["achieved_flop_per_s"] = flops_per_image * images_per_s
        if board is not None:
            metrics["mfu"] = metrics["achieved_flop_per_s"] / board.peak_flop_per_s
    if j_per_image is not None and j_per_image > 0:
        metrics["flop_per_j"] = flops_per_image / j_per_image
    if board is not None:
        metrics["energy_j_per_image_from_flops"] = flops_per_image / board.peak_flop_per_j
    return metrics
