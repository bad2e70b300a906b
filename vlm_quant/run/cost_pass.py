"""The cost pass: latency and throughput on a fixed micro-set with a fixed output length.

Quality and cost are measured separately. The quality pass stops at EOS, so its timings depend on
what a configuration happens to say; the cost pass forces ``min_new_tokens == max_new_tokens`` on a
logged micro-set of real image-prompt pairs, warms up on every sample at every batch size (so a
compiled engine never compiles inside a timed iteration), then times until both N iterations and T
seconds have passed (optimum-benchmark's rule), with the device synchronised at every time stamp.

Latency, at batch 1, from ONE generate() call per iteration and one clock:

    t0 | prepare_inputs | t1 | prefill -> token 1 (stamp s1) | decode -> token 2 (s2) ... token N (sN) | t2

- ``preprocess_ms`` = t1 - t0: chat template, image processor, copy to the device (host work);
- ``ttft_ms`` = s1 - t1: time to first token of the model alone (vision encoding + prefill);
- ``decode_ms_per_token`` = (sN - s1) / (N - 1): the mean decode step of that same call;
- ``latency_ms`` = t2 - t0: end to end per image-prompt (preprocessing + generation).

The stamps come from a logits processor that synchronises the device (``TokenTimestamps``), so no
number is a difference of two separate calls and none needs clamping. Throughput (images/s and
tokens/s per batch size) times the model alone: the inputs of every batch are prepared before the
timed loop and its energy window, so the host's preprocessing is neither billed to the model's time
nor to the GPU's energy. A batch size that runs out of memory is left absent with a tag and the pass
goes on.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from vlm_quant.engines.generate import (
    GenerationSettings,
    Request,
    generate_prepared,
    pad_token_id,
    prepare_inputs,
)
from vlm_quant.engines.selection import compiled_graphs
from vlm_quant.errors import UserError
from vlm_quant.measure.batch_optimum import optimum_metrics
from vlm_quant.measure.energy import EnergyMeter, derive_energy_metrics
from vlm_quant.measure.stats import summarize
from vlm_quant.measure.timing import DeviceTimer, TokenTimestamps, run_until
from vlm_quant.run.oom import release_memory
from vlm_quant.run.phase_windows import ai_energy_score_metrics, measure_phases
from vlm_quant.tracking.run_schema import TAG_PHASE_ENERGY_ABSENT as TAG_PHASE_ABSENT

GPU_BATCH_SIZES = (1, 8, 32)
CPU_BATCH_SIZES = (1,)
HEADLINE_KEYS = (  # logged again without the _bs suffix at the evaluation's batch size
    "throughput_images_per_s",
    "throughput_tokens_per_s",
    "energy_j_per_image",
    "energy_j_per_token",
    "images_per_kwh",
)


@dataclass(frozen=True)
class CostSettings:
    """How the cost pass measures (all logged as params)."""

    warmup: int
    iterations: int
    seconds: float
    new_tokens: int
    batch_sizes: tuple[int, ...]
    phase_repeats: int = 0  # pairs of prefill/full energy windows at batch 1 (0: none)

    def to_params(self) -> dict[str, Any]:
        return {
            "cost_warmup": self.warmup,
            "cost_iterations": self.iterations,
            "cost_seconds": self.seconds,
            "cost_new_tokens": self.new_tokens,
            "cost_batch_sizes": ",".join(map(str, self.batch_sizes)),
            "cost_phase_repeats": self.phase_repeats,
        }


@dataclass
class CostResult:
    """Metrics of the cost pass and tags saying what is absent and why."""

    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    phase_windows: list[dict[str, Any]] = field(default_factory=list)  # every phase window, for the artifact

    def update(self, other: CostResult) -> None:
        self.metrics.update(other.metrics)
        self.tags.update(other.tags)
        self.phase_windows += other.phase_windows


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """``"1, 8,32"`` -> ``(1, 8, 32)`` (sorted, unique); a UserError names a bad entry."""
    sizes = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise UserError(f"cost_batch_sizes={text!r}: {part!r} is not a positive integer.")
        sizes.add(int(part))
    return tuple(sorted(sizes))


def resolve_cost_settings(cfg: Any, on_gpu: bool) -> CostSettings:
    """Fill the config's -1 ('auto') values and an empty ``cost_batch_sizes`` with hardware defaults.

    On a CPU the defaults keep an 8-image evaluate of the real SmolVLM-256M architecture within a
    few minutes on 2 cores: 1 warm-up round, 3 iterations, no minimum time, 8 new tokens, batch sizes
    1 and the evaluation batch size. On a GPU: 3 warm-up rounds, at least 20 iterations and 5 s,
    max_new_tokens, batch sizes 1, 8, 32 and the evaluation batch size. An explicit
    ``cost_batch_sizes`` is used as given (the headline throughput needs the evaluation's batch size in it).
    """

    def pick(value: float, gpu_default: float, cpu_default: float) -> float:
        return value if value >= 0 else (gpu_default if on_gpu else cpu_default)

    batch_sizes = parse_batch_sizes(getattr(cfg, "cost_batch_sizes", ""))
    if not batch_sizes:
        defaults = GPU_BATCH_SIZES if on_gpu else CPU_BATCH_SIZES
        batch_sizes = tuple(sorted(set(defaults) | {cfg.batch_size}))
    return CostSettings(
        warmup=int(pick(cfg.cost_warmup, 3, 1)),
        iterations=max(1, int(pick(cfg.cost_iterations, 20, 3))),
        seconds=float(pick(cfg.cost_seconds, 5.0, 0.0)),
        new_tokens=max(2, int(pick(cfg.cost_new_tokens, cfg.max_new_tokens, 8))),
        batch_sizes=batch_sizes,
        phase_repeats=int(pick(getattr(cfg, "cost_phase_repeats", -1), 10, 0)),
    )


def micro_batches(requests: Sequence[Request], batch_size: int) -> list[list[Request]]:
    """The distinct batches of a round-robin cycle over the micro-set, in cycle order.

    Batch i holds samples ``(i*B + j) mod M``; after ``M / gcd(M, B)`` batches the cycle repeats, and
    every sample has appeared equally often, so these batches are all a warm-up has to cover.
    """
    if not requests:
        raise ValueError("the cost pass needs at least one request")
    m = len(requests)
    period = m // math.gcd(m, batch_size)
    return [[requests[(i * batch_size + j) % m] for j in range(batch_size)] for i in range(period)]


@dataclass(frozen=True)
class TimedRequest:
    """One batch-1 generation, timed from one clock (seconds)."""

    preprocess_s: float
    ttft_s: float
    decode_s_per_token: float
    generate_s: float
    latency_s: float


def time_request(
    model: Any,
    processor: Any,
    batch: list[Request],
    settings: GenerationSettings,
    dtype: torch.dtype,
    timer: DeviceTimer,
) -> TimedRequest:
    """Prepare and generate one batch with per-token time stamps (see the module docstring)."""
    device = next(model.parameters()).device
    pad = pad_token_id(model, processor)
    t0 = timer.now()
    inputs = prepare_inputs(processor, batch, device=device, dtype=dtype, settings=settings)
    t1 = timer.now()
    stamps = TokenTimestamps(timer)
    new_ids = generate_prepared(model, inputs, settings, pad_token_id=pad, logits_processor=[stamps])
    t2 = timer.now()
    n_tokens = int(new_ids.shape[1])
    if n_tokens < 2 or len(stamps.stamps_s) < n_tokens:
        raise RuntimeError(
            f"cannot time tokens: {n_tokens} new tokens, {len(stamps.stamps_s)} time stamps "
            "(the engine did not call the logits processor once per token)"
        )
    first, last = stamps.stamps_s[0], stamps.stamps_s[n_tokens - 1]  # extra stamps: steps undone later
    return TimedRequest(
        preprocess_s=t1 - t0,
        ttft_s=first - t1,
        decode_s_per_token=(last - first) / (n_tokens - 1),
        generate_s=t2 - t1,
        latency_s=t2 - t0,
    )


def fixed_length(base: GenerationSettings, settings: CostSettings) -> GenerationSettings:
    """The cost pass's generation settings: exactly ``settings.new_tokens`` new tokens per row."""
    return dataclasses.replace(base, max_new_tokens=settings.new_tokens, min_new_tokens=settings.new_tokens)


def measure_latency(
    model: Any,
    processor: Any,
    requests: Sequence[Request],
    settings: CostSettings,
    base: GenerationSettings,
    dtype: torch.dtype,
    timer: DeviceTimer,
) -> CostResult:
    """Batch-1 preprocessing, TTFT, decode ms/token and end-to-end latency (n/mean/p50/p90/CI95, ms)."""
    full = fixed_length(base, settings)
    singles = micro_batches(requests, 1)
    for _ in range(settings.warmup):  # every sample: each prompt length compiles its own graph
        for batch in singles:
            time_request(model, processor, batch, full, dtype, timer)
    timed: list[TimedRequest] = []
    cycle = itertools.cycle(singles)
    graphs_before = compiled_graphs()
    run_until(
        lambda: timed.append(time_request(model, processor, next(cycle), full, dtype, timer)),
        min_iterations=settings.iterations,
        min_seconds=settings.seconds,
        warmup=0,
        clock=timer.clock,
    )
    result = CostResult({"cost_graphs_compiled_timed_latency": float(compiled_graphs() - graphs_before)})
    result.metrics.update(latency_metrics(timed))
    return result


def latency_metrics(timed: Sequence[Any]) -> dict[str, float]:
    """``preprocess_ms``, ``ttft_ms``, ``decode_ms_per_token``, ``generate_ms``, ``latency_ms`` (n, mean,
    p50, p90, CI95) of timed batch-1 calls: any engine's records with `TimedRequest`'s fields (seconds)."""
    metrics: dict[str, float] = {}
    for prefix, attribute in (
        ("preprocess_ms", "preprocess_s"),
        ("ttft_ms", "ttft_s"),
        ("decode_ms_per_token", "decode_s_per_token"),
        ("generate_ms", "generate_s"),
        ("latency_ms", "latency_s"),
    ):
        metrics.update(summarize([getattr(t, attribute) * 1000.0 for t in timed]).as_metrics(prefix))
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
) -> CostResult:
    """Images/s and generated tokens/s of the model at one batch size, with the fixed output length.

    The batches' inputs are prepared first (untimed), warmed up on, then timed. With an energy meter
    the timed iterations are one energy window, giving J/image, J/token and images/kWh at this batch
    size, or, when the window cannot give an energy, a tag ``vlm_quant.energy_absent_throughput_bs{B}``.
    """
    full = fixed_length(base, settings)
    device = next(model.parameters()).device
    pad = pad_token_id(model, processor)
    prepared = [
        prepare_inputs(processor, batch, device=device, dtype=dtype, settings=full)
        for batch in micro_batches(requests, batch_size)
    ]
    for _ in range(settings.warmup):
        for inputs in prepared:
            generate_prepared(model, inputs, full, pad_token_id=pad)
    cycle = itertools.cycle(prepared)
    spans: list[float] = []

    def one_batch() -> None:
        inputs = next(cycle)
        with timer.span() as span:
            generate_prepared(model, inputs, full, pad_token_id=pad)
        spans.append(span.elapsed_s)

    window_name = f"throughput_bs{batch_size}"
    graphs_before = compiled_graphs()
    if meter is not None:
        meter.begin_window(window_name)
    try:
        run_until(
            one_batch,
            min_iterations=settings.iterations,  # cost_iterations: the minimum of each measurement
            min_seconds=settings.seconds,
            warmup=0,
            clock=timer.clock,
        )
    except BaseException:
        if meter is not None:
            meter.discard_window(window_name)
        raise
    n_images = batch_size * len(spans)
    images_per_s = n_images / sum(spans)
    result = CostResult(
        {
            f"throughput_images_per_s_bs{batch_size}": images_per_s,
            f"throughput_tokens_per_s_bs{batch_size}": images_per_s * settings.new_tokens,
            f"cost_graphs_compiled_timed_bs{batch_size}": float(compiled_graphs() - graphs_before),
        }
    )
    if meter is not None:
        window = meter.end_window(window_name)
        energy = derive_energy_metrics(window, n_images, n_images * settings.new_tokens)
        result.metrics.update({f"{key}_bs{batch_size}": value for key, value in energy.items()})
        if window.absent_reason and getattr(meter.gpu, "available", True):
            result.tags[f"vlm_quant.energy_absent_{window_name}"] = window.absent_reason
    return result


