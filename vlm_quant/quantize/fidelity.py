"""Fidelity to the unquantized model: how far a quantized model's outputs moved from the 16-bit ones.

Before a plan is applied, the model as loaded (16-bit on GPU, float32 on CPU) runs a few fixed inputs
once (``capture``) and its outputs are kept: the vision features, the projector's output and the
language model's next-token logits at the first generated position (teacher-forced on the prompt, one
forward pass, no sampling). After quantization the same inputs run again and ``compare`` gives, as the
mean over the inputs:

- ``fidelity_vision_cosine``, ``fidelity_projector_cosine``: cosine similarity (dimensionless, -1..1;
  1 = same direction) of the flattened role output against the reference;
- ``fidelity_logits_kl``: KL(reference || quantized) of the next-token distributions, in nats (>= 0);
- ``fidelity_top1_agreement``: fraction of inputs whose greedy next token is unchanged (0..1).

These are meaningful with random weights too (where every caption metric is 0), so offline runs show
what a precision does. Role outputs are caught with forward hooks on the family's role modules, found
by path each time, so a module swapped in place (the ONNX Runtime vision tower) is hooked as well. Where
the projector sits inside the vision module (Qwen2-VL's merger), the vision features are the
projector's *input*, so the two roles stay distinct measurements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vlm_quant.models.families import FamilySpec

METRICS = (
    "fidelity_vision_cosine",
    "fidelity_projector_cosine",
    "fidelity_logits_kl",
    "fidelity_top1_agreement",
)


@dataclass(frozen=True)
class Outputs:
    """What one input produced: each role's output (float64, flattened) and the next-token logits."""

    roles: dict[str, torch.Tensor]  # "vision" / "projector" -> 1-D float64 tensor
    logits: torch.Tensor  # (vocab,) float64, at the last prompt position


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
    """Hooks filling {role: output} for the vision and projector roles during one forward pass."""
    caught: dict[str, torch.Tensor] = {}
    vision, projector = family.roles["vision"][0], family.roles["projector"][0]
    handles = []

    def keep(role: str, take_input: bool) -> Callable:
        def hook(module, args, kwargs, output):
            value = (args[0] if args else next(iter(kwargs.values()))) if take_input else output
            tensor = _first_tensor(value)
            if tensor is not None:
                caught[role] = tensor.detach().reshape(-1).to(torch.float64).cpu()

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


@torch.inference_mode()
def capture(model: nn.Module, family: FamilySpec, inputs: Sequence[dict[str, torch.Tensor]]) -> list[Outputs]:
    """One teacher-forced forward pass per input (a processor batch of one prompt); the outputs kept."""
    kept = []
    for batch in inputs:
        with _role_hooks(model, family) as caught:
            logits = model(**batch, use_cache=False).logits
        kept.append(Outputs(dict(caught), logits[0, -1].detach().to(torch.float64).cpu()))
    return kept


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two flat float64 tensors (1.0 when both are all zero: nothing moved)."""
    if a.shape != b.shape:
        raise ValueError(f"role outputs changed shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    norms = float(a.norm() * b.norm())
    if norms == 0.0:
        return 1.0 if float(a.norm()) == float(b.norm()) else 0.0
    return float(torch.dot(a, b)) / norms


def kl_divergence(reference_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """KL(softmax(reference) || softmax(logits)) in nats, float64; exactly 0 for identical logits."""
    ref_log = torch.log_softmax(reference_logits, dim=-1)
    log = torch.log_softmax(logits, dim=-1)
    return max(0.0, float((ref_log.exp() * (ref_log - log)).sum()))  # rounding can dip below 0 by ~1e-16


def compare(reference: Sequence[Outputs], outputs: Sequence[Outputs]) -> dict[str, float | None]:
    """The four fidelity metrics, each the mean over the inputs; a role that never ran is None (absent)."""
    if len(reference) != len(outputs) or not reference:
        raise ValueError(f"fidelity needs the same non-empty input list ({len(reference)} vs {len(outputs)})")
    metrics: dict[str, float | None] = {}
    for role in ("vision", "projector"):
        pairs = [(r.roles[role], o.roles[role]) for r, o in zip(reference, outputs) if role in r.roles]
        missing = [o for r, o in zip(reference, outputs) if role in r.roles and role not in o.roles]
        if missing:
            raise ValueError(f"the {role} role produced no output after quantization (hook not reached)")
        metrics[f"fidelity_{role}_cosine"] = (
            sum(cosine(a, b) for a, b in pairs) / len(pairs) if pairs else None
        )
    n = len(reference)
    metrics["fidelity_logits_kl"] = (
        sum(kl_divergence(r.logits, o.logits) for r, o in zip(reference, outputs)) / n
    )
    metrics["fidelity_top1_agreement"] = (
        sum(int(r.logits.argmax()) == int(o.logits.argmax()) for r, o in zip(reference, outputs)) / n
    )
    return metrics


def per_input(reference: Sequence[Outputs], outputs: Sequence[Outputs]) -> list[dict[str, float | None]]:
    """The metrics of each input on its own (the ``fidelity/fidelity.json`` artifact's rows)."""
    return [compare([r], [o]) for r, o in zip(reference, outputs)]
