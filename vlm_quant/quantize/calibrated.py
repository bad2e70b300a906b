"""AutoRound (SignRound) on the language model, calibrated on the study's own image-prompt pairs.

Unlike bitsandbytes and torchao, which swap layers in place after loading, AutoRound tunes the rounding
of each decoder block of the language model on calibration inputs and exports a checkpoint in its
``auto_round`` format. We load that export back through transformers' own AutoRound quantizer, so the
model a run evaluates (and logs, and a user reloads) is exactly what the library wrote: packed integer
``QuantLinear`` layers, audited per role like every other run.

Calibration inputs are real image-prompt pairs of the evaluated split, a seeded sample disjoint from the
evaluated ids (and from their images), turned into model inputs by the same processor call the quality
pass uses. ``iters=0`` is AutoRound's data-free mode (round-to-nearest, no calibration forward passes).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlm_quant.errors import UserError
from vlm_quant.measure.memory import MemoryTracker
from vlm_quant.quantize.presets import PRECISIONS

AUTO_ROUND_FORMAT = "auto_round"


@dataclass(frozen=True)
class CalibrationSettings:
    """How AutoRound calibrates (all logged as params)."""

    group_size: int  # weights per quantization group (scale + zero point per group)
    iters: int  # SignRound tuning steps per block; 0: data-free round-to-nearest
    n_samples: int  # calibration image-prompt pairs requested
    seed: int

    def to_params(self) -> dict[str, Any]:
        return {
            "ar_group_size": self.group_size,
            "ar_iters": self.iters,
            "ar_calibration_samples": self.n_samples,
        }


@dataclass(frozen=True)
class CalibratedExport:
    """An AutoRound export on disk and what making it cost."""

    checkpoint_dir: Path
    quantize_s: float  # wall seconds of AutoRound's quantization (calibration + tuning + packing), not saving
    memory: Any  # MemoryReading of the quantization window (peak RSS; peak VRAM on CUDA)
    calibration_ids: list[int]
    params: dict[str, Any]

    def to_metrics(self) -> dict[str, float]:
        metrics = {"quantize_s": self.quantize_s}
        metrics.update({f"quantize_{key}": value for key, value in self.memory.as_metrics().items()})
        return metrics


def resolve_group_size(requested: int, in_features: Sequence[int]) -> int:
    """The group size to quantize with: ``requested`` when it divides every input width, else UserError.

    -1 (auto) is 128 (AutoRound's default) when it divides every width, else the largest power of two
    that does (SmolVLM-256M's language model is 576 wide: 64). A group that does not divide a layer's
    width makes AutoRound fall back to slow fake-quantized layers for it, so it is refused up front.
    """
    widths = sorted(set(in_features))
    if requested == -1:
        size = 128
        while size > 1 and any(w % size for w in widths):
            size //= 2
        return size
    bad = [w for w in widths if w % requested]
    if bad:
        raise UserError(
            f"ar_group_size={requested} does not divide the input width of the language model's linears "
            f"({', '.join(map(str, bad))}); use a divisor of {', '.join(map(str, widths))}, or -1 (auto)."
        )
    return requested


def autoround_skipped_layers(shapes: Mapping[str, tuple[int, int]]) -> list[str]:
    """Names of the linears (``name -> (out_features, in_features)``) that AutoRound would keep at 16-bit.

    AutoRound 0.16 (``compressors/layer_config_resolver.py``) leaves an integer weight-only layer in
    16-bit floating point, with a log line only, when either dimension of its weight is not a multiple
    of 32; a plan asking for the whole language model in 4 or 8 bits would then be partly 16-bit.
    """
    return sorted(name for name, (rows, cols) in shapes.items() if rows % 32 or cols % 32)


def autoround_export(
    model: torch.nn.Module,
    processor: Any,
    precision: str,
    settings: CalibrationSettings,
    calibration_inputs: list[dict[str, torch.Tensor]],
    out_dir: Path,
    *,
    device: torch.device,
) -> CalibratedExport:
    """Quantize the language model's decoder blocks with AutoRound and export them to ``out_dir``.

    ``calibration_inputs`` are processor outputs (``input_ids``, ``attention_mask``, ``pixel_values``
    ...), one image-prompt pair each; AutoRound runs them through the whole model to capture each
    block's inputs. Unused when ``settings.iters == 0``. ``model`` is modified (fake-quantized) in
    place: reload the export rather than evaluating ``model`` afterwards.
    """
    from auto_round import AutoRound

    with tempfile.TemporaryDirectory(prefix="vlmq-ar-work-") as work, _env("AR_WORK_SPACE", work):
        # AutoRound offloads blocks to ./ar_work_space by default: keep it out of the user's folder.
        return _export(AutoRound, model, processor, precision, settings, calibration_inputs, out_dir, device)


def _export(AutoRound, model, processor, precision, settings, calibration_inputs, out_dir, device):
    data_free = settings.iters == 0
    memory = MemoryTracker(device)
    started = time.perf_counter()
    rounder = AutoRound(
        model,
        processor.tokenizer,
        processor=processor,
        bits=PRECISIONS[precision].bits,
        group_size=settings.group_size,
        sym=True,
        iters=settings.iters,
        dataset=None if data_free else calibration_inputs,
        nsamples=max(1, len(calibration_inputs)),
        batch_size=1,  # one image-prompt pair per calibration input (their lengths differ)
        seed=settings.seed,
        device_map=device.type,
        **({"disable_opt_rtn": True} if data_free else {}),  # plain RTN: no calibration forward passes
    )
    rounder.quantize()
    quantize_s = time.perf_counter() - started
    reading = memory.read()
    rounder.save_quantized(str(out_dir), format=AUTO_ROUND_FORMAT)
    import auto_round

    return CalibratedExport(
        checkpoint_dir=out_dir,
        quantize_s=quantize_s,
        memory=reading,
        calibration_ids=[],
        params={
            **settings.to_params(),
            "ar_bits": PRECISIONS[precision].bits,
            "ar_format": AUTO_ROUND_FORMAT,
            "ar_mode": "data-free round-to-nearest" if data_free else "SignRound",
            "auto_round_version": auto_round.__version__,
        },
    )


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for the block unless the user set it already."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
