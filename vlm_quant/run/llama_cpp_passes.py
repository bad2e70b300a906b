"""The quality and cost passes on the llama.cpp engine, with the torch passes' contracts and metric names.

Quality: every selected sample, one image-prompt at a time (the engine does not batch), greedy, EOS
allowed; each prediction streamed to the run's partial predictions (a resumed run skips what an earlier
attempt predicted) and a Ctrl-C stops after the sample in flight, as in `run.quality_pass`.

Cost, on the same micro-set with the same fixed output length as the torch cost pass
(`run.cost_pass`: its docstring defines every metric): latency at batch 1 from one engine call per
iteration and one clock (``preprocess_ms``: chat template + libmtmd's tokenization and image
preprocessing; ``ttft_ms``: vision encoding + prefill + the first token; ``decode_ms_per_token``;
``generate_ms``; ``latency_ms``), then throughput at batch 1 in its own timed loop and energy window.
llama.cpp's own counters of the same calls are logged beside (``llama_cpp_prompt_eval_ms``,
``llama_cpp_decode_ms_per_token``). Batch sizes above 1 are absent, with a tag: the engine generates
one image-prompt at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from vlm_quant.engines.generate import Request, prompt_text
from vlm_quant.engines.llama_cpp import LlamaCppEngine, LlamaCppGeneration
from vlm_quant.measure.batch_optimum import optimum_metrics
from vlm_quant.measure.energy import EnergyMeter, derive_energy_metrics
from vlm_quant.measure.stats import summarize
from vlm_quant.measure.timing import DeviceTimer, run_until
from vlm_quant.run import interrupts
from vlm_quant.run.cost_pass import HEADLINE_KEYS, CostResult, CostSettings, latency_metrics
from vlm_quant.run.partial_predictions import PredictionStream, Restored
from vlm_quant.run.quality_pass import (
    QualityPassResult,
    end_attempt,
    in_evaluation_order,
    load_image,
    resume_from,
)
from vlm_quant.tasks.base import Task, TaskData
from vlm_quant.tracking.run_schema import TAG_PHASE_ENERGY_ABSENT

ONE_AT_A_TIME = "the llama.cpp engine generates one image-prompt at a time"


@dataclass(frozen=True)
class EnginePrompts:
    """Turns a request into the engine's prompt: the processor's chat template, with the processor's
    image placeholder replaced by libmtmd's marker; ``decode``: the processor's tokenizer."""

    engine: LlamaCppEngine
    processor: Any

    def prompt(self, request: Request) -> str:
        rendered = prompt_text(self.processor, request)
        return self.engine.prompt(rendered, image_placeholder(self.processor, rendered))

    def generate(
        self, request: Request, max_new_tokens: int, min_new_tokens: int, clock
    ) -> LlamaCppGeneration:
        (image,) = request.images
        return self.engine.generate(
            self.prompt(request),
            image,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            clock=clock,
        )

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.processor.batch_decode([list(token_ids)], skip_special_tokens=True)[0].strip()


# Text around the image token that libmtmd writes itself for a family (Qwen-VL: vision start/end), so the
# engine's marker replaces them with the token.
WRAPPED_IMAGE_TOKENS = (("<|vision_start|>", "<|vision_end|>"),)


def image_placeholder(processor: Any, rendered: str) -> str:
    """The part of a rendered chat prompt that stands for the image and that libmtmd's marker replaces:
    the image token with the family's wrapping (Qwen-VL), the begin-of-image token the processor expands
    (Gemma 3's ``<start_of_image>``), or the image token (Idefics3/SmolVLM's ``<image>``)."""
    token = processor.image_token
    for begin, end in WRAPPED_IMAGE_TOKENS:
        if begin + token + end in rendered:
            return begin + token + end
    boi = getattr(processor, "boi_token", None)
    if boi and boi in rendered:
        return boi
    return token


def run_quality_pass(
    prompts: EnginePrompts,
    task: Task,
    data: TaskData,
    *,
    max_new_tokens: int,
    max_image_side: int,
    timer: DeviceTimer,
    stream: PredictionStream | None = None,
    progress: bool = True,
) -> QualityPassResult:
    """Greedy predictions for every id of ``data`` in evaluation order (see the module docstring)."""
    result = resume_from(stream.restored if stream else Restored(), data)
    clock = timer.clock
    done = set(result.predictions) | {row["sample_id"] for row in result.skipped}
    remaining = [data.samples[i] for i in data.ids if i not in done]
    bar = tqdm(
        total=len(data.ids),
        initial=len(data.ids) - len(remaining),
        desc=f"{task.name} ({data.dataset})",
        unit="sample",
        disable=not progress,
    )
    start = clock()
    try:
        with interrupts.deferred():  # a signal takes effect between samples, after the flush
            for sample in remaining:
                asked = clock()
                _, image, error = load_image(data, sample, max_image_side)
                result.wait_s += clock() - asked
                if image is None:
                    result.skipped.append(
                        {"sample_id": sample.sample_id, "image_file": sample.image_file, "reason": error}
                    )
                    if stream:
                        stream.add_skipped(sample.sample_id, sample.image_file, error or "")
                else:
                    _predict(
                        prompts,
                        task.request(data, sample, image),
                        sample,
                        max_new_tokens,
                        timer,
                        result,
                        stream,
                    )
                bar.update(1)
                if stream:
                    stream.batch_done()
                interrupts.raise_if_requested(f"{len(result.predictions)} of {len(data.ids)} samples saved")
        interrupts.raise_if_requested()
    finally:
        end_attempt(result, bar, stream, clock() - start)
    in_evaluation_order(result, data)
    result.final_batch_size, result.batch_sizes = 1, (1,)
    return result


def _predict(
    prompts: EnginePrompts,
    request: Request,
    sample: Any,
    max_new_tokens: int,
    timer: DeviceTimer,
    result: QualityPassResult,
    stream: PredictionStream | None,
) -> None:
    with timer.span() as span:
        generated = prompts.generate(request, max_new_tokens, 0, timer.clock)
    seconds = span.elapsed_s or 0.0
    result.model_s += seconds
    text = prompts.decode(generated.token_ids)
    result.predictions[sample.sample_id] = text
    result.generated_tokens += len(generated.token_ids)
    if stream:
        stream.add_prediction(sample.sample_id, text, len(generated.token_ids), seconds)


@dataclass(frozen=True)
class TimedGeneration:
    """One batch-1 engine call, timed from one clock (seconds), and llama.cpp's counters of it (ms)."""

    preprocess_s: float
    ttft_s: float
    decode_s_per_token: float
    generate_s: float
    latency_s: float
    llama_prompt_eval_ms: float
    llama_decode_ms_per_token: float | None


