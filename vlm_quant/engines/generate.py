"""Batched greedy generation through the processor's chat template (the eager engine).

One image and one prompt per conversation; batches are left-padded so every row's new tokens start
at the same column. The same function serves the quality pass (stops at EOS) and the cost pass
(``min_new_tokens == max_new_tokens``: a fixed output length, so timings compare across models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image


@dataclass(frozen=True)
class GenerationSettings:
    """Greedy decoding settings (logged with the run)."""

    max_new_tokens: int
    min_new_tokens: int = 0
    image_splitting: bool | None = None  # Idefics3/SmolVLM tiling; None: the processor's default
    engine: str = "eager"  # "eager" or "compiled" (static KV cache + torch.compile of the decode step)

    def processor_kwargs(self) -> dict[str, Any]:
        return {} if self.image_splitting is None else {"do_image_splitting": self.image_splitting}


@dataclass(frozen=True)
class Generated:
    """Decoded new text per row and how many tokens each row generated (up to and including EOS)."""

    texts: list[str]
    new_tokens: list[int]


@dataclass(frozen=True)
class Request:
    """One row of a batch: chat messages with ``{"type": "image"}`` placeholders, and their images in order."""

    messages: list[dict[str, Any]]
    images: list[Image.Image]


def single_image_request(image: Image.Image, text: str) -> Request:
    """One user turn: the image first, then the text (the order the VLM chat templates expect)."""
    return Request(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}], [image]
    )


def build_inputs(
    processor: Any,
    requests: list[Request],
    *,
    device: torch.device,
    dtype: torch.dtype,
    settings: GenerationSettings,
) -> dict[str, torch.Tensor]:
    """Tokenize a batch: chat template per row, left padding, pixel tensors cast to the model's dtype."""
    processor.tokenizer.padding_side = "left"
    texts = [
        processor.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False)
        for r in requests
    ]
    inputs = processor(
        text=texts,
        images=[r.images for r in requests],
        padding=True,
        return_tensors="pt",
        **settings.processor_kwargs(),
    )
    inputs.pop("token_type_ids", None)  # some processors add them; the generate() of VLMs rejects them
    return {
        key: value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
        for key, value in inputs.items()
    }


def stop_token_ids(model: Any) -> list[int]:
    """EOS ids from the generation config (may be one id or several)."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)


def pad_token_id(model: Any, processor: Any) -> int:
    pad = model.generation_config.pad_token_id
    if pad is None:
        pad = processor.tokenizer.pad_token_id
    if pad is None:
        eos = stop_token_ids(model)
        pad = eos[0] if eos else 0
    return int(pad)


def count_new_tokens(new_ids: torch.Tensor, eos_ids: list[int]) -> list[int]:
    """Tokens generated per row: up to and including the first EOS, else the whole row."""
    counts = []
    for row in new_ids.tolist():
        stop = next((i for i, token in enumerate(row) if token in eos_ids), None)
        counts.append(len(row) if stop is None else stop + 1)
    return counts


def engine_kwargs(engine: str) -> dict[str, Any]:
    """generate() arguments of an engine.

    "compiled": a static KV cache, which makes transformers compile the decode step with
    torch.compile (mode "reduce-overhead", i.e. CUDA graphs) on CUDA devices; on CPU the static cache
    is used without compilation (transformers compiles automatically on accelerators only).
    """
    if engine == "eager":
        return {}
    from transformers import CompileConfig

    return {"cache_implementation": "static", "compile_config": CompileConfig(fullgraph=False, dynamic=False)}


@torch.inference_mode()
def generate(
    model: Any,
    processor: Any,
    requests: list[Request],
    settings: GenerationSettings,
    *,
    dtype: torch.dtype,
) -> Generated:
    """Greedy answers for a batch of requests (one image + prompt each, or interleaved few-shot turns)."""
    device = next(model.parameters()).device
    inputs = build_inputs(processor, requests, device=device, dtype=dtype, settings=settings)
    eos = stop_token_ids(model)
    output = model.generate(
        **engine_kwargs(settings.engine),
        **inputs,
        do_sample=False,
        num_beams=1,
        max_new_tokens=settings.max_new_tokens,
        min_new_tokens=settings.min_new_tokens,
        pad_token_id=pad_token_id(model, processor),
        eos_token_id=eos or None,
        # Checkpoints ship sampling defaults (temperature, top_p); greedy ignores them, so unset
        # them to keep the logs free of "not used" warnings.
        temperature=None,
        top_p=None,
        top_k=None,
    )
    new_ids = output[:, inputs["input_ids"].shape[1] :]
    texts = [t.strip() for t in processor.batch_decode(new_ids, skip_special_tokens=True)]
    return Generated(texts, count_new_tokens(new_ids, eos))
