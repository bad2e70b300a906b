"""A model's family: its role layout, found from its structure, plus the few facts structure cannot tell.

A *role* is one of ``vision`` (the image encoder), ``projector`` (the connector that maps image features
into the language model's embedding space), ``language`` (the decoder, including its token embeddings)
and ``lm_head`` (the output projection to vocabulary logits). Quantization plans are written per role
("int8 for the language model, vision in fp16") and expanded here to exact module names.

Where each role lives is read from the model's module tree (`models.roles`), on the meta device when only
the config is known: transformers' image-text-to-text classes share one layout under a small vocabulary
of names. The exception table below keeps only what the tree does not say: a projector nested in the
vision tower under a name outside the vocabulary, and whether the model was trained on several images
per prompt. Which ``model_type``s are supported is the output of a test over transformers' own mapping
(``docs/supported_models.md``), not a list typed here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import nn

from vlm_quant.errors import UserError
from vlm_quant.models.roles import ROLES, RoleLayout, UnsupportedLayout, find_roles, role_of

__all__ = [
    "ROLES",
    "FamilySpec",
    "UnsupportedModel",
    "family_by_name",
    "family_for_config",
    "family_of",
    "linear_modules_by_role",
    "module_roles",
    "parameter_counts_by_role",
    "role_of",
]

SUPPORTED_LIST = "docs/supported_models.md"


class UnsupportedModel(UserError):
    """A model type whose layout vlm-quant cannot read; ``reason`` says what is missing or left over."""

    def __init__(self, model_type: str | None, reason: str) -> None:
        super().__init__(
            f"Unsupported model type {model_type!r}: {reason}. vlm-quant needs a vision tower, a projector, "
            f"a language model and an lm_head, each a module of its own; {SUPPORTED_LIST} lists the "
            "supported model types and why each other one is left out."
        )
        self.model_type, self.reason = model_type, reason


@dataclass(frozen=True)
class FamilyException:
    """What a model type's structure cannot tell: extra nested projector names, single-image training.

    ``decoder_in_container``: the decoder's layers sit directly in ``model`` beside the vision modules
    (`models.roles.find_roles`). ``chat_template``: the Jinja prompt format used when the checkpoint's
    processor has no chat template of its own (remote-code checkpoints written before processors had one).
    """

    nested_projectors: tuple[str, ...] = ()
    single_image: bool = False
    splits_images: bool = False  # the image processor tiles large images (``do_image_splitting``)
    decoder_in_container: bool = False
    chat_template: str | None = None


# Trained on one image per prompt: several images run but are out of distribution, so few-shot prompts
# (several images) are refused for them.
_SINGLE_IMAGE = dict.fromkeys(
    ("llava", "llava_next", "vipllava", "paligemma", "blip-2", "instructblip", "kosmos-2", "mllama"),
    FamilyException(single_image=True),
)
# Idefics-style processors cut a large image into tiles plus a global view (SmolVLM: 13 tiles for 640x480).
_TILING = dict.fromkeys(("idefics2", "idefics3", "smolvlm"), FamilyException(splits_images=True))

# Phi-3.5-vision's chat format, from the model card of microsoft/Phi-3.5-vision-instruct ("Chat Format"):
# single image "<|user|>\n<|image_1|>\n{prompt}<|end|>\n<|assistant|>\n", several images numbered
# "<|image_1|>\n<|image_2|>\n..." before the prompt. The checkpoint's tokenizer template takes plain-string
# contents only, and its processor has none, so the format is rendered here from structured messages.
PHI3_V_CHAT_TEMPLATE = (
    "{% set image = namespace(count=0) %}"
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "{% set image.count = image.count + 1 %}{{ '<|image_' ~ image.count ~ '|>\n' }}"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}{{ '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
# Bunny's prompt, from the quickstart of the BAAI Bunny model cards (e.g. BAAI/Bunny-Llama-3-8B-V,
# BAAI/Bunny-v1_0-3B): "A chat between a curious user and an artificial intelligence assistant. The
# assistant gives helpful, detailed, and polite answers to the user's questions. USER: <image>\n{prompt}
# ASSISTANT:". The checkpoints ship no processor or chat template at all.
BUNNY_CHAT_TEMPLATE = (
    "{{ 'A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user\\'s questions.' }}"
    "{% for message in messages %}{{ ' USER: ' if message['role'] == 'user' else ' ASSISTANT: ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>\n' }}"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ ' ASSISTANT:' }}{% endif %}"
)
# Remote-code checkpoints (trust_remote_code): a LLaVA-style ``...ForCausalLM`` whose ``model`` holds the
# decoder's layers and the vision modules side by side. Phi-3.5-vision nests its projection
# (``img_projection``) in ``model.vision_embed_tokens`` and was trained on several images per prompt
# (multi-frame, model card); Bunny's ``model.vision_tower`` + ``model.mm_projector`` models (one type per
# language backbone, from the ``model_type`` of each ``Bunny*Config`` in BAAI-DCAI/Bunny) take one image.
_REMOTE_CODE = {
    "phi3_v": FamilyException(
        nested_projectors=("img_projection",), decoder_in_container=True, chat_template=PHI3_V_CHAT_TEMPLATE
    ),
    **dict.fromkeys(
        ("bunny-phi", "bunny-phi3", "bunny-qwen2", "bunny-llama", "bunny-stablelm", "bunny-minicpm"),
        FamilyException(single_image=True, decoder_in_container=True, chat_template=BUNNY_CHAT_TEMPLATE),
    ),
}
EXCEPTIONS: dict[str, FamilyException] = {**_SINGLE_IMAGE, **_TILING, **_REMOTE_CODE}


@dataclass(frozen=True)
class FamilySpec:
    """One model type's layout: ``layout`` maps each role to module paths (`models.roles.RoleLayout`).

    ``name`` is the config's ``model_type``; ``tied_lm_head`` says whether ``lm_head`` shares its weight
    with the token embeddings (quantizing one quantizes the other).
    """

    name: str
    layout: RoleLayout
    supports_multiple_images: bool = True
    splits_images: bool = False
    tied_lm_head: bool = False
    model_types: tuple[str, ...] = field(default=())
    chat_template: str | None = None  # the prompt format when the processor has none (`FamilyException`)

    @property
    def roles(self) -> dict[str, tuple[str, ...]]:
        """Module-path prefixes per role; the first of a role is its main module (the vision tower)."""
        return self.layout.prefixes


def family_of(model: nn.Module) -> FamilySpec:
    """The family of a model instance (loaded or on the meta device), from its module tree.

    UserError naming the modules no role covers, or the missing role, when the layout is not the usual one.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__
    exception = EXCEPTIONS.get(model_type, FamilyException())
    try:
        layout = find_roles(
            model, exception.nested_projectors, decoder_in_container=exception.decoder_in_container
        )
    except UnsupportedLayout as error:
        raise UnsupportedModel(model_type, str(error)) from None
    return FamilySpec(
        name=model_type,
        layout=layout,
        supports_multiple_images=not exception.single_image,
        splits_images=exception.splits_images,
        tied_lm_head=_tied_head(model, layout),
        model_types=(model_type,),
        chat_template=exception.chat_template,
    )


