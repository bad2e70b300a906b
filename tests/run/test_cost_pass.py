"""The cost pass end to end with a fake clock, a fake processor and a fake model.

The fakes advance one clock by known amounts: preprocessing per image, a "compilation" the first time
the model sees a prompt length, the prefill, each decode step and a tail after the last token. Every
reported number can then be written down from those amounts, and a wrong formula (TTFT that includes
preprocessing, decode time as a difference of two calls, a division by N instead of N - 1, warm-up
that misses a sample, preprocessing billed to throughput) gives a different number.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from vlm_quant.config import ExperimentConfig
from vlm_quant.engines.generate import GenerationSettings, Request, single_image_request
from vlm_quant.errors import UserError
from vlm_quant.measure.energy import EnergyMeter
from vlm_quant.measure.timing import DeviceTimer
from vlm_quant.run import cost_pass
from vlm_quant.run.cost_pass import (
    CostSettings,
    measure_cost,
    measure_latency,
    measure_throughput,
    micro_batches,
    resolve_cost_settings,
)

PREPROCESS_S = 0.030  # per image, in the processor
PREFILL_S = 0.200  # vision encoding + prefill, per generate() call
DECODE_S = 0.010  # per decode step
TAIL_S = 0.005  # after the last token (generate()'s own bookkeeping)
COMPILE_S = 5.0  # the first call at a new prompt length (a compiled engine's graph)
N_TOKENS = 6


class Clock:
    """Seconds; moves only when the fakes say so. Counts synchronisations."""

    def __init__(self) -> None:
        self.now = 100.0
        self.syncs = 0

    def __call__(self) -> float:
        return self.now

    def sync(self) -> None:
        self.syncs += 1


class FakeProcessor:
    """Prompt length = 10 + the number of words of the prompt; time PREPROCESS_S per image."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.tokenizer = SimpleNamespace(padding_side="right", pad_token_id=0)

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        return next(p["text"] for p in messages[0]["content"] if p["type"] == "text")

    def __call__(self, text, images, padding, return_tensors, **kwargs):
        self.clock.now += PREPROCESS_S * len(images)
        length = 10 + max(len(t.split()) for t in text)
        return {
            "input_ids": torch.ones(len(text), length, dtype=torch.long),
            "attention_mask": torch.ones(len(text), length, dtype=torch.long),
            "pixel_values": torch.zeros(len(text), 3, 4, 4),
        }


class FakeModel(torch.nn.Module):
    """generate(): prefill, then one decode step per further token, calling the logits processors."""

    def __init__(self, clock: Clock, *, oom_at_batch: int | None = None) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.clock = clock
        self.generation_config = SimpleNamespace(eos_token_id=2, pad_token_id=0)
        self.oom_at_batch = oom_at_batch
        self.seen_shapes: set[tuple[int, int]] = set()
        self.graphs = 0  # "compilations", read by the cost pass through compiled_graphs()
        self.calls = 0

    def generate(self, *, input_ids, max_new_tokens, min_new_tokens, logits_processor, **kwargs):
        assert min_new_tokens == max_new_tokens  # the cost pass fixes the output length
        if input_ids.shape[0] == self.oom_at_batch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.calls += 1
        if tuple(input_ids.shape) not in self.seen_shapes:
            self.seen_shapes.add(tuple(input_ids.shape))
            self.graphs += 1
            self.clock.now += COMPILE_S
        scores = torch.zeros(input_ids.shape[0], 8)
        ids = input_ids
        for step in range(max_new_tokens):
            self.clock.now += PREFILL_S if step == 0 else DECODE_S
            for processor in logits_processor:
                scores = processor(ids, scores)
            ids = torch.cat([ids, torch.full((ids.shape[0], 1), 5)], dim=1)
        self.clock.now += TAIL_S
        return ids


@pytest.fixture
def clock(monkeypatch):
    return Clock()


