"""The cost pass's phase windows: batch-1 energy split into prefill and decode (`measure.phases`).

Each repeat opens two NVML windows over the same cycle of batch-1 micro-set requests, one after the other:
*prefill* calls (exactly one new token) and *full* calls (the cost pass's output length). Every call
prepares its own inputs, as a served request would, so both windows hold preprocessing + vision + prefill
(AI Energy Score's batch-1 protocol: GPU energy of preprocessing, prefill and decode), and the difference of
the two is the decode alone. Each window runs calls until it has lasted ``PHASE_MIN_WINDOW_S``. On a CPU (no
energy counter) nothing is run: the metrics are absent with the meter's reason.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import torch

from vlm_quant.engines.generate import (
    GenerationSettings,
    Request,
    generate_prepared,
    pad_token_id,
    prepare_inputs,
)
from vlm_quant.measure.energy import J_PER_KWH, EnergyMeter
from vlm_quant.measure.phases import PHASE_MIN_WINDOW_S, PhaseEnergy, PhaseWindow, phase_energy
from vlm_quant.measure.timing import DeviceTimer, run_until


def measure_phases(
    model: Any,
    processor: Any,
    requests: Sequence[Request],
    full: GenerationSettings,
    dtype: torch.dtype,
    timer: DeviceTimer,
    meter: EnergyMeter,
    repeats: int,
) -> tuple[PhaseEnergy, list[dict[str, Any]]]:
    """``repeats`` pairs of prefill/full windows; the phase metrics and a record of every window.

    ``full`` fixes the output length (min == max new tokens, >= 2).
    """
    prefill = dataclasses.replace(full, max_new_tokens=1, min_new_tokens=1)
    windows: dict[str, list[PhaseWindow]] = {"prefill": [], "full": []}
    record = []
    cycle = itertools.cycle([[r] for r in requests])
    device = next(model.parameters()).device
    pad = pad_token_id(model, processor)

    def one_call(settings: GenerationSettings) -> None:
        inputs = prepare_inputs(processor, next(cycle), device=device, dtype=dtype, settings=settings)
        generate_prepared(model, inputs, settings, pad_token_id=pad)

    for repeat in range(repeats):
        for kind, settings in (("prefill", prefill), ("full", full)):
            name = f"phase_{kind}_{repeat}"
            meter.begin_window(name)
            try:
                calls = run_until(
                    lambda settings=settings: one_call(settings),
                    min_iterations=1,
                    min_seconds=PHASE_MIN_WINDOW_S,
                    warmup=0,
                    clock=timer.clock,
                )
            except BaseException:
                meter.discard_window(name)
                raise
            window = PhaseWindow(meter.end_window(name), len(calls))
            windows[kind].append(window)
            record.append(
                {
                    "kind": kind,
                    "repeat": repeat,
                    "calls": window.calls,
                    "duration_s": window.window.duration_s,
                    "energy_j": window.window.energy_j,
                    "absent_reason": window.window.absent_reason,
                }
            )
    return phase_energy(windows["prefill"], windows["full"], full.max_new_tokens), record


def ai_energy_score_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """``energy_wh_per_1k_images_bs1`` (Wh per 1,000 images, GPU, batch 1) from the full windows' J/image,
    with its interval when the windows gave one."""
    out = {}
    for suffix in ("", "_ci95_low", "_ci95_high"):
        value = metrics.get(f"bs1_energy_j_per_image{suffix}")
        if value is not None:
            out[f"energy_wh_per_1k_images_bs1{suffix}"] = value * 1000.0 / (J_PER_KWH / 1000.0)
    return out
