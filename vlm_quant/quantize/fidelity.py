"""Fidelity to the unquantized model: how far a quantized model's outputs moved from the 16-bit ones.

Before a plan is applied, the model as loaded (16-bit on GPU, float32 on CPU) continues each fidelity
input greedily for up to ``new_tokens`` tokens (``continue_greedily``; stops after EOS). The prompt and
that continuation form one fixed token sequence; one teacher-forced forward pass over it (``capture``)
keeps the vision features, the projector's output and the log-probabilities at every continuation
position (the positions that predict continuation token 1..k; position 1 is the first generated token).
After quantization the *same* sequences run through the quantized model, teacher-forced, and
``compare_sample`` measures, per input:

- per token of a role's output (one row of its ``(..., hidden)`` output: a vision patch, a projected
  image token): the cosine similarity against the reference row (dimensionless, -1..1; 1 = same
  direction; 1 when both rows are zero, 0 when only one is);
- per continuation position: KL(p_16bit || p_quant) of the next-token distributions in nats (>= 0),
  and whether the two greedy (argmax) tokens agree.

``summarize`` pools the tokens (positions) of every input and gives each the same weight:

- ``fidelity_<role>_cosine_token_mean`` / ``_token_p5``: mean / 5th percentile (numpy's linear
  interpolation) of the per-token cosines over all image tokens of all inputs;
- ``fidelity_logits_kl_nats_token_mean``: mean KL over all continuation positions of all inputs;
- ``fidelity_top1_agreement_token_mean``: fraction of those positions whose argmax token is unchanged.

A per-token cosine, unlike the cosine of the flattened tensor, is not dominated by a few high-norm
tokens (one such token can make the flattened cosine 0.84 where the mean token's is 0.29).

Memory: the reference keeps the role outputs in the dtype they were computed in (no upcast; 16 SmolVLM
images with 13 tiles each are ~330 MiB of bf16 vision features) and the log-probabilities in float32,
positions x vocabulary (16 x 16 x 49k = 50 MB), all on the CPU. Role outputs are caught with forward
hooks on the family's role modules, found by path each time, so a module swapped in place (the ONNX
Runtime vision tower) is hooked as well. Where the projector sits inside the vision module (Qwen2-VL's
merger), the vision features are the projector's *input*, so the two roles stay distinct measurements.
These metrics are meaningful with random weights too (where every caption metric is 0).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vlm_quant.engines.generate import (
    GenerationSettings,
    count_new_tokens,
    generate_prepared,
    model_inputs,
    pad_token_id,
    stop_token_ids,
)
from vlm_quant.models.families import FamilySpec

ROLES = ("vision", "projector")
KL = "fidelity_logits_kl_nats_token_mean"
TOP1 = "fidelity_top1_agreement_token_mean"
METRICS = (
    *(f"fidelity_{role}_cosine_token_{stat}" for role in ROLES for stat in ("mean", "p5")),
    KL,
    TOP1,
)


@dataclass(frozen=True)
class TeacherForced:
    """One fidelity input as a fixed token sequence: the prompt followed by the 16-bit model's greedy
    continuation minus its last token, so the last ``positions`` logits predict continuation tokens
    1..``positions``. Tensors stay on the CPU (moved to the model's device for each pass)."""

    inputs: dict[str, torch.Tensor]  # processor outputs with input_ids (and their masks) extended
    continuation: list[int]  # the greedy continuation's token ids (up to and including EOS)

    @property
    def positions(self) -> int:
        return len(self.continuation)


@dataclass(frozen=True)
class Outputs:
    """What one teacher-forced sequence produced: role outputs as (tokens, hidden) rows, in the dtype
    they were computed in, and float32 log-probabilities at the continuation positions."""

    roles: dict[str, torch.Tensor]  # "vision" / "projector" -> (tokens, hidden)
    log_probs: torch.Tensor  # (positions, vocab) float32, log-softmax of the logits


@dataclass(frozen=True)
class SampleFidelity:
    """One input's per-token measurements (float64 / bool, one entry per token or position)."""

    cosines: dict[str, torch.Tensor]  # role -> (tokens,) cosine of each row
    kl_nats: torch.Tensor  # (positions,)
    top1_agrees: torch.Tensor  # (positions,) bool


def _extend(inputs: dict[str, torch.Tensor], tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """``inputs`` with ``tokens`` (1 x m) appended: to ``input_ids``, and to every per-token tensor of
    the same shape (attention mask 1, token-type ids 0: the new tokens are text)."""
    ids = inputs["input_ids"]
    extended = {}
    for key, value in inputs.items():
        if key == "input_ids":
            extended[key] = torch.cat([ids, tokens.to(ids)], dim=1)
        elif isinstance(value, torch.Tensor) and value.shape == ids.shape:
            fill = value.new_full((value.shape[0], tokens.shape[1]), 1 if key == "attention_mask" else 0)
            extended[key] = torch.cat([value, fill], dim=1)
        else:
            extended[key] = value
    return extended


@torch.inference_mode()
def continue_greedily(
    model: nn.Module, processor: Any, inputs: dict[str, torch.Tensor], new_tokens: int
) -> TeacherForced:
    """The model's greedy continuation of one prompt (batch of one; eager engine; stops after EOS), as
    the teacher-forced sequence every later pass (16-bit and quantized) runs."""
    settings = GenerationSettings(max_new_tokens=new_tokens)
    new_ids = generate_prepared(model, inputs, settings, pad_token_id=pad_token_id(model, processor))
    (k,) = count_new_tokens(new_ids, stop_token_ids(model))
    continuation = new_ids[:, :k]
    sequence = _extend(inputs, continuation[:, :-1])
    return TeacherForced({key: value.cpu() for key, value in sequence.items()}, continuation[0].tolist())


def _rows(tensor: torch.Tensor) -> torch.Tensor:
    """A role output as (tokens, hidden): every leading dimension (images, tiles, sequence) flattened."""
    return tensor.detach().reshape(-1, tensor.shape[-1]).cpu()


def _first_tensor(value: Any) -> torch.Tensor | None:
    """The main tensor of a module's output (a tensor, a ModelOutput's first field, a tuple's first)."""
    if isinstance(value, torch.Tensor):
        return value
    hidden = getattr(value, "last_hidden_state", None)
    if isinstance(hidden, torch.Tensor):
        return hidden
    if isinstance(value, (tuple, list)) and value:
        return _first_tensor(value[0])
    return None


def _inside(inner: str, outer: str) -> bool:
    return inner.startswith(outer + ".")


@contextmanager
def _role_hooks(model: nn.Module, family: FamilySpec) -> Iterator[dict[str, torch.Tensor]]:
    """Hooks filling {role: (tokens, hidden) output} for the vision and projector roles during one pass."""
    caught: dict[str, torch.Tensor] = {}
    vision, projector = family.roles["vision"][0], family.roles["projector"][0]
    handles = []

    def keep(role: str, take_input: bool) -> Callable:
        def hook(module, args, kwargs, output):
            value = (args[0] if args else next(iter(kwargs.values()))) if take_input else output
            tensor = _first_tensor(value)
            if tensor is not None:
                caught[role] = _rows(tensor)

        return hook

    nested = _inside(projector, vision)  # Qwen2-VL: the merger is the last stage of model.visual
    handles.append(
        model.get_submodule(projector if nested else vision).register_forward_hook(
            keep("vision", take_input=nested), with_kwargs=True
        )
    )
    handles.append(
        model.get_submodule(projector).register_forward_hook(keep("projector", False), with_kwargs=True)
    )
    try:
        yield caught
    finally:
        for handle in handles:
            handle.remove()


def _continuation_logits(model: nn.Module, inputs: dict[str, torch.Tensor], positions: int) -> torch.Tensor:
    """(positions, vocab) logits of the last ``positions`` tokens, teacher-forced, without a KV cache."""
    accepts_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
    keep = {"logits_to_keep": positions} if accepts_keep else {}  # spares the prompt's logits
    logits = model(**model_inputs(model, inputs), use_cache=False, **keep).logits
    return logits[0, -positions:]


@torch.inference_mode()
def capture(model: nn.Module, family: FamilySpec, sequence: TeacherForced) -> Outputs:
    """One teacher-forced forward pass of ``sequence``; its role outputs and continuation log-probs."""
    device = next(model.parameters()).device
    inputs = {key: value.to(device) for key, value in sequence.inputs.items()}
    with _role_hooks(model, family) as caught:
        logits = _continuation_logits(model, inputs, sequence.positions)
    log_probs = torch.log_softmax(logits.float(), dim=-1).cpu()
    return Outputs(dict(caught), log_probs)


def token_cosines(reference: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each row (token) of two (tokens, hidden) tensors, float64, within [-1, 1];
    1 for a row that is zero in both (nothing moved), 0 where only one is zero."""
    if reference.shape != other.shape:
        raise ValueError(f"role outputs changed shape: {tuple(reference.shape)} vs {tuple(other.shape)}")
    a, b = reference.to(torch.float64), other.to(torch.float64)
    norm_a, norm_b = a.norm(dim=-1), b.norm(dim=-1)
    norms = norm_a * norm_b
    cosines = torch.where(norms > 0, (a * b).sum(dim=-1) / norms.clamp_min(torch.finfo(a.dtype).tiny), 0.0)
    both_zero = (norm_a == 0) & (norm_b == 0)
    return torch.where(both_zero, 1.0, cosines).clamp(-1.0, 1.0)  # rounding can pass 1 by an ulp


def kl_nats(reference_log_probs: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """KL(p_reference || p) in nats at each position (rows of log-probabilities), float64, >= 0;
    exactly 0 where the rows are identical."""
    ref, other = reference_log_probs.to(torch.float64), log_probs.to(torch.float64)
    kl = (ref.exp() * (ref - other)).sum(dim=-1)
    return kl.clamp_min(0.0)  # rounding can dip below 0 by ~1e-16


def compare_sample(reference: Outputs, outputs: Outputs) -> SampleFidelity:
    """One input's per-token cosines (roles the reference has) and per-position KL and top-1 agreement."""
    missing = [role for role in reference.roles if role not in outputs.roles]
    if missing:
        raise ValueError(f"the {missing[0]} role produced no output after quantization (hook not reached)")
    if reference.log_probs.shape != outputs.log_probs.shape:
        shapes = f"{tuple(reference.log_probs.shape)} vs {tuple(outputs.log_probs.shape)}"
        raise ValueError(f"logits changed shape: {shapes}")
    return SampleFidelity(
        {role: token_cosines(reference.roles[role], outputs.roles[role]) for role in reference.roles},
        kl_nats(reference.log_probs, outputs.log_probs),
        reference.log_probs.argmax(dim=-1) == outputs.log_probs.argmax(dim=-1),
    )


def summarize(samples: Sequence[SampleFidelity]) -> dict[str, float | None]:
    """The fidelity metrics (module docstring), every token / position of every input pooled with the
    same weight, and the counts they were taken over; a role that never ran is None (absent)."""
    if not samples:
        raise ValueError("fidelity needs at least one input")
    metrics: dict[str, float | None] = {}
    for role in ROLES:
        pooled = [s.cosines[role] for s in samples if role in s.cosines]
        values = torch.cat(pooled).numpy() if pooled else np.empty(0)
        metrics[f"fidelity_{role}_cosine_token_mean"] = float(values.mean()) if values.size else None
        metrics[f"fidelity_{role}_cosine_token_p5"] = float(np.percentile(values, 5)) if values.size else None
    kl = torch.cat([s.kl_nats for s in samples])
    metrics[KL] = float(kl.mean())
    metrics[TOP1] = float(torch.cat([s.top1_agrees for s in samples]).to(torch.float64).mean())
    metrics["fidelity_n_images"] = float(len(samples))
    metrics["fidelity_n_positions"] = float(kl.numel())
    return metrics


def compare(reference: Sequence[Outputs], outputs: Sequence[Outputs]) -> dict[str, float | None]:
    """``summarize`` of the inputs' ``compare_sample`` (the same inputs in the same order)."""
    if len(reference) != len(outputs) or not reference:
        raise ValueError(f"fidelity needs the same non-empty input list ({len(reference)} vs {len(outputs)})")
    return summarize([compare_sample(r, o) for r, o in zip(reference, outputs)])


def sample_row(sample: SampleFidelity) -> dict[str, Any]:
    """One input's own values (the ``fidelity/fidelity.json`` artifact's rows): the same statistics over
    that input's tokens alone, and how many tokens / positions it has."""
    row: dict[str, Any] = summarize([sample])
    del row["fidelity_n_images"]
    row["n_tokens"] = {role: int(values.numel()) for role, values in sample.cosines.items()}
    return row