@pytest.fixture
def fakes(clock, monkeypatch):
    model = FakeModel(clock)
    monkeypatch.setattr(cost_pass, "compiled_graphs", lambda: model.graphs)
    timer = DeviceTimer("cpu", clock=clock, synchronize=clock.sync)
    return model, FakeProcessor(clock), timer


def requests(n: int = 3) -> list[Request]:
    """Prompts of different lengths, so each sample has its own shape (its own compiled graph)."""
    image = Image.new("RGB", (8, 8))
    return [single_image_request(image, " ".join(["word"] * (i + 1))) for i in range(n)]


def settings(**overrides) -> CostSettings:
    values = dict(warmup=1, iterations=12, seconds=0.0, new_tokens=N_TOKENS, batch_sizes=(1,))
    return CostSettings(**{**values, **overrides})


BASE = GenerationSettings(max_new_tokens=32)
LATENCY_S = PREPROCESS_S + PREFILL_S + (N_TOKENS - 1) * DECODE_S + TAIL_S


def test_latency_splits_preprocessing_ttft_and_decode_from_one_call(fakes):
    model, processor, timer = fakes
    m = measure_latency(model, processor, requests(), settings(), BASE, torch.float32, timer).metrics
    assert m["preprocess_ms_p50"] == pytest.approx(PREPROCESS_S * 1000)
    assert m["ttft_ms_p50"] == pytest.approx(PREFILL_S * 1000)  # the model alone, inputs prepared
    assert m["decode_ms_per_token_p50"] == pytest.approx(DECODE_S * 1000)
    assert m["decode_ms_per_token_mean"] == pytest.approx(DECODE_S * 1000)
    assert m["generate_ms_p50"] == pytest.approx((LATENCY_S - PREPROCESS_S) * 1000)
    assert m["latency_ms_p50"] == pytest.approx(LATENCY_S * 1000)  # preprocessing + generation
    assert m["latency_ms_p50"] >= m["ttft_ms_p50"] + m["preprocess_ms_p50"]
    # 1 warm-up round over 3 samples + 12 timed iterations, each ONE generate() call.
    assert model.calls == 3 + 12 and m["latency_ms_n"] == 12


def test_warmup_covers_every_sample_so_no_timed_iteration_compiles(fakes):
    model, processor, timer = fakes
    m = measure_latency(model, processor, requests(5), settings(), BASE, torch.float32, timer).metrics
    assert m["cost_graphs_compiled_timed_latency"] == 0
    # Had a compilation landed in a timed iteration, the maximum (and so the mean) would show it.
    assert m["latency_ms_mean"] == pytest.approx(LATENCY_S * 1000)


def test_without_warmup_the_compilations_show_in_the_timed_iterations(fakes):
    model, processor, timer = fakes
    m = measure_latency(model, processor, requests(3), settings(warmup=0), BASE, torch.float32, timer).metrics
    assert m["cost_graphs_compiled_timed_latency"] == 3
    assert m["latency_ms_mean"] == pytest.approx((LATENCY_S + 3 * COMPILE_S / 12) * 1000)


def test_intervals_hold_the_mean_stay_in_range_and_need_enough_values(fakes, clock):
    model, processor, timer = fakes
    original = model.generate
    slow = iter([0.0, 0.0, 0.0] + [0.0, 0.0, 2.0] * 10)  # every third timed call stalls 2 s after its tokens

    def jittery(**kwargs):
        out = original(**kwargs)
        clock.now += next(slow)
        return out

    model.generate = jittery
    m = measure_latency(model, processor, requests(), settings(), BASE, torch.float32, timer).metrics
    assert m["latency_ms_n"] == 12
    low, mean, high = m["latency_ms_ci95_low"], m["latency_ms_mean"], m["latency_ms_ci95_high"]
    assert 0 <= LATENCY_S * 1000 <= low < mean < high
    assert m["latency_ms_ci95_high"] <= (LATENCY_S + 2.0) * 1000
    assert m["ttft_ms_ci95_low"] == m["ttft_ms_ci95_high"] == pytest.approx(PREFILL_S * 1000)
    few = measure_latency(model, processor, requests(), settings(iterations=3), BASE, torch.float32, timer)
    assert few.metrics["latency_ms_n"] == 3 and not any("ci95" in key for key in few.metrics)


