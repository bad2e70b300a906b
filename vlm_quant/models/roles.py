"""Roles found from a model's structure: which child module is the vision tower, the projector, the
language model and the output head.

transformers' image-text-to-text classes mostly share one layout: ``model`` holds a vision tower, a
projector and a decoder, and ``lm_head`` sits beside it (71 of the 97 model types of transformers 5.23,
built on the meta device from their default configs). The children's names vary only within a small
vocabulary (``vision_tower`` / ``vision_model`` / ``visual`` ...), so the roles are read from the names of
the container's children rather than typed per model. What names cannot tell (a projector nested inside
the vision tower under a name that is not in the vocabulary) comes from `models.families`' exception table.

The result is total or refused: every module that owns parameters gets a role, or `UnsupportedLayout`
names the modules no role covers (an audio tower, a Q-Former, a VQ image generator ...), so no weight is
ever silently left out of a quantization plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

ROLES: tuple[str, ...] = ("vision", "projector", "language", "lm_head")

# Child names of the container (``model``, or the root for classes without one), per role.
VISION_NAMES = (
    "vision_tower",
    "vision_model",
    "visual",
    "vision_encoder",
    "image_tower",
    "vision_embed_tokens",
)
PROJECTOR_NAMES = (
    "multi_modal_projector",
    "connector",
    "merger",
    "projector",
    "aligner",
    "mm_projector",
    "vision_projection",
    "language_projection",
    "image_to_text_projection",
    "vision_adapter",
    "resampler_model",
    "visual_embeddings_table",
    "qformer",
    "embed_vision",
)
LANGUAGE_NAMES = ("language_model", "text_model")
# Children of the vision tower that map its features to the text width: the projector, nested.
NESTED_PROJECTOR_NAMES = ("merger", "deepstack_merger_list", "patch_merger", "projector", "connector")
# Parameters held by the container itself: learned embeddings spliced between image features (LLaVA-NeXT's
# row separator, BLIP-2's query tokens), which belong to the projector's side of the model.
OWN_PROJECTOR_PARAMETERS = ("image_newline", "view_separator", "view_seperator", "query_tokens")
CONTAINER_NAMES = ("model",)
HEAD_NAME = "lm_head"


class UnsupportedLayout(ValueError):
    """The model's module tree does not have the usual vision / projector / language / head layout."""


@dataclass(frozen=True)
class RoleLayout:
    """Where each role lives in one model.

    ``prefixes``: module-path prefixes per role (every role of `ROLES`, each non-empty); a module
    belongs to the role of the longest prefix matching it on a path boundary. ``own``: modules whose
    *direct* parameters belong to a role though their children do not (the container's
    ``image_newline``), matched exactly.
    """

    prefixes: dict[str, tuple[str, ...]]
    own: dict[str, str] = field(default_factory=dict)


def find_roles(
    model: nn.Module, nested_projectors: tuple[str, ...] = (), *, decoder_in_container: bool = False
) -> RoleLayout:
    """The role layout of ``model``, read from its children's names.

    ``nested_projectors``: extra child names of the vision tower that are the projector (from the
    family's exceptions), beside `NESTED_PROJECTOR_NAMES`. ``decoder_in_container``: the decoder's own
    modules (``embed_tokens``, ``layers``, ``norm``) sit directly in the container beside the vision
    modules, as in the remote-code Phi-3.5-vision and Bunny (a LLaVA-style ``...ForCausalLM`` with the
    vision tower added to its ``model``); the container is then the language role's prefix and the vision
    modules inside it win by their longer prefixes. Raises `UnsupportedLayout` when a role is missing or
    a parameter-owning module falls outside every role.
    """
    prefix = next((name for name in CONTAINER_NAMES if _child(model, name) is not None), "")
    container = model.get_submodule(prefix) if prefix else model
    roles: dict[str, list[str]] = {role: [] for role in ROLES}
    outside: list[str] = []
    decoder_parts: list[str] = []
    for name, child in container.named_children():
        path = f"{prefix}.{name}" if prefix else name
        role = _role_of_name(name)
        if role is not None:
            roles[role].append(path)
        elif _owns_weights(child):
            (decoder_parts if decoder_in_container and prefix else outside).append(path)
    if decoder_parts and not roles["language"]:
        roles["language"].append(prefix)
    else:
        outside += decoder_parts
    for vision in roles["vision"]:
        for name, _ in model.get_submodule(vision).named_children():
            if name in NESTED_PROJECTOR_NAMES + tuple(nested_projectors):
                roles["projector"].append(f"{vision}.{name}")
    head = _head_path(model, roles["language"])
    if head is not None and head not in roles["lm_head"]:
        roles["lm_head"].append(head)
    if prefix:  # the root's other children (beside the container and the head)
        outside += [n for n, c in model.named_children() if n not in (prefix, HEAD_NAME) and _owns_weights(c)]
    own = _own_parameters(model, "" if prefix in roles["language"] else prefix, outside)
    _check_complete(roles, outside, prefix)
    return RoleLayout({role: tuple(paths) for role, paths in roles.items()}, own)


