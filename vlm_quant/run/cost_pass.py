"""The cost pass: latency and throughput on a fixed micro-set with a fixed output length.

Quality and cost are measured separately. The quality pass stops at EOS, so its timings depend on
what a configuration happens to say; the cost pass forces ``min_new_tokens == max_new_tokens`` on a
logged micro-set of real image-prompt pairs, warms up, then times until both N iterations and T
seconds have passed (optimum-benchmark's rule), with the device synchronised around each call.

- time to first token (TTFT) = a 1-token generate: vision encoding + prefill;
- decode time per token = (end-to-end - TTFT) / (new_tokens - 1), per iteration;
- throughput = images (and generated tokens) per second at each batch size.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vlm_quant.engines.generate import GenerationSettings, Request, generate
from vlm_quant.measure.energy import EnergyMeter, derive_energy_metrics
from vlm_quant.measure.stats import summarize
from vlm_quant.measure.timing import DeviceTimer, run_until


@dataclass(frozen=True)
class CostSettings:
    """How the cost pass measures (all logged as params)."""

    warmup: int
    iterations: int
    seconds: float
    new_tokens: int
    batch_sizes: tuple[int, ...]

    def to_params(self) -> dict[str, Any]:
        return {
            "cost_warmup": self.warmup,
            "cost_iterations": self.iterations,
            "cost_seconds": self.seconds,
            "cost_new_tokens": self.new_tokens,
            "cost_batch_sizes": ",".join(map(str, self.batch_sizes)),
        }


def resolve_cost_settings(cfg: Any, on_gpu: bool) -> CostSettings:
    """Fill the config's -1 ('auto') values with hardware-appropriate defaults.

    On a CPU the defaults keep an 8-image evaluate of the real SmolVLM-256M architecture within a
    few minutes on 2 cores: fewer iterations, no minimum time, 8 new tokens, batch sizes 1 and the
    evaluation batch size. On a GPU: 3 warm-ups, at least 20 iterations and 5 s, max_new_tokens.
    """

    def pick(value: float, gpu_default: float, cpu_default: float) -> float:
        return value if value >= 0 else (gpu_default if on_gpu else cpu_default)

    batch_sizes = (1, 8, 32) if on_gpu else (1,)
    batch_sizes = tuple(sorted(set(batch_sizes) | {cfg.batch_size}))
    return CostSettings(
        warmup=int(pick(cfg.cost_warmup, 3, 1)),
        iterations=max(1, int(pick(cfg.cost_iterations, 20, 3))),
        seconds=float(pick(cfg.cost_seconds, 5.0, 0.0)),
        new_tokens=max(2, int(pick(cfg.cost_new_tokens, cfg.max_new_tokens, 8))),
        batch_sizes=batch_sizes,
    )


def _cycled_batches(requests: Sequence[Request], batch_size: int):
    """Endless batches of ``batch_size`` requests drawn round-robin from the micro-set."""
    stream = itertools.cycle(requests)
    while True:
        yield [next(stream) for _ in range(batch_size)]


def measure_latency(
    model: Any,
    processor: Any,
    requests: Sequence[Request],
    settings: CostSettings,
    base: GenerationSettings,
    dtype: torch.dtype,
    timer: DeviceTimer,
) -> dict[str, float]:
    """Batch-1 TTFT, decode ms/token and end-to-end latency per image-prompt (mean/p50/p90/CI95, ms)."""
    first_token = dataclasses.replace(base, max_new_tokens=1, min_new_tokens=1)
    full = dataclasses.replace(base, max_new_tokens=settings.new_tokens, min_new_tokens=settings.new_tokens)
    batches = _cycled_batches(requests, 1)
    ttft_s: list[float] = []
    e2e_s: list[float] = []

    def one_iteration() -> None:
        batch = next(batches)
        with timer.span() as prefill:
            generate(model, processor, batch, first_token, dtype=dtype)
        with timer.span() as whole:
            generate(model, processor, batch, full, dtype=dtype)
        ttft_s.append(prefill.elapsed_s)
        e2e_s.append(whole.elapsed_s)

    run_until(
        one_iteration,
        min_iterations=settings.iterations,
        min_seconds=settings.seconds,
        warmup=settings.warmup,
    )
    del ttft_s[: settings.warmup], e2e_s[: settings.warmup]  # warm-up iterations are not results
    decode_s_per_token = [max(0.0, e - t) / (settings.new_tokens - 1) for t, e in zip(ttft_s, e2e_s)]
    metrics: dict[str, float] = {}
    metrics.update(summarize([s * 1000 for s in e2e_s]).as_metrics("latency_ms"))
    metrics.update(summarize([s * 1000 for s in ttft_s]).as_metrics("ttft_ms"))
    metrics.update(summarize([s * 1000 for s in decode_s_per_token]).as_metrics("decode_ms_per_token"))
    return metrics


def measure_throughput(
    model: Any,
    processor: Any,
    requests: Sequence[Request],
    settings: CostSettings,
    base: GenerationSettings,
    dtype: torch.dtype,
    timer: DeviceTimer,
    batch_size: int,
    meter: EnergyMeter | None = None,
) -> dict[str, float]:
    """Images/s and generated tokens/s at one batch size, with the fixed output length.

    With an energy meter the timed iterations (not the warm-up) are one NVML energy window, giving
    J/image, J/token and images/kWh at this batch size (absent when the GPU has no energy counter).
    """
    full = dataclasses.replace(base, max_new_tokens=settings.new_tokens, min_new_tokens=settings.new_tokens)
    batches = _cycled_batches(requests, batch_size)
    spans: list[float] = []

    def one_batch() -> None:
        batch = next(batches)
        with timer.span() as span:
            generate(model, processor, batch, full, dtype=dtype)
        spans.append(span.elapsed_s)

    for _ in range(min(settings.warmup, 1)):
        one_batch()
    spans.clear()
    window_name = f"throughput_bs{batch_size}"
    if meter is not None:
        meter.begin_window(window_name)
    run_until(
        one_batch, min_iterations=max(1, settings.iterations // 2), min_seconds=settings.seconds, warmup=0
    )
    n_images = batch_size * len(spans)
    images_per_s = n_images / sum(spans)
    metrics = {
        f"throughput_images_per_s_bs{batch_size}": images_per_s,
        f"throughput_tokens_per_s_bs{batch_size}": images_per_s * settings.new_tokens,
    }
    if meter is not None:
        window = meter.end_window(window_name)
        energy = derive_energy_metrics(window, n_images, n_images * settings.new_tokens)
        metrics.update({f"{key}_bs{batch_size}": value for key, value in energy.items()})
    return metrics