def time_generation(
    prompts: EnginePrompts, request: Request, new_tokens: int, clock: Callable[[], float]
) -> TimedGeneration:
    """One fixed-length generation: t0, the chat template, then the engine's own stamps."""
    t0 = clock()
    (image,) = request.images
    prompt = prompts.prompt(request)
    generated = prompts.engine.generate(
        prompt, image, max_new_tokens=new_tokens, min_new_tokens=new_tokens, clock=clock
    )
    timings = generated.timings
    stamps = timings.token_stamps_s
    if len(stamps) < 2:
        raise RuntimeError(f"cannot time tokens: {len(stamps)} new tokens (the cost pass needs at least 2)")
    eval_tokens = timings.llama_eval_tokens
    return TimedGeneration(
        preprocess_s=timings.tokenized_s - t0,
        ttft_s=stamps[0] - timings.tokenized_s,
        decode_s_per_token=(stamps[-1] - stamps[0]) / (len(stamps) - 1),
        generate_s=timings.end_s - timings.tokenized_s,
        latency_s=timings.end_s - t0,
        llama_prompt_eval_ms=timings.llama_prompt_eval_ms,
        llama_decode_ms_per_token=timings.llama_eval_ms / eval_tokens if eval_tokens else None,
    )


def measure_cost(
    prompts: EnginePrompts,
    requests: Sequence[Request],
    settings: CostSettings,
    timer: DeviceTimer,
    meter: EnergyMeter | None = None,
) -> CostResult:
    """Latency at batch 1 and throughput at batch 1 (module docstring); other batch sizes absent."""
    for _ in range(settings.warmup):
        for request in requests:
            time_generation(prompts, request, settings.new_tokens, timer.clock)
    timed: list[TimedGeneration] = []
    cycle = itertools.cycle(requests)
    run_until(
        lambda: timed.append(time_generation(prompts, next(cycle), settings.new_tokens, timer.clock)),
        min_iterations=settings.iterations,
        min_seconds=settings.seconds,
        warmup=0,
        clock=timer.clock,
    )
    result = CostResult(latency_metrics(timed))
    result.metrics.update(
        summarize([t.llama_prompt_eval_ms for t in timed]).as_metrics("llama_cpp_prompt_eval_ms")
    )
    decode = [t.llama_decode_ms_per_token for t in timed if t.llama_decode_ms_per_token is not None]
    if decode:
        result.metrics.update(summarize(decode).as_metrics("llama_cpp_decode_ms_per_token"))
    result.update(_throughput(prompts, requests, settings, timer, meter))
    for batch_size in settings.batch_sizes:
        if batch_size > 1:
            result.tags[f"vlm_quant.cost_absent_bs{batch_size}"] = ONE_AT_A_TIME
    result.tags[TAG_PHASE_ENERGY_ABSENT] = f"GPU only: {ONE_AT_A_TIME} on the CPU"
    result.metrics.update(optimum_metrics(result.metrics))
    for key in HEADLINE_KEYS:  # the quality pass ran at batch 1: that is the evaluation's batch size
        if f"{key}_bs1" in result.metrics:
            result.metrics[key] = result.metrics[f"{key}_bs1"]
    return result


