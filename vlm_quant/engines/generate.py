"""Batched greedy generation through the processor's chat template (the eager engine).

One image and one prompt per conversation; batches are left-padded so every row's new tokens start
at the same column. Two steps, so the cost pass can time them apart: ``prepare_inputs`` (chat template,
image processor, copy to the device: host work) and ``generate_prepared`` (the model alone: vision
encoding, prefill, decode). ``generate`` chains them and decodes the text, for the quality pass (stops
at EOS); the cost pass uses ``min_new_tokens == max_new_tokens``: a fixed output length, so timings
compare across models.
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
    engine: str = "eager"  # "eager", "compiled" or "static-cache" (see engine_kwargs)

    def processor_kwargs(self) -> dict[str, Any]:
        return {} if self.image_splitting is None else {"do_image_splitting": self.image_splitting}


@dataclass(frozen=True)
class Generated:
    """Decoded new text per row and how many tokens each row generated (up to and including EOS)."""

    texts: list[str]
    new_tokens: list[int]


@dataclass(frozen=True)
class Request:
    """One row of a batch: chat messages with ``{"type": "image"}`` placeholders, and their images."""

    messages: list[dict[str, Any]]
    images: list[Image.Image]


def single_image_request(image: Image.Image, text: str) -> Request:
    """One user turn: the image first, then the text (the order the VLM chat templates expect)."""
    return Request(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}], [image]
    )


def processor_inputs(
    processor: Any,
    requests: list[Request],
    *,
    dtype: torch.dtype,
    settings: GenerationSettings,
    device: str | None = None,
) -> dict[str, torch.Tensor]:
    """Model inputs of a batch, where the processor made them (CPU, or ``device`` for a torchvision
    image processor): chat template per row, left padding, image processor, pixel tensors cast to
    the model's ``dtype``. The host half of `prepare_inputs`; the input pipeline runs it in workers."""
    processor.tokenizer.padding_side = "left"
    texts = [
        processor.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False)
        for r in requests
    ]
    on_device = {"device": device} if device else {}  # only the torchvision backend takes a device
    inputs = processor(
        text=texts,
        images=[r.images for r in requests],
        padding=True,
        return_tensors="pt",
        **settings.processor_kwargs(),
        **on_device,
    )
    inputs.pop("token_type_ids", None)  # some processors add them; the generate() of VLMs rejects them
    return {
        key: value.to(dtype=dtype) if value.is_floating_point() else value for key, value in inputs.items()
    }


def to_device(inputs: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """``inputs`` on ``device``; from pinned host memory the copy is asynchronous (``non_blocking``),
    ordered before the model's kernels on the same stream."""
    return {key: value.to(device, non_blocking=True) for key, value in inputs.items()}


def prepare_inputs(
    processor: Any,
    requests: list[Request],
    *,
    device: torch.device,
    dtype: torch.dtype,
    settings: GenerationSettings,
) -> dict[str, torch.Tensor]:
    """Model inputs of a batch, on ``device`` (`processor_inputs`, then `to_device`), in this process."""
    return to_device(processor_inputs(processor, requests, dtype=dtype, settings=settings), device)


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


ENGINES_WITH_STATIC_CACHE = ("compiled", "static-cache")


def engine_kwargs(engine: str) -> dict[str, Any]:
    """generate() arguments of an engine (a requested one, or one resolved by engines.selection).

    - "eager": transformers' default, a dynamic KV cache, no compilation.
    - "compiled": a static KV cache, which makes transformers compile the decode step with
      torch.compile on accelerators; on CPU transformers uses the static cache without compiling.
      ``resolve_engine`` checks whether a compilation really happened.
    - "static-cache": what "compiled" resolves to when no compilation was observed: the static KV
      cache with compilation disabled, so what runs is what the label says on every device.
    """
    if engine == "eager":
        return {}
    if engine == "static-cache":
        return {"cache_implementation": "static", "disable_compile": True}
    if engine == "compiled":
        from transformers import CompileConfig

        return {
            "cache_implementation": "static",
            "compile_config": CompileConfig(fullgraph=False, dynamic=False),
        }
    raise ValueError(f"unknown engine {engine!r}")


@torch.inference_mode()
def generate_prepared(
    model: Any,
    inputs: dict[str, torch.Tensor],
    settings: GenerationSettings,
    *,
    pad_token_id: int,
    logits_processor: list[Any] | None = None,
) -> torch.Tensor:
    """Greedy new token ids (batch x new tokens) from inputs made by ``prepare_inputs``: the model alone.

    ``logits_processor``: callables ``(input_ids, scores) -> scores`` that generate() calls once per
    new token, after that token's logits are computed (the cost pass time-stamps tokens with one).
    """
    from transformers import LogitsProcessorList

    eos = stop_token_ids(model)
    output = model.generate(
        **engine_kwargs(settings.engine),
        **inputs,
        do_sample=False,
        num_beams=1,
        max_new_tokens=settings.max_new_tokens,
        min_new_tokens=settings.min_new_tokens,
        pad_token_id=pad_token_id,
        eos_token_id=eos or None,
        logits_processor=LogitsProcessorList(logits_processor or []),
        # Checkpoints ship sampling defaults (temperature, top_p); greedy ignores them, so unset
        # them to keep the logs free of "not used" warnings.
        temperature=None,
        top_p=None,
        top_k=None,
    )
    return output[:, inputs["input_ids"].shape[1] :]


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
    inputs = prepare_inputs(processor, requests, device=device, dtype=dtype, settings=settings)
    new_ids = generate_prepared(model, inputs, settings, pad_token_id=pad_token_id(model, processor))
    return decode_new_ids(model, processor, new_ids)


def decode_new_ids(model: Any, processor: Any, new_ids: torch.Tensor) -> Generated:
    """The text of each row's new tokens (special tokens dropped, stripped) and its token count."""
    texts = [t.strip() for t in processor.batch_decode(new_ids, skip_special_tokens=True)]
    return Generated(texts, count_new_tokens(new_ids, stop_token_ids(model)))
