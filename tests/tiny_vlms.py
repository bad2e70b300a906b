"""Tiny random VLMs of every supported family, saved like Hub checkpoints, for offline tests.

``build_tiny_vlm(family, out_dir)`` writes a directory that ``load_vlm(str(out_dir))`` reads through the
normal ``from_pretrained`` path: a model built from the family's config classes (hidden sizes 32-64,
1-2 layers, 32 px tiles or a few 14 px patches, so one forward pass on a 640x480 COCO image is a few
milliseconds), a word-level tokenizer made with ``tokenizers`` holding the family's special tokens, the
family's image processor configured small, and the family's real chat template from the bundled
configs. Seeded and deterministic; about a quarter of a second per family.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForImageTextToText,
    GenerationConfig,
    Idefics3Config,
    LlavaConfig,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2VLConfig,
)

from vlm_quant.models.config_source import bundled_config_dir

TINY_FAMILIES = ("idefics3", "qwen2_vl", "qwen2_5_vl", "llava")

# The real checkpoint whose chat template (and token conventions) each tiny model copies.
TEMPLATE_SOURCE = {
    "idefics3": "HuggingFaceTB/SmolVLM-256M-Instruct",
    "qwen2_vl": "Qwen/Qwen2-VL-2B-Instruct",
    "qwen2_5_vl": "Qwen/Qwen2.5-VL-3B-Instruct",
    "llava": "llava-hf/llava-1.5-7b-hf",
}

# Words of the chat templates and of typical prompts, so encoded prompts are mostly not <unk>.
WORDS = (
    ". , : ? ! ' User Assistant USER ASSISTANT system user assistant You are a helpful Describe describe "
    "the image picture photo this that What what is in on of with and to there Answer question "
    "using single word or phrase short caption A an man woman person people dog cat car street table "
    "sitting standing two red blue green white black"
).split()
TINY_VOCAB_SIZE = 256
TEXT_SIZES = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)

_IDEFICS3_TILE_TOKENS = [f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)]
SPECIAL_TOKENS = {
    "idefics3": dict(
        unk="<|endoftext|>",
        bos="<|im_start|>",
        pad="<|im_end|>",
        eos="<end_of_utterance>",
        extra=["<fake_token_around_image>", "<image>", "<global-img>", *_IDEFICS3_TILE_TOKENS],
    ),
    "qwen2_vl": dict(
        unk="<unk>",
        bos=None,
        pad="<|endoftext|>",
        eos="<|im_end|>",
        extra=[
            "<|im_start|>",
            "<|vision_start|>",
            "<|vision_end|>",
            "<|vision_pad|>",
            "<|image_pad|>",
            "<|video_pad|>",
        ],
    ),
    "llava": dict(unk="<unk>", bos="<s>", pad="<pad>", eos="</s>", extra=["<image>"]),
}
SPECIAL_TOKENS["qwen2_5_vl"] = SPECIAL_TOKENS["qwen2_vl"]


def build_tiny_vlm(family: str, out_dir: Path) -> Path:
    """Write the tiny checkpoint of ``family`` (one of ``TINY_FAMILIES``) into ``out_dir``; return it."""
    if family not in TINY_FAMILIES:
        raise ValueError(f"Unknown tiny family {family!r}; choose one of {TINY_FAMILIES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _word_level_tokenizer(family)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in tokenizer.all_special_tokens}
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(_CONFIG_BUILDERS[family](ids))
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _write_json(out_dir / "preprocessor_config.json", _IMAGE_PROCESSORS[family])
    _write_json(out_dir / "processor_config.json", _PROCESSORS[family])
    template_dir = bundled_config_dir(TEMPLATE_SOURCE[family])
    (out_dir / "chat_template.json").write_text((template_dir / "chat_template.json").read_text())
    return out_dir


def _word_level_tokenizer(family: str) -> PreTrainedTokenizerFast:
    special = SPECIAL_TOKENS[family]
    named = [special[key] for key in ("unk", "bos", "pad", "eos") if special[key] is not None]
    specials = list(dict.fromkeys(named + special["extra"]))
    words = [word for word in WORDS if word not in specials]
    fillers = [f"w{index}" for index in range(TINY_VOCAB_SIZE - len(specials) - len(words))]
    vocabulary = {token: index for index, token in enumerate(specials + words + fillers)}
    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token=special["unk"]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=special["unk"],
        bos_token=special["bos"],
        eos_token=special["eos"],
        pad_token=special["pad"],
        additional_special_tokens=special["extra"],
        add_bos_token=family == "llava",  # LLaVA's template relies on the tokenizer adding <s>
        model_max_length=4096,
    )


def _text_config(model_type: str, **extra) -> dict:
    return dict(
        model_type=model_type, vocab_size=TINY_VOCAB_SIZE, max_position_embeddings=4096, **TEXT_SIZES, **extra
    )


def _idefics3_config(ids: dict[str, int]) -> Idefics3Config:
    return Idefics3Config(
        vision_config=dict(
            hidden_size=64,  # >= 64: bitsandbytes' AVX512-BF16 CPU 4-bit kernels need in_features >= 64
            intermediate_size=128,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        text_config=_text_config(
            "llama",
            head_dim=16,
            pad_token_id=ids["<|im_end|>"],
            bos_token_id=ids["<|im_start|>"],
            eos_token_id=ids["<end_of_utterance>"],
        ),
        scale_factor=2,  # (32 / 8)^2 / 2^2 = 4 image tokens per tile
        image_token_id=ids["<image>"],
        pad_token_id=ids["<|im_end|>"],
        tie_word_embeddings=False,
    )


def _qwen_text_config(ids: dict[str, int]) -> dict:
    # mrope sections sum to head_dim / 2 = 64 / 4 / 2 = 8.
    return _text_config(
        "qwen2_vl_text",
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        bos_token_id=None,
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )


def _qwen_token_ids(ids: dict[str, int]) -> dict:
    return dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def _qwen2_vl_config(ids: dict[str, int]) -> Qwen2VLConfig:
    return Qwen2VLConfig(
        text_config=_qwen_text_config(ids),
        vision_config=dict(
            depth=1,
            embed_dim=64,  # >= 64, see _idefics3_config
            hidden_size=64,
            num_heads=2,
            mlp_ratio=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        **_qwen_token_ids(ids),
    )


def _qwen2_5_vl_config(ids: dict[str, int]) -> Qwen2_5_VLConfig:
    text_config = _qwen_text_config(ids) | {"model_type": "qwen2_5_vl_text"}
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=dict(
            depth=2,
            hidden_size=64,  # >= 64, see _idefics3_config
            intermediate_size=128,
            num_heads=2,
            out_hidden_size=64,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[1],
        ),
        **_qwen_token_ids(ids),
    )


def _llava_config(ids: dict[str, int]) -> LlavaConfig:
    return LlavaConfig(
        vision_config=dict(
            model_type="clip_vision_model",
            hidden_size=64,  # >= 64, see _idefics3_config
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=32,
        ),
        text_config=_text_config(
            "llama", pad_token_id=ids["<pad>"], bos_token_id=ids["<s>"], eos_token_id=ids["</s>"]
        ),
        image_token_index=ids["<image>"],
        pad_token_id=ids["<pad>"],
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",  # drops CLS: (32 / 8)^2 = 16 image tokens
        tie_word_embeddings=False,
    )


_CONFIG_BUILDERS = {
    "idefics3": _idefics3_config,
    "qwen2_vl": _qwen2_vl_config,
    "qwen2_5_vl": _qwen2_5_vl_config,
    "llava": _llava_config,
}

_CLIP_MEAN, _CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
_QWEN_IMAGES = dict(
    image_processor_type="Qwen2VLImageProcessor",
    min_pixels=28 * 28,
    max_pixels=112 * 112,
    patch_size=14,
    temporal_patch_size=2,
    merge_size=2,
    image_mean=_CLIP_MEAN,
    image_std=_CLIP_STD,
)
_IMAGE_PROCESSORS = {
    # 640x480 -> longest edge 64 -> 2x2 tiles of 32 px + the global tile = 5 x 4 = 20 image tokens.
    "idefics3": dict(
        image_processor_type="Idefics3ImageProcessor",
        do_image_splitting=True,
        size={"longest_edge": 64},
        max_image_size={"longest_edge": 32},
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        resample=1,
    ),
    # 640x480 -> 112x84 px -> 8x6 patches of 14 px -> 12 image tokens after the 2x2 merge.
    "qwen2_vl": _QWEN_IMAGES,
    "qwen2_5_vl": _QWEN_IMAGES,
    "llava": dict(
        image_processor_type="CLIPImageProcessor",
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        do_center_crop=True,
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
        resample=3,
    ),
}
_PROCESSORS = {
    "idefics3": dict(processor_class="Idefics3Processor", image_seq_len=4),
    "qwen2_vl": dict(processor_class="Qwen2VLProcessor"),
    "qwen2_5_vl": dict(processor_class="Qwen2_5_VLProcessor"),
    "llava": dict(
        processor_class="LlavaProcessor",
        image_token="<image>",
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    ),
}


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")