def _throughput(
    prompts: EnginePrompts,
    requests: Sequence[Request],
    settings: CostSettings,
    timer: DeviceTimer,
    meter: EnergyMeter | None,
) -> CostResult:
    """Images/s and tokens/s at batch 1: the prompts rendered first (untimed), then back-to-back engine
    calls (libmtmd's image preprocessing, ~10 ms of a call, is inside them: it cannot be done apart)."""
    prepared = [(prompts.prompt(request), request.images[0]) for request in requests]
    cycle = itertools.cycle(prepared)
    spans: list[float] = []

    def one() -> None:
        prompt, image = next(cycle)
        with timer.span() as span:
            prompts.engine.generate(
                prompt,
                image,
                max_new_tokens=settings.new_tokens,
                min_new_tokens=settings.new_tokens,
                clock=timer.clock,
            )
        spans.append(span.elapsed_s)

    if meter is not None:
        meter.begin_window("throughput_bs1")
    try:
        run_until(
            one, min_iterations=settings.iterations, min_seconds=settings.seconds, warmup=0, clock=timer.clock
        )
    except BaseException:
        if meter is not None:
            meter.discard_window("throughput_bs1")
        raise
    images_per_s = len(spans) / sum(spans)
    result = CostResult(
        {
            "throughput_images_per_s_bs1": images_per_s,
            "throughput_tokens_per_s_bs1": images_per_s * settings.new_tokens,
        }
    )
    if meter is not None:
        window = meter.end_window("throughput_bs1")
        energy = derive_energy_metrics(window, len(spans), len(spans) * settings.new_tokens)
        result.metrics.update({f"{key}_bs1": value for key, value in energy.items()})
        if window.absent_reason and getattr(meter.gpu, "available", True):
            result.tags["vlm_quant.energy_absent_throughput_bs1"] = window.absent_reason
    return result
