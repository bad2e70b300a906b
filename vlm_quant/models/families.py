"""The family table: which module of each supported VLM architecture plays which role.

A *role* is one of ``vision`` (the image encoder), ``projector`` (the connector that maps image features
into the language model's embedding space), ``language`` (the decoder, including its token embeddings)
and ``lm_head`` (the output projection to vocabulary logits). Quantization plans are written per role
("int8 for the language model, vision in fp16") and expanded here to exact module names.

Module paths are those of the transformers 5 classes (``Idefics3ForConditionalGeneration``,
``Qwen2VLForConditionalGeneration``, ``Qwen2_5_VLForConditionalGeneration``,
``LlavaForConditionalGeneration``); the tests check them against the full-size architectures built on
the meta device from the bundled configs, role by role, down to the parameter count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vlm_quant.errors import UserError

ROLES: tuple[str, ...] = ("vision", "projector", "language", "lm_head")


@dataclass(frozen=True)
class FamilySpec:
    """One architecture family.

    ``roles`` maps each role to module-path prefixes; a module belongs to the role of the longest
    prefix that matches it on a path boundary (so ``model.visual.merger`` can be the projector inside
    the vision role ``model.visual``).
    """

    name: str
    model_types: tuple[str, ...]
    roles: dict[str, tuple[str, ...]]
    supports_multiple_images: bool


FAMILIES: tuple[FamilySpec, ...] = (
    FamilySpec(
        name="idefics3",  # SmolVLM
        model_types=("idefics3",),
        roles={
            "vision": ("model.vision_model",),
            "projector": ("model.connector",),
            "language": ("model.text_model",),
            "lm_head": ("lm_head",),
        },
        supports_multiple_images=True,
    ),
    FamilySpec(
        name="qwen2_vl",
        model_types=("qwen2_vl", "qwen2_5_vl"),
        roles={
            "vision": ("model.visual",),
            # The merger sits inside the vision tower but is the projector (MLP into the text width).
            "projector": ("model.visual.merger",),
            "language": ("model.language_model",),
            # Tied to model.language_model.embed_tokens in the 2B/3B checkpoints: quantizing one
            # quantizes the other.
            "lm_head": ("lm_head",),
        },
        supports_multiple_images=True,
    ),
    FamilySpec(
        name="llava",
        model_types=("llava",),
        roles={
            "vision": ("model.vision_tower",),
            "projector": ("model.multi_modal_projector",),
            "language": ("model.language_model",),
            "lm_head": ("lm_head",),
        },
        # LLaVA-1.5 was trained on one image per prompt; several images run but are out of distribution.
        supports_multiple_images=False,
    ),
)


def supported_model_types() -> list[str]:
    """Every ``config.model_type`` some family covers, sorted."""
    return sorted(model_type for family in FAMILIES for model_type in family.model_types)


def family_by_name(name: str) -> FamilySpec:
    """The family called ``name`` (e.g. ``"qwen2_vl"``); UserError naming the known families otherwise."""
    for family in FAMILIES:
        if family.name == name:
            return family
    known = ", ".join(family.name for family in FAMILIES)
    raise UserError(f"Unknown model family {name!r}; known families: {known}.")


def family_for_config(config) -> FamilySpec:
    """The family of a transformers config, chosen by its ``model_type``."""
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise UserError(
        f"Unsupported model type {model_type!r}: vlm-quant supports the model types "
        f"{', '.join(supported_model_types())}."
    )


def role_of(module_name: str, family: FamilySpec) -> str | None:
    """The role of one module path, or None when no prefix of the family matches it."""
    best_role, best_length = None, -1
    for role, prefixes in family.roles.items():
        for prefix in prefixes:
            on_boundary = module_name == prefix or module_name.startswith(prefix + ".")
            if on_boundary and len(prefix) > best_length:
                best_role, best_length = role, len(prefix)
    return best_role


def is_packed_linear(module: nn.Module) -> bool:
    """A linear layer stored GPTQ-style: packed integer weights in a ``qweight`` buffer, no ``weight``
    parameter (AutoRound's and gptqmodel's ``QuantLinear``, AWQ's ``WQLinear``)."""
    return isinstance(getattr(module, "qweight", None), torch.Tensor) and not isinstance(module, nn.Linear)


def is_linear_layer(module: nn.Module) -> bool:
    """``nn.Linear`` (bitsandbytes, torchao and compressed-tensors layers included) or a packed linear."""
    return isinstance(module, nn.Linear) or is_packed_linear(module)


def _owns_weights(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None or is_packed_linear(module)


def module_roles(model: nn.Module, family: FamilySpec) -> dict[str, str]:
    """Map every module that directly owns parameters to its role.

    The map is total: a parameter-owning module outside every role is a bug in the family table (or a
    model of another family), so it raises ValueError listing those modules rather than leaving
    weights silently out of every quantization plan. A tied ``lm_head`` appears under its own name
    even though it shares its weight with the token embeddings.
    """
    roles: dict[str, str] = {}
    orphans: list[str] = []
    for name, module in model.named_modules():
        if not _owns_weights(module):
            continue
        role = role_of(name, family)
        if role is None:
            orphans.append(name or "<root>")
        else:
            roles[name] = role
    if orphans:
        raise ValueError(
            f"Modules with parameters outside every role of family {family.name!r}: {', '.join(orphans)}"
        )
    return roles


def linear_modules_by_role(model: nn.Module, family: FamilySpec) -> dict[str, list[str]]:
    """Names of the linear layers of each role (every role present, in ``ROLES`` order).

    Quantized linear layers of bitsandbytes subclass ``nn.Linear`` and stay listed after loading; packed
    layers of calibrated or published checkpoints (``is_packed_linear``) are listed too.
    """
    roles = module_roles(model, family)
    by_role: dict[str, list[str]] = {role: [] for role in ROLES}
    for name, module in model.named_modules():
        if is_linear_layer(module):
            by_role[roles[name]].append(name)
    return by_role


def parameter_counts_by_role(model: nn.Module, family: FamilySpec) -> dict[str, int]:
    """Number of parameters (elements) per role, each shared tensor counted once.

    A tied weight is counted under the first module that owns it in ``named_parameters`` order (the
    token embeddings of the language model for a tied ``lm_head``), so the counts add up to
    ``sum(p.numel() for p in model.parameters())``.
    """
    roles = module_roles(model, family)
    counts = {role: 0 for role in ROLES}
    for name, parameter in model.named_parameters():  # deduplicates shared tensors
        module_name = name.rpartition(".")[0]
        counts[roles[module_name]] += parameter.numel()
    return counts


def family_of(model: nn.Module) -> FamilySpec:
    """The family of a loaded model (from ``model.config``)."""
    return family_for_config(model.config)
