"""Batched greedy generation through the processor's chat template (the eager engine).

One image and one prompt per conversation; batches are left-padded so every row's new tokens start
at the same column. Two steps, so the cost pass can time them apart: ``prepare_inputs`` (chat template,
image processor, copy to the device: host work) and ``generate_prepared`` (the model alone: vision
encoding, prefill, decode). ``generate`` chains them and decodes the text, for the quality pass (stops
at EOS); the cost pass uses ``min_new_tokens == max_new_tokens``: a fixed output length, so timings
compare across models.
"""

from __future__ import annotations

import inspect
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
    if settings.image_splitting is not None:
        # Idefics2's processor expands each image's tokens from its image processor's own setting, not
        # from the call's do_image_splitting: set both, or tokens and tiles disagree.
        processor.image_processor.do_image_splitting = settings.image_splitting
    texts = [prompt_text(processor, r) for r in requests]
    on_device = {"device": device} if device else {}  # only the torchvision backend takes a device
    inputs = processor(
        text=texts,
        images=[r.images for r in requests],
        padding=True,
        return_tensors="pt",
        **_special_tokens_kwargs(processor, texts),
        **settings.processor_kwargs(),
        **on_device,
    )
    inputs.pop("labels", None)  # PaliGemma's processor adds training labels; generation takes none
    return {
        key: value.to(dtype=dtype) if value.is_floating_point() else value for key, value in inputs.items()
    }


PLAIN_PROMPT = "plain prompt (the processor has no chat template)"


def prompt_format(processor: Any) -> str:
    """How prompts reach the processor: "chat template", or `PLAIN_PROMPT` (PaliGemma)."""
    return "chat template" if getattr(processor, "chat_template", None) else PLAIN_PROMPT


def prompt_text(processor: Any, request: Request) -> str:
    """The text of one request as the processor expects it: the chat template rendered with the
    generation prompt; without a chat template, one image token per image and then the text parts of
    the messages, the form PaliGemma's processor documents (it adds BOS after the image tokens and the
    closing newline itself)."""
    if prompt_format(processor) == PLAIN_PROMPT:
        parts = [
            part["text"]
            for message in request.messages
            for part in message["content"]
            if part.get("type") == "text"
        ]
        image_tokens = (getattr(processor, "image_token", None) or "") * len(request.images)
        return image_tokens + " ".join(parts)
    return processor.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)


def _special_tokens_kwargs(processor: Any, texts: list[str]) -> dict[str, Any]:
    """``add_special_tokens=False`` when the rendered prompts already begin with BOS (Gemma 3's template
    writes ``{{ bos_token }}``): the tokenizer would add a second one, as transformers'
    ``apply_chat_template(tokenize=True)`` avoids too."""
    bos = getattr(processor.tokenizer, "bos_token", None)
    if bos and texts and all(text.startswith(bos) for text in texts):
        return {"add_special_tokens": False}
    return {}


def model_inputs(model: Any, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``inputs`` without ``token_type_ids`` where the model's forward does not name them: Gemma 3 and
    PaliGemma read them (bidirectional attention over the image / the prefix at prefill), while other
    VLMs' generate() rejects the all-zero segment ids some tokenizers add."""
    if "token_type_ids" in inputs and "token_type_ids" not in inspect.signature(model.forward).parameters:
        return {key: value for key, value in inputs.items() if key != "token_type_ids"}
    return inputs


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
        **model_inputs(model, inputs),
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