def test_throughput_times_the_model_alone_on_prepared_inputs(fakes):
    model, processor, timer = fakes
    result = measure_throughput(
        model, processor, requests(3), settings(), BASE, torch.float32, timer, batch_size=2
    )
    per_batch_s = LATENCY_S - PREPROCESS_S  # no preprocessing, no compilation (3 batches warmed up)
    assert result.metrics["throughput_images_per_s_bs2"] == pytest.approx(2 / per_batch_s)
    assert result.metrics["throughput_tokens_per_s_bs2"] == pytest.approx(2 * N_TOKENS / per_batch_s)
    assert result.metrics["cost_graphs_compiled_timed_bs2"] == 0
    assert model.calls == 3 + 12  # warm-up: the 3 distinct batches of the cycle; then cost_iterations timed


def test_micro_batches_cover_the_cycle_evenly():
    items = list(range(4))
    assert micro_batches(items, 1) == [[0], [1], [2], [3]]
    assert micro_batches(items, 8) == [[0, 1, 2, 3, 0, 1, 2, 3]]
    assert micro_batches(items[:3], 2) == [[0, 1], [2, 0], [1, 2]]


class CounterGpu:
    """An energy counter at a constant 250 W of the fake clock."""

    available = True

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def energy_mj(self) -> float:
        return 250.0 * self.clock.now * 1000.0


def test_energy_per_image_of_a_long_enough_window(fakes, clock):
    model, processor, timer = fakes
    meter = EnergyMeter(CounterGpu(clock), clock=clock)
    result = measure_throughput(
        model, processor, requests(2), settings(seconds=2.0), BASE, torch.float32, timer,
        batch_size=2, meter=meter,
    )
    images_per_s = result.metrics["throughput_images_per_s_bs2"]
    assert result.metrics["energy_j_per_image_bs2"] == pytest.approx(250.0 / images_per_s)
    assert not result.tags


def test_a_window_shorter_than_the_counter_refresh_gives_absent_energy_and_a_tag(fakes, clock):
    model, processor, timer = fakes
    meter = EnergyMeter(CounterGpu(clock), clock=clock)
    result = measure_throughput(
        model, processor, requests(2), settings(iterations=2), BASE, torch.float32, timer,
        batch_size=1, meter=meter,
    )
    assert not any(key.startswith(("energy", "images_per_kwh")) for key in result.metrics)
    assert "100 ms" in result.tags["vlm_quant.energy_absent_throughput_bs1"]


def test_out_of_memory_at_one_batch_size_is_absent_with_a_tag_and_the_pass_goes_on(clock, monkeypatch):
    model = FakeModel(clock, oom_at_batch=4)
    monkeypatch.setattr(cost_pass, "compiled_graphs", lambda: model.graphs)
    timer = DeviceTimer("cpu", clock=clock, synchronize=clock.sync)
    meter = EnergyMeter(CounterGpu(clock), clock=clock)
    result = measure_cost(
        model, FakeProcessor(clock), requests(2), settings(batch_sizes=(1, 2, 4)), BASE, torch.float32,
        timer, meter=meter, eval_batch_size=4,
    )
    assert "out of memory at batch size 4" in result.tags["vlm_quant.cost_oom_bs4"]
    assert "throughput_images_per_s_bs1" in result.metrics and "throughput_images_per_s_bs2" in result.metrics
    assert not any(key.endswith("_bs4") for key in result.metrics)
    assert "throughput_images_per_s" not in result.metrics  # the headline is at the failed batch size
    assert result.metrics["latency_ms_p50"] == pytest.approx(LATENCY_S * 1000)
    assert meter._open == {}  # the failed window was closed, not left open


def test_headline_throughput_is_the_evaluation_batch_size(fakes):
    model, processor, timer = fakes
    result = measure_cost(
        model, processor, requests(2), settings(batch_sizes=(1, 2)), BASE, torch.float32, timer,
        eval_batch_size=2,
    )
    assert result.metrics["throughput_images_per_s"] == result.metrics["throughput_images_per_s_bs2"]
    assert result.metrics["cost_graphs_compiled_timed"] == 0


