"""The llama.cpp engine: greedy generation through libmtmd agrees with its own teacher-forced logits, EOS
waits for min_new_tokens, and the cost pass's timing formulas (fake engine, fake clock)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vlm_quant.engines.llama_cpp import LlamaCppEngine, LlamaCppGeneration, LlamaCppTimings
from vlm_quant.quantize import gguf, gguf_converter, gguf_files
from vlm_quant.run.llama_cpp_passes import time_generation


@pytest.fixture(scope="module")
def tiny_engine(tiny_vlm_dirs, tmp_path_factory):
    for missing in (gguf.llama_cpp_missing(), gguf_converter.converter_missing()):
        if missing:
            pytest.skip(missing)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("VLMQ_GGUF_CACHE", str(tmp_path_factory.mktemp("gguf")))
        files = gguf_files.build_files(tiny_vlm_dirs["idefics3"], "gguf-q8_0", "gguf-f16")
    engine = LlamaCppEngine(files.text, files.mmproj, threads=1)
    yield engine
    engine.close()


PROMPT = "<|im_start|>User:<__media__>Describe this image.<end_of_utterance>\nAssistant:"


def test_greedy_tokens_are_the_argmax_of_the_teacher_forced_logits(tiny_engine):
    image = Image.new("RGB", (48, 40), (200, 30, 30))
    generated = tiny_engine.generate(PROMPT, image, max_new_tokens=5, min_new_tokens=5)
    assert len(generated.token_ids) == 5 and generated.image_tokens > 0
    log_probs = tiny_engine.continuation_log_probs(PROMPT, image, generated.token_ids)
    assert log_probs.shape == (5, tiny_engine.n_vocab)
    assert log_probs.argmax(axis=1).tolist() == generated.token_ids  # positions line up with generation
    assert np.allclose(np.exp(log_probs).sum(axis=1), 1.0, atol=1e-4)
    stamps = generated.timings.token_stamps_s
    assert list(stamps) == sorted(stamps) and generated.timings.end_s >= stamps[-1]


def test_eos_is_suppressed_until_min_new_tokens():
    engine = object.__new__(LlamaCppEngine)  # the argmax rule alone, on given logits
    engine.eog_ids = [2]
    engine._logits = lambda index: np.array([0.1, 0.2, 9.0, 0.3])
    assert engine._argmax(-1, suppress_eos=False) == 2
    assert engine._argmax(-1, suppress_eos=True) == 3


class FakeEngine:
    """Returns generations stamped from the shared fake clock: tokenize 0.01 s, prefill 0.5 s,
    0.1 s per later token, 0.02 s after the last."""

    def __init__(self, clock):
        self.clock = clock

    def prompt(self, rendered, placeholder):
        return rendered

    def generate(self, prompt, image, *, max_new_tokens, min_new_tokens, clock):
        start = clock()
        tokenized = self.clock.advance(0.01)
        stamps = [self.clock.advance(0.5)] + [self.clock.advance(0.1) for _ in range(max_new_tokens - 1)]
        end = self.clock.advance(0.02)
        timings = LlamaCppTimings(start, tokenized, tuple(stamps), end, 480.0, 40, 360.0, max_new_tokens - 1)
        return LlamaCppGeneration(list(range(max_new_tokens)), 64, 100, timings)


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += seconds
        return self.t


class FakePrompts:
    def __init__(self, engine, clock):
        self.engine, self.clock = engine, clock

    def prompt(self, request):
        self.clock.advance(0.004)  # the chat template
        return "prompt"


def test_timing_formulas_of_one_generation():
    clock = FakeClock()
    prompts = FakePrompts(FakeEngine(clock), clock)
    request = type("R", (), {"images": [Image.new("RGB", (8, 8))]})()
    timed = time_generation(prompts, request, 5, clock)
    assert timed.preprocess_s == pytest.approx(0.014)  # chat template + libmtmd tokenization
    assert timed.ttft_s == pytest.approx(0.5)
    assert timed.decode_s_per_token == pytest.approx(0.1)  # (stamp 5 - stamp 1) / 4
    assert timed.generate_s == pytest.approx(0.5 + 0.4 + 0.02)
    assert timed.latency_s == pytest.approx(0.014 + 0.92)
    assert timed.llama_decode_ms_per_token == pytest.approx(90.0)  # llama.cpp's 360 ms over 4 evals
