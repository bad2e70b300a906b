"""Which model types vlm-quant supports: every image-text-to-text class of the installed transformers,
built on the meta device and read for its roles.

`survey` builds each class of transformers' ``AutoModelForImageTextToText`` mapping from its default
config (or, where the default config cannot be built, a small override listed in `CONFIG_OVERRIDES`)
on the meta device (shapes only: seconds for all of them, no memory) and asks `families.family_of` for
its role layout. A model type is supported when the layout is total (every parameter-owning module has
a role) and its parameter counts per role add up to the model's; otherwise the reason is kept.
``docs/supported_models.md`` is `render_markdown` of the survey, written by
``tools/write_supported_models.py`` and compared with a fresh survey by the test suite, so the list
can never drift from the code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from vlm_quant.models.families import ROLES, UnsupportedModel, family_of, parameter_counts_by_role

# Default configs that cannot be instantiated as they are, and the smallest change that makes them so.
CONFIG_OVERRIDES: dict[str, dict] = {
    # SigLIP's default 1152 width is not divisible by the 14 heads Aya Vision's default sets.
    "aya_vision": {"vision_config": {"model_type": "siglip_vision_model", "num_attention_heads": 16}},
    "hunyuan_vl": {"text_config": {"head_dim": 128}},  # the default leaves head_dim None
    "gemma4": {"vision_config": {"model_type": "gemma4_vision"}},  # the default has no vision tower
}


@dataclass(frozen=True)
class Coverage:
    """One model type: its class, whether it is supported, and the roles or the reason it is not.

    ``parameters``: elements per role at the configuration used (default or override), tied weights
    counted once; ``config``: "default" or "override".
    """

    model_type: str
    class_name: str
    config: str
    reason: str | None = None
    roles: dict[str, tuple[str, ...]] | None = None
    parameters: dict[str, int] | None = None
    total_parameters: int | None = None

    @property
    def supported(self) -> bool:
        return self.reason is None


def image_text_to_text_types() -> dict[str, str]:
    """model_type -> class name of transformers' image-text-to-text mapping (the installed version)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return dict(sorted(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES.items()))


def survey(model_types: list[str] | None = None) -> list[Coverage]:
    """The coverage of each model type (all of the mapping by default), in model_type order."""
    mapping = image_text_to_text_types()
    return [_cover(model_type, mapping[model_type]) for model_type in model_types or list(mapping)]


def _cover(model_type: str, class_name: str) -> Coverage:
    config_kind = "override" if model_type in CONFIG_OVERRIDES else "default"
    try:
        model = _meta_model(model_type)
    except (
        ImportError
    ) as error:  # transformers' message names the missing package ("requires the timm library")
        return Coverage(
            model_type, class_name, config_kind, reason=f"cannot be built here: {_first_line(error)}"
        )
    except Exception as error:  # noqa: BLE001 - any failure of the class's constructor is the reason
        reason = f"default config not constructible: {_first_line(error)}"
        return Coverage(model_type, class_name, config_kind, reason=reason)
    try:
        family = family_of(model)
    except UnsupportedModel as error:
        return Coverage(model_type, class_name, config_kind, reason=error.reason)
    counts = parameter_counts_by_role(model, family)
    total = sum(parameter.numel() for parameter in model.parameters())
    if sum(counts.values()) != total:
        reason = f"parameter counts per role ({sum(counts.values())}) differ from the model's ({total})"
        return Coverage(model_type, class_name, config_kind, reason=reason)
    return Coverage(model_type, class_name, config_kind, None, family.roles, counts, total)


def _meta_model(model_type: str) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.for_model(model_type, **CONFIG_OVERRIDES.get(model_type, {}))
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        return AutoModelForImageTextToText.from_config(config)


def _first_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}"


def render_markdown(rows: list[Coverage], transformers_version: str) -> str:
    """The supported-models page: a table of the supported types, then the others with their reasons."""
    supported = [row for row in rows if row.supported]
    left_out = [row for row in rows if not row.supported]
    lines = [
        "# Supported model types",
        "",
        "<!-- Generated by `python tools/write_supported_models.py` (vlm_quant/models/coverage.py). -->",
        "",
        f"transformers {transformers_version} maps {len(rows)} `model_type`s to "
        "`AutoModelForImageTextToText`. vlm-quant finds the roles (vision / projector / language / lm_head) "
        f"of **{len(supported)}** of them "
        "from their module tree, built on the meta device from the default configuration (or the override "
        "named in `CONFIG_OVERRIDES`); the other "
        f"{len(left_out)} are listed below with the reason. Parameters are those of the default "
        "configuration, not of any published checkpoint (millions; a tied `lm_head` counts 0).",
        "",
        "| model_type | class | vision | projector | language | lm_head "
        "| vision M | projector M | language M | lm_head M |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|",
    ]
    for row in supported:
        paths = [", ".join(f"`{path}`" for path in row.roles[role]) for role in ROLES]
        millions = [f"{row.parameters[role] / 1e6:,.1f}" for role in ROLES]
        config = " (override)" if row.config == "override" else ""
        cells = [f"`{row.model_type}`{config}", row.class_name, *paths, *millions]
        lines.append(f"| {' | '.join(cells)} |")
    lines += ["", "## Left out", "", "| model_type | class | reason |", "|---|---|---|"]
    for row in left_out:
        lines.append(f"| `{row.model_type}` | {row.class_name} | {row.reason.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