def test_cost_batch_sizes_parameter(tmp_path):
    def cfg(**values):
        return ExperimentConfig(data_dir=str(tmp_path), batch_size=8, **values)

    assert resolve_cost_settings(cfg(), on_gpu=True).batch_sizes == (1, 8, 32)
    assert resolve_cost_settings(cfg(), on_gpu=False).batch_sizes == (1, 8)
    assert resolve_cost_settings(cfg(cost_batch_sizes="16, 2,2"), on_gpu=True).batch_sizes == (2, 16)
    explicit = resolve_cost_settings(cfg(cost_batch_sizes="4"), on_gpu=True)
    assert explicit.to_params()["cost_batch_sizes"] == "4"
    with pytest.raises(UserError, match="'x'"):
        resolve_cost_settings(cfg(cost_batch_sizes="1,x"), on_gpu=True)
    with pytest.raises(UserError, match="'0'"):
        resolve_cost_settings(cfg(cost_batch_sizes="0"), on_gpu=True)


def test_phase_windows_split_batch1_energy_into_prefill_and_decode(fakes, clock):
    model, processor, timer = fakes
    meter = EnergyMeter(CounterGpu(clock), clock=clock)  # 250 W throughout
    result = measure_cost(
        model, processor, requests(2), settings(iterations=2, phase_repeats=2), BASE, torch.float32, timer,
        meter=meter, eval_batch_size=1,
    )
    m = result.metrics
    prefill_call_s = PREPROCESS_S + PREFILL_S + TAIL_S  # one new token; each call prepares its inputs
    assert m["prefill_energy_j_per_image"] == pytest.approx(250.0 * prefill_call_s)
    assert m["bs1_energy_j_per_image"] == pytest.approx(250.0 * LATENCY_S)
    assert m["decode_energy_j_per_token"] == pytest.approx(250.0 * DECODE_S)  # (full - prefill) / (N - 1)
    assert m["energy_wh_per_1k_images_bs1"] == pytest.approx(250.0 * LATENCY_S * 1000 / 3600)
    assert m["phase_prefill_windows_n"] == m["phase_full_windows_n"] == 2
    # Each window ran whole calls until it had lasted 2 s: ceil(2 / call seconds) calls.
    assert m["phase_full_calls_n"] == 2 * -(-2.0 // LATENCY_S)
    kinds = [w["kind"] for w in result.phase_windows]
    assert kinds == ["prefill", "full", "prefill", "full"]
    assert all(w["duration_s"] >= 2 for w in result.phase_windows)
    assert "vlm_quant.phase_energy_absent_reason" not in result.tags
    from test_sustainability_run import described

    new = set(m) - set(measure_cost(  # the same pass without phase windows: what they added
        model, processor, requests(2), settings(iterations=2), BASE, torch.float32, timer,
        meter=EnergyMeter(CounterGpu(clock), clock=clock), eval_batch_size=1,
    ).metrics)
    assert new and all(described(name) for name in new), sorted(n for n in new if not described(n))


def test_phase_windows_need_an_energy_counter(fakes):
    model, processor, timer = fakes
    from vlm_quant.measure.nvml import NullGpu

    meter = EnergyMeter(NullGpu("no CUDA device: the run is on CPU"))
    result = measure_cost(
        model, processor, requests(2), settings(iterations=2, phase_repeats=2), BASE, torch.float32, timer,
        meter=meter, eval_batch_size=1,
    )
    assert not any(k.startswith(("phase_", "prefill_", "decode_energy", "bs1_")) for k in result.metrics)
    reason = result.tags["vlm_quant.phase_energy_absent_reason"]
    assert reason == "GPU only: no CUDA device: the run is on CPU"
    assert model.calls == 2 + 2 + 2 + 2  # latency warm-up + timed, throughput warm-up + timed: no phase calls