def role_of(module_name: str, layout: RoleLayout) -> str | None:
    """The role of one module path (exact ``own`` entries first, then the longest prefix on a path
    boundary, so ``model.visual.merger`` is the projector inside the vision role ``model.visual``);
    None when nothing matches."""
    if module_name in layout.own:
        return layout.own[module_name]
    best_role, best_length = None, -1
    for role, prefixes in layout.prefixes.items():
        for prefix in prefixes:
            on_boundary = module_name == prefix or module_name.startswith(prefix + ".")
            if on_boundary and len(prefix) > best_length:
                best_role, best_length = role, len(prefix)
    return best_role


def _role_of_name(name: str) -> str | None:
    by_role = {"vision": VISION_NAMES, "projector": PROJECTOR_NAMES, "language": LANGUAGE_NAMES}
    for role, names in by_role.items():
        if name in names:
            return role
    return "lm_head" if name == HEAD_NAME else None


def _child(module: nn.Module, name: str) -> nn.Module | None:
    return dict(module.named_children()).get(name)


def _head_path(model: nn.Module, language: list[str]) -> str | None:
    """``lm_head`` at the root, or inside the language model (a ``...ForCausalLM`` child)."""
    if _child(model, HEAD_NAME) is not None:
        return HEAD_NAME
    for path in language:
        if _child(model.get_submodule(path), HEAD_NAME) is not None:
            return f"{path}.{HEAD_NAME}"
    return None


def _owns_weights(module: nn.Module) -> bool:
    """Holds weights: parameters, or the packed ``qweight`` buffers of a GPTQ-style quantized layer."""
    return next(module.parameters(), None) is not None or any(
        name.endswith("qweight") for name, _ in module.named_buffers()
    )


def _own_parameters(model: nn.Module, prefix: str, outside: list[str]) -> dict[str, str]:
    """The projector's learned separators held by the root or the container; others go to ``outside``."""
    own: dict[str, str] = {}
    for path in dict.fromkeys(["", prefix]):
        names = [name for name, _ in model.get_submodule(path).named_parameters(recurse=False)]
        unknown = [name for name in names if name not in OWN_PROJECTOR_PARAMETERS]
        if unknown:
            outside.append(f"{path or '<root>'} ({', '.join(unknown)})")
        elif names:
            own[path] = "projector"
    return own


def _check_complete(roles: dict[str, list[str]], outside: list[str], prefix: str) -> None:
    if outside:
        raise UnsupportedLayout(f"parameters outside every role: {', '.join(outside)}")
    missing = [role for role in ROLES if not roles[role]]
    if missing:
        where = f"the children of {prefix!r}" if prefix else "the model's children"
        raise UnsupportedLayout(f"no {' / '.join(missing)} module among {where}")
    several = {role: roles[role] for role in ("vision", "language") if len(roles[role]) > 1}
    if several:
        raise UnsupportedLayout(f"several modules for one role: {several}")