def measure_cost(
    model: Any,
    processor: Any,
    requests: Sequence[Request],
    settings: CostSettings,
    base: GenerationSettings,
    dtype: torch.dtype,
    timer: DeviceTimer,
    *,
    meter: EnergyMeter | None = None,
    eval_batch_size: int | None = None,
) -> CostResult:
    """Latency at batch 1, then throughput (and energy) at every batch size of ``settings``.

    Out of memory at one batch size (or in the latency measurement) leaves those metrics absent with a
    tag ``vlm_quant.cost_oom_bs{B}`` (``vlm_quant.cost_oom_latency``) and the pass goes on. The
    throughput/energy at ``eval_batch_size`` is logged again without the ``_bs`` suffix.
    """
    args = (model, processor, requests, settings, base, dtype, timer)
    result = CostResult()
    try:
        result.update(measure_latency(*args))
    except torch.OutOfMemoryError as error:
        result.tags["vlm_quant.cost_oom_latency"] = _oom_note(error, 1)
    _release_after_oom(result)
    for batch_size in settings.batch_sizes:
        try:
            result.update(measure_throughput(*args, batch_size=batch_size, meter=meter))
        except torch.OutOfMemoryError as error:
            result.tags[f"vlm_quant.cost_oom_bs{batch_size}"] = _oom_note(error, batch_size)
        _release_after_oom(result)
    result.update(phase_result(*args, meter=meter))
    result.metrics.update(optimum_metrics(result.metrics))
    graphs = [v for k, v in result.metrics.items() if k.startswith("cost_graphs_compiled_timed")]
    result.metrics["cost_graphs_compiled_timed"] = float(sum(graphs))
    for key in HEADLINE_KEYS:
        if eval_batch_size is not None and f"{key}_bs{eval_batch_size}" in result.metrics:
            result.metrics[key] = result.metrics[f"{key}_bs{eval_batch_size}"]
    return result


