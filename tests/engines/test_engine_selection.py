"""The engines on a tiny random SmolVLM on CPU: what resolve_engine labels, what engine_kwargs asks for,
and that the cost pass's token time stamps see every token of a real transformers generate()."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vlm_quant.engines import selection
from vlm_quant.engines.generate import (
    GenerationSettings,
    engine_kwargs,
    generate,
    generate_prepared,
    pad_token_id,
    prepare_inputs,
    single_image_request,
)
from vlm_quant.engines.selection import resolve_engine
from vlm_quant.measure.timing import DeviceTimer, TokenTimestamps
from vlm_quant.models.loading import load_vlm
from vlm_quant.run.cost_pass import time_request


@pytest.fixture(scope="module")
def tiny(tiny_vlm_dirs):
    return load_vlm(str(tiny_vlm_dirs["idefics3"]), dtype=torch.float32, device="cpu")


def probe():
    return single_image_request(Image.new("RGB", (64, 48), (120, 30, 200)), "Describe the image")


def test_engine_kwargs_say_what_runs():
    assert engine_kwargs("eager") == {}
    compiled = engine_kwargs("compiled")
    assert compiled["cache_implementation"] == "static" and compiled["compile_config"].dynamic is False
    assert engine_kwargs("static-cache") == {"cache_implementation": "static", "disable_compile": True}
    with pytest.raises(ValueError):
        engine_kwargs("turbo")


def test_compiled_on_cpu_resolves_to_static_cache_because_nothing_compiled(tiny):
    settings = GenerationSettings(4, engine="compiled")
    resolved, note = resolve_engine(tiny.model, tiny.processor, probe(), settings, torch.float32)
    assert resolved.engine == "static-cache"
    assert note.startswith("static-cache:") and "without torch.compile on cpu" in note
    # The static cache gives the same greedy tokens as the dynamic one.
    eager = generate(tiny.model, tiny.processor, [probe()], GenerationSettings(4), dtype=torch.float32)
    static = generate(tiny.model, tiny.processor, [probe()], resolved, dtype=torch.float32)
    assert static == eager


def test_compiled_only_when_a_compilation_was_observed(tiny, monkeypatch):
    graphs = iter([7, 9])  # dynamo's counter before and after the probe
    monkeypatch.setattr(selection, "compiled_graphs", lambda: next(graphs))
    settings = GenerationSettings(4, engine="compiled")
    resolved, note = resolve_engine(tiny.model, tiny.processor, probe(), settings, torch.float32)
    assert resolved.engine == "compiled" and "2 graph(s) compiled" in note


def test_a_failing_compiled_probe_falls_back_to_eager_with_the_reason(tiny, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("Dynamo failed to trace\nlong traceback")

    monkeypatch.setattr(selection, "generate", broken)
    resolved, note = resolve_engine(
        tiny.model, tiny.processor, probe(), GenerationSettings(4, engine="compiled"), torch.float32
    )
    assert resolved.engine == "eager" and "RuntimeError: Dynamo failed to trace" in note
    assert "long traceback" not in note


def test_eager_is_left_alone(tiny):
    settings = GenerationSettings(4)
    assert resolve_engine(tiny.model, tiny.processor, probe(), settings, torch.float32)[0] == settings


@pytest.mark.parametrize("engine", ["eager", "static-cache"])
def test_token_time_stamps_see_every_token_of_one_real_generate(tiny, engine):
    settings = GenerationSettings(6, min_new_tokens=6, engine=engine)
    inputs = prepare_inputs(tiny.processor, [probe()], device=torch.device("cpu"), dtype=torch.float32,
                            settings=settings)
    stamps = TokenTimestamps(DeviceTimer("cpu"))
    new_ids = generate_prepared(tiny.model, inputs, settings, pad_token_id=pad_token_id(tiny.model,
                                tiny.processor), logits_processor=[stamps])
    assert new_ids.shape[1] == 6 and len(stamps.stamps_s) == 6
    assert stamps.stamps_s == sorted(stamps.stamps_s)
    # Stamping changes nothing in the output.
    plain = generate_prepared(tiny.model, inputs, settings, pad_token_id=pad_token_id(tiny.model,
                              tiny.processor))
    assert torch.equal(plain, new_ids)


def test_time_request_on_a_real_model_is_consistent(tiny):
    settings = GenerationSettings(5, min_new_tokens=5)
    timed = time_request(tiny.model, tiny.processor, [probe()], settings, torch.float32, DeviceTimer("cpu"))
    assert timed.preprocess_s > 0 and timed.ttft_s > 0 and timed.decode_s_per_token > 0
    assert timed.latency_s == pytest.approx(timed.preprocess_s + timed.generate_s)
    assert timed.generate_s >= timed.ttft_s + 4 * timed.decode_s_per_token