_BY_CONFIG: dict[str, FamilySpec] = {}


def family_for_config(config, *, trust_remote_code: bool = False) -> FamilySpec:
    """The family of a transformers config: its architecture built on the meta device (no weights, ~0.1 s
    for a 7B config on a 2-core CPU), then `family_of`. Remembered per config within a process."""
    key = hashlib.sha256(config.to_json_string(use_diff=False).encode()).hexdigest()
    if key not in _BY_CONFIG:
        from vlm_quant.models.meta_model import build_meta_model

        model_type = getattr(config, "model_type", None)
        try:
            model = build_meta_model(config, trust_remote_code=trust_remote_code)
        except ValueError as error:  # not an image-text-to-text configuration at all
            reason = f"transformers has no image-text-to-text class for it ({error})"
            raise UnsupportedModel(model_type, reason) from None
        _BY_CONFIG[key] = family_of(model)
    return _BY_CONFIG[key]


def family_by_name(model_type: str) -> FamilySpec:
    """The family of ``model_type`` at its default configuration (e.g. ``"qwen2_vl"``)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.for_model(model_type)
    except ValueError:
        raise UserError(
            f"Unknown model type {model_type!r}; see {SUPPORTED_LIST} for the supported ones."
        ) from None
    return family_for_config(config)


def _tied_head(model: nn.Module, layout: RoleLayout) -> bool:
    head = model.get_submodule(layout.prefixes["lm_head"][0])
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(head, "weight", None)
    return weight is not None and embeddings is not None and weight is getattr(embeddings, "weight", None)


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

    The map is total: a parameter-owning module outside every role (a model whose layout differs from
    the one its family was read from) raises ValueError listing those modules rather than leaving
    weights silently out of every quantization plan. A tied ``lm_head`` appears under its own name
    even though it shares its weight with the token embeddings.
    """
    roles: dict[str, str] = {}
    orphans: list[str] = []
    for name, module in model.named_modules():
        if not _owns_weights(module):
            continue
        role = role_of(name, family.layout)
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