def phase_result(
    model: Any,
    processor: Any,
    requests: Sequence[Request],
    settings: CostSettings,
    base: GenerationSettings,
    dtype: torch.dtype,
    timer: DeviceTimer,
    *,
    meter: EnergyMeter | None,
) -> CostResult:
    """Batch-1 energy by phase (`run.phase_windows`) and Wh per 1,000 images; without an energy counter or
    with ``phase_repeats`` 0 nothing runs and the tag ``vlm_quant.phase_energy_absent_reason`` says why."""
    if meter is None or not getattr(meter.gpu, "available", True):
        reason = getattr(getattr(meter, "gpu", None), "reason", None) or "no GPU energy counter"
        return CostResult(tags={TAG_PHASE_ABSENT: f"GPU only: {reason}"})
    if settings.phase_repeats < 1:
        return CostResult(tags={TAG_PHASE_ABSENT: "cost_phase_repeats is 0"})
    try:
        phases, record = measure_phases(
            model,
            processor,
            requests,
            fixed_length(base, settings),
            dtype,
            timer,
            meter,
            settings.phase_repeats,
        )
    except torch.OutOfMemoryError as error:
        return CostResult(tags={TAG_PHASE_ABSENT: _oom_note(error, 1)})
    result = CostResult(dict(phases.metrics), phase_windows=record)
    result.metrics.update(ai_energy_score_metrics(phases.metrics))
    if phases.absent:
        result.tags[TAG_PHASE_ABSENT] = "; ".join(sorted({*phases.absent.values()}))
    return result


def _release_after_oom(result: CostResult) -> None:
    """Free a failed batch's tensors (called outside the except block, so they are gone) once an OOM has
    happened; without one there is nothing to free, and a full garbage collection of a large process
    costs ~0.5 s per call on 2 CPU cores."""
    if any(key.startswith("vlm_quant.cost_oom_") for key in result.tags):
        release_memory()


def _oom_note(error: BaseException, batch_size: int) -> str:
    first_line = (str(error).splitlines() or [type(error).__name__])[0][:200]
    return f"out of memory at batch size {batch_size} in the cost pass: {first_line}"
