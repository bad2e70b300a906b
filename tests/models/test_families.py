"""The family table against the real, full-size architectures (built on the meta device)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText, LlamaConfig

from vlm_quant.errors import UserError
from vlm_quant.models.config_source import bundled_config_dir
from vlm_quant.models.families import (
    ROLES,
    family_by_name,
    family_for_config,
    family_of,
    linear_modules_by_role,
    module_roles,
    parameter_counts_by_role,
    role_of,
)

# Parameter counts per role from the bundled README (meta-device counts, tied weights counted once;
# the Qwen merger is the projector, so it is taken out of "visual"; their lm_head is tied to the
# embeddings, which the language model owns).
EXPECTED = {
    "HuggingFaceTB/SmolVLM-256M-Instruct": ("idefics3", 86_433_024, 7_077_888, 134_588_736, 28_385_280),
    "HuggingFaceTB/SmolVLM-500M-Instruct": ("idefics3", 86_433_024, 11_796_480, 361_944_000, 47_308_800),
    "HuggingFaceTB/SmolVLM-Instruct": ("idefics3", 412_987_248, 21_233_664, 1_711_382_528, 100_669_440),
    "Qwen/Qwen2-VL-2B-Instruct": ("qwen2_vl", 665_271_296 - 34_087_936, 34_087_936, 1_543_714_304, 0),
    "Qwen/Qwen2.5-VL-3B-Instruct": ("qwen2_5_vl", 668_684_288 - 36_708_608, 36_708_608, 3_085_938_688, 0),
    "llava-hf/llava-1.5-7b-hf": ("llava", 303_507_456, 20_979_712, 6_607_605_760, 131_334_144),
}
TOTALS = {
    "HuggingFaceTB/SmolVLM-256M-Instruct": 256_484_928,
    "HuggingFaceTB/SmolVLM-500M-Instruct": 507_482_304,
    "HuggingFaceTB/SmolVLM-Instruct": 2_246_272_880,
    "Qwen/Qwen2-VL-2B-Instruct": 2_208_985_600,
    "Qwen/Qwen2.5-VL-3B-Instruct": 3_754_622_976,
    "llava-hf/llava-1.5-7b-hf": 7_063_427_072,
}

_META_MODELS: dict[str, torch.nn.Module] = {}


def meta_model(model_id: str) -> torch.nn.Module:
    """The full-size architecture of a bundled checkpoint, without memory (built once per session)."""
    if model_id not in _META_MODELS:
        config = AutoConfig.from_pretrained(bundled_config_dir(model_id))
        with torch.device("meta"):
            _META_MODELS[model_id] = AutoModelForImageTextToText.from_config(config)
    return _META_MODELS[model_id]


@pytest.mark.parametrize("model_id", sorted(EXPECTED))
def test_role_parameter_counts_match_the_published_checkpoints(model_id):
    model = meta_model(model_id)
    family = family_of(model)
    family_name, *per_role = EXPECTED[model_id]
    assert family.name == family_name
    counts = parameter_counts_by_role(model, family)
    assert counts == dict(zip(ROLES, per_role, strict=True))
    assert sum(counts.values()) == TOTALS[model_id] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("model_id", sorted(EXPECTED))
def test_role_map_covers_every_parameter_owning_module(model_id):
    model = meta_model(model_id)
    roles = module_roles(model, family_of(model))
    owners = {name for name, module in model.named_modules() if list(module.parameters(recurse=False))}
    assert set(roles) == owners
    assert set(roles.values()) == set(ROLES)
    assert roles["lm_head"] == "lm_head"


def test_qwen_merger_is_the_projector_inside_the_vision_tower():
    model = meta_model("Qwen/Qwen2-VL-2B-Instruct")
    linears = linear_modules_by_role(model, family_of(model))
    assert linears["projector"] == ["model.visual.merger.mlp.0", "model.visual.merger.mlp.2"]
    assert all(name.startswith("model.visual.") for name in linears["vision"])
    assert not any(name.startswith("model.visual.merger") for name in linears["vision"])
    # Tied: the lm_head module exists (so it has a role) but shares the embeddings' tensor.
    assert model.lm_head.weight is model.get_input_embeddings().weight


@pytest.mark.parametrize(
    ("model_id", "projector", "n_language"),
    [
        ("HuggingFaceTB/SmolVLM-256M-Instruct", ["model.connector.modality_projection.proj"], 30 * 7),
        (
            "llava-hf/llava-1.5-7b-hf",
            ["model.multi_modal_projector.linear_1", "model.multi_modal_projector.linear_2"],
            32 * 7,
        ),
        ("Qwen/Qwen2.5-VL-3B-Instruct", ["model.visual.merger.mlp.0", "model.visual.merger.mlp.2"], 36 * 7),
    ],
)
def test_linear_modules_by_role(model_id, projector, n_language):
    model = meta_model(model_id)
    linears = linear_modules_by_role(model, family_of(model))
    assert list(linears) == list(ROLES)
    assert linears["projector"] == projector
    assert len(linears["language"]) == n_language  # q, k, v, o, gate, up, down per decoder layer
    assert linears["lm_head"] == ["lm_head"]
    assert linears["vision"]


def test_a_module_outside_every_role_is_an_error_that_names_it():
    llava = meta_model("llava-hf/llava-1.5-7b-hf")
    with pytest.raises(ValueError, match="model.vision_tower"):
        module_roles(llava, family_by_name("idefics3"))


def test_longest_prefix_wins_on_path_boundaries_only():
    qwen = family_by_name("qwen2_vl")
    assert role_of("model.visual.blocks.0.attn.qkv", qwen.layout) == "vision"
    assert role_of("model.visual.merger.mlp.0", qwen.layout) == "projector"
    assert role_of("model.visual", qwen.layout) == "vision"
    assert role_of("model.visualizer", qwen.layout) is None
    assert role_of("lm_head", qwen.layout) == "lm_head"


def test_family_for_config_reads_the_layout_from_the_architecture():
    qwen25 = family_for_config(AutoConfig.for_model("qwen2_5_vl"))
    assert qwen25.name == "qwen2_5_vl"
    assert qwen25.roles["projector"] == ("model.visual.merger",)
    assert qwen25.tied_lm_head is False  # the default config unties; the 3B checkpoint ties:
    assert family_of(meta_model("Qwen/Qwen2.5-VL-3B-Instruct")).tied_lm_head is True
    smolvlm = family_for_config(AutoConfig.for_model("smolvlm"))  # SmolVLM2: not "idefics3"
    assert smolvlm.roles["vision"] == ("model.vision_model",) and smolvlm.splits_images


def test_single_image_families_come_from_the_exception_table():
    assert family_by_name("llava").supports_multiple_images is False
    assert family_by_name("llava_onevision").supports_multiple_images is True


def test_unsupported_layout_names_the_modules_no_role_covers():
    with pytest.raises(UserError, match="'qwen2_5_omni_thinker'.*model.audio_tower.*supported_models.md"):
        family_by_name("qwen2_5_omni_thinker")


def test_a_text_only_model_is_refused_with_the_reason():
    with pytest.raises(UserError, match="'llama'.*no image-text-to-text class"):
        family_for_config(LlamaConfig())


def test_unknown_model_type_points_to_the_supported_list():
    with pytest.raises(UserError, match="'gpt4v'.*supported_models.md"):
        family_by_name("gpt4v")
