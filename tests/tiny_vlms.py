"""Tiny random VLMs of every supported family, saved like Hub checkpoints, for offline tests.

``build_tiny_vlm(family, out_dir)`` writes a directory that ``load_vlm(str(out_dir))`` reads through the
normal ``from_pretrained`` path: a model built from the family's config classes (hidden sizes 32-64,
1-2 layers, 32 px tiles or a few 14 px patches, so one forward pass on a 640x480 COCO image is a few
milliseconds), a word-level tokenizer made with ``tokenizers`` holding the family's special tokens, the
family's image processor configured small, and the family's real chat template (from the bundled
configs, or tests/fixtures/chat_templates/ with its sources in the README there; PaliGemma has none).
Seeded and deterministic; about a tenth to a quarter of a second per family.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForImageTextToText,
    Gemma3Config,
    GenerationConfig,
    Idefics2Config,
    Idefics3Config,
    InternVLConfig,
    LlavaConfig,
    LlavaOnevisionConfig,
    PaliGemmaConfig,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2VLConfig,
    Qwen3VLConfig,
    SmolVLMConfig,
)

from vlm_quant.models.config_source import bundled_config_dir

TINY_FAMILIES = (
    "idefics3",
    "qwen2_vl",
    "qwen2_5_vl",
    "llava",
    "smolvlm",
    "gemma3",
    "qwen3_vl",
    "internvl",
    "llava_onevision",
    "idefics2",
    "paligemma",
)

# The real checkpoint whose chat template (and token conventions) each tiny model copies. The first four
# read it from the bundled real configs; the others from tests/fixtures/chat_templates/<model_type>.jinja
# (sources in the README there). PaliGemma has none: its processor takes a plain prompt.
TEMPLATE_SOURCE = {
    "idefics3": "HuggingFaceTB/SmolVLM-256M-Instruct",
    "qwen2_vl": "Qwen/Qwen2-VL-2B-Instruct",
    "qwen2_5_vl": "Qwen/Qwen2.5-VL-3B-Instruct",
    "llava": "llava-hf/llava-1.5-7b-hf",
    "smolvlm": "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
    "gemma3": "google/gemma-3-4b-it",
    "qwen3_vl": "Qwen/Qwen3-VL-2B-Instruct",
    "internvl": "OpenGVLab/InternVL3-1B-hf",
    "llava_onevision": "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
    "idefics2": "HuggingFaceM4/idefics2-8b",
    "paligemma": "google/paligemma-3b-mix-224",
}
TEMPLATE_FIXTURES = Path(__file__).parent / "fixtures" / "chat_templates"

# Words of the chat templates and of typical prompts, so encoded prompts are mostly not <unk>.
WORDS = (
    ". , : ? ! ' User Assistant USER ASSISTANT system user assistant You are a helpful Describe describe "
    "the image picture photo this that What what is in on of with and to there Answer question "
    "using single word or phrase short caption A an man woman person people dog cat car street table "
    "sitting standing two red blue green white black"
).split() + [
    # "\n" and "\n\n" in GPT-2's byte-level spelling: llama.cpp's multimodal library looks them up by their
    # decoded text (Idefics3's image template) when the tokenizer is converted to GGUF (declared gpt-2).
    "Ċ",
    "ĊĊ",
]
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
    "gemma3": dict(
        unk="<unk>",
        bos="<bos>",
        pad="<pad>",
        eos="<eos>",
        extra=["<start_of_turn>", "<end_of_turn>"],
        named=dict(
            image_token="<image_soft_token>", boi_token="<start_of_image>", eoi_token="<end_of_image>"
        ),
    ),
    "internvl": dict(
        unk=None,
        bos=None,
        pad="<|endoftext|>",
        eos="<|im_end|>",
        extra=["<|im_start|>"],
        named=dict(
            start_image_token="<img>",
            end_image_token="</img>",
            context_image_token="<IMG_CONTEXT>",
            video_token="<video>",
        ),
    ),
    "llava_onevision": dict(
        unk=None,
        bos=None,
        pad="<|endoftext|>",
        eos="<|im_end|>",
        extra=["<|im_start|>", "<image>", "<video>"],
    ),
    "idefics2": dict(
        unk="<unk>",
        bos="<s>",
        pad="<unk>",
        eos="</s>",
        extra=["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
    ),
    "paligemma": dict(unk="<unk>", bos="<bos>", pad="<pad>", eos="<eos>", extra=["<image>"]),
}
SPECIAL_TOKENS["qwen2_5_vl"] = SPECIAL_TOKENS["qwen2_vl"]
SPECIAL_TOKENS["qwen3_vl"] = SPECIAL_TOKENS["qwen2_vl"]
SPECIAL_TOKENS["smolvlm"] = SPECIAL_TOKENS["idefics3"]
# Tokenizers that add BOS themselves, as the real ones do: LLaVA's and Idefics2's templates rely on it;
# Gemma 3's template writes {{ bos_token }} itself (the prompt must not get a second one).
ADDS_BOS = ("llava", "idefics2", "gemma3")
# The token each real generation config stops at besides EOS (the end of a chat turn).
END_OF_TURN = {"gemma3": "<end_of_turn>", "idefics2": "<end_of_utterance>"}


def build_tiny_vlm(family: str, out_dir: Path) -> Path:
    """Write the tiny checkpoint of ``family`` (one of ``TINY_FAMILIES``) into ``out_dir``; return it."""
    if family not in TINY_FAMILIES:
        raise ValueError(f"Unknown tiny family {family!r}; choose one of {TINY_FAMILIES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _word_level_tokenizer(family)
    ids = tokenizer.get_vocab()
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(_CONFIG_BUILDERS[family](ids))
    eos = [tokenizer.eos_token_id]
    if family in END_OF_TURN:
        eos.append(tokenizer.convert_tokens_to_ids(END_OF_TURN[family]))
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos if len(eos) > 1 else eos[0],
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _write_json(out_dir / "preprocessor_config.json", _IMAGE_PROCESSORS[family])
    _write_json(out_dir / "processor_config.json", _PROCESSORS[family])
    template = TEMPLATE_FIXTURES / f"{family}.jinja"
    if template.is_file():
        (out_dir / "chat_template.jinja").write_text(template.read_text())
    elif family != "paligemma":  # PaliGemma ships no chat template
        template_dir = bundled_config_dir(TEMPLATE_SOURCE[family])
        (out_dir / "chat_template.json").write_text((template_dir / "chat_template.json").read_text())
    return out_dir


def _word_level_tokenizer(family: str) -> PreTrainedTokenizerFast:
    special = SPECIAL_TOKENS[family]
    roles = [special[key] for key in ("unk", "bos", "pad", "eos") if special[key] is not None]
    named = special.get("named", {})
    specials = list(dict.fromkeys(roles + special["extra"] + list(named.values())))
    words = [word for word in WORDS if word not in specials]
    fillers = [f"w{index}" for index in range(TINY_VOCAB_SIZE - len(specials) - len(words))]
    vocabulary = {token: index for index, token in enumerate(specials + words + fillers)}
    # Qwen-style tokenizers have no <unk>: unknown words map to a filler word instead.
    unk = special["unk"] or fillers[-1]
    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    # Named special tokens (tokenizer.image_token etc., which some processors read) replace the unnamed
    # list when given together, so the unnamed ones are then added as special tokens afterwards.
    extras = {"extra_special_tokens": named} if named else {"additional_special_tokens": special["extra"]}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=special["unk"],
        bos_token=special["bos"],
        eos_token=special["eos"],
        pad_token=special["pad"],
        add_bos_token=family in ADDS_BOS,
        model_max_length=4096,
        **extras,
    )
    if named:
        tokenizer.add_tokens(special["extra"], special_tokens=True)
    return tokenizer


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


def _smolvlm_config(ids: dict[str, int]) -> SmolVLMConfig:
    idefics3 = _idefics3_config(ids).to_dict()
    return SmolVLMConfig(
        vision_config=idefics3["vision_config"] | {"model_type": "smolvlm_vision"},
        text_config=idefics3["text_config"],
        scale_factor=2,  # 4 image tokens per 32 px tile, as Idefics3
        image_token_id=ids["<image>"],
        pad_token_id=ids["<|im_end|>"],
        tie_word_embeddings=False,
    )


_SIGLIP_32PX = dict(
    model_type="siglip_vision_model",
    hidden_size=64,  # >= 64, see _idefics3_config
    intermediate_size=128,
    num_hidden_layers=1,
    num_attention_heads=2,
    image_size=32,
    patch_size=8,  # (32 / 8)^2 = 16 patches
)


def _gemma_text(ids: dict[str, int], model_type: str, **extra) -> dict:
    return _text_config(
        model_type,
        head_dim=16,
        pad_token_id=ids["<pad>"],
        bos_token_id=ids["<bos>"],
        eos_token_id=ids["<eos>"],
        **extra,
    )


def _gemma3_config(ids: dict[str, int]) -> Gemma3Config:
    return Gemma3Config(
        vision_config=_SIGLIP_32PX,
        text_config=_gemma_text(
            ids,
            "gemma3_text",
            query_pre_attn_scalar=16,
            sliding_window=16,
            layer_types=["sliding_attention", "full_attention"],
        ),
        mm_tokens_per_image=4,  # the 4x4 patches average-pooled to 2x2
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
        tie_word_embeddings=True,
    )


def _qwen3_vl_config(ids: dict[str, int]) -> Qwen3VLConfig:
    text_config = _qwen_text_config(ids) | {
        "model_type": "qwen3_vl_text",
        "head_dim": 16,
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True},
    }
    return Qwen3VLConfig(
        text_config=text_config,
        vision_config=dict(
            depth=2,
            hidden_size=64,  # >= 64, see _idefics3_config
            intermediate_size=128,
            num_heads=2,
            out_hidden_size=64,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=16,  # a 4x4 grid, interpolated to the image's
            deepstack_visual_indexes=[0],
        ),
        **_qwen_token_ids(ids),
    )


def _internvl_config(ids: dict[str, int]) -> InternVLConfig:
    return InternVLConfig(
        vision_config=dict(
            hidden_size=64,  # >= 64, see _idefics3_config
            intermediate_size=128,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        text_config=_text_config(
            "qwen2", pad_token_id=ids["<|endoftext|>"], bos_token_id=None, eos_token_id=ids["<|im_end|>"]
        ),
        downsample_ratio=0.5,  # pixel shuffle: 4x4 patches -> 4 image tokens
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=4,
        tie_word_embeddings=True,
    )


_ONEVISION_PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64]]


def _llava_onevision_config(ids: dict[str, int]) -> LlavaOnevisionConfig:
    return LlavaOnevisionConfig(
        vision_config=_SIGLIP_32PX | {"vision_use_head": False},
        text_config=_text_config(
            "qwen2", pad_token_id=ids["<|endoftext|>"], bos_token_id=None, eos_token_id=ids["<|im_end|>"]
        ),
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=_ONEVISION_PINPOINTS,
        tie_word_embeddings=False,
    )


def _idefics2_config(ids: dict[str, int]) -> Idefics2Config:
    return Idefics2Config(
        vision_config=dict(
            hidden_size=64,  # >= 64, see _idefics3_config
            intermediate_size=128,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=64,  # position buckets cover the 64 px longest edge
            patch_size=8,
        ),
        perceiver_config=dict(
            hidden_size=64,
            resampler_n_latents=4,  # 4 image tokens per image (or per crop)
            resampler_depth=1,
            resampler_n_heads=2,
            resampler_head_dim=16,
            num_key_value_heads=1,
        ),
        text_config=_text_config(
            "mistral", pad_token_id=ids["<unk>"], bos_token_id=ids["<s>"], eos_token_id=ids["</s>"]
        ),
        image_token_id=ids["<image>"],
        tie_word_embeddings=False,
    )


def _paligemma_config(ids: dict[str, int]) -> PaliGemmaConfig:
    return PaliGemmaConfig(
        vision_config=_SIGLIP_32PX | {"projection_dim": 64},
        text_config=_gemma_text(ids, "gemma"),
        image_token_index=ids["<image>"],
        projection_dim=64,
        hidden_size=64,
        vocab_size=TINY_VOCAB_SIZE,
        tie_word_embeddings=True,
    )


_CONFIG_BUILDERS = {
    "idefics3": _idefics3_config,
    "qwen2_vl": _qwen2_vl_config,
    "qwen2_5_vl": _qwen2_5_vl_config,
    "llava": _llava_config,
    "smolvlm": _smolvlm_config,
    "gemma3": _gemma3_config,
    "qwen3_vl": _qwen3_vl_config,
    "internvl": _internvl_config,
    "llava_onevision": _llava_onevision_config,
    "idefics2": _idefics2_config,
    "paligemma": _paligemma_config,
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
_IMAGE_PROCESSORS["smolvlm"] = _IMAGE_PROCESSORS["idefics3"] | {
    "image_processor_type": "SmolVLMImageProcessor"
}
_IMAGE_PROCESSORS.update(
    {
        # 32x32 px, no pan-and-scan: 4 image tokens between <start_of_image> and <end_of_image>.
        "gemma3": dict(
            image_processor_type="Gemma3ImageProcessor",
            size={"height": 32, "width": 32},
            do_pan_and_scan=False,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
            resample=2,
        ),
        # 640x480 -> 64x48 px -> 4x3 patches of 16 px -> 3 image tokens after the 2x2 merge.
        "qwen3_vl": dict(
            image_processor_type="Qwen2VLImageProcessor",
            size={"shortest_edge": 32 * 32, "longest_edge": 64 * 64},
            patch_size=16,
            temporal_patch_size=2,
            merge_size=2,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        ),
        # One 32x32 tile (no cropping into patches): 4 image tokens between <img> and </img>.
        "internvl": dict(
            image_processor_type="GotOcr2ImageProcessor",
            size={"height": 32, "width": 32},
            crop_to_patches=False,
            min_patches=1,
            max_patches=2,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        ),
        # AnyRes over 32 px tiles: the base view (16 tokens) plus the best pinpoint's tiles.
        "llava_onevision": dict(
            image_processor_type="LlavaOnevisionImageProcessor",
            size={"height": 32, "width": 32},
            image_grid_pinpoints=_ONEVISION_PINPOINTS,
            do_pad=True,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
            resample=3,
        ),
        # Longest edge 64 px; with splitting 4 crops + the whole image, 4 image tokens each.
        "idefics2": dict(
            image_processor_type="Idefics2ImageProcessor",
            do_image_splitting=True,
            size={"longest_edge": 64, "shortest_edge": 32},
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
            resample=2,
        ),
        # 32x32 px: 16 image tokens before <bos>.
        "paligemma": dict(
            image_processor_type="SiglipImageProcessor",
            size={"height": 32, "width": 32},
            image_seq_length=16,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
            resample=3,
        ),
    }
)
_IMAGE_PROCESSORS["smolvlm"] = _IMAGE_PROCESSORS["idefics3"] | {
    "image_processor_type": "SmolVLMImageProcessor"
}
_IMAGE_PROCESSORS.update(
    {
        # 32x32 px, no pan-and-scan: 4 image tokens between <start_of_image> and <end_of_image>.
        "gemma3": dict(
            image_processor_type="Gemma3ImageProcessor",
            size={"height": 32, "width": 32},
            do_pan_and_scan=False,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
            resample=2,
        ),
        # 640x480 -> 64x48 px -> 4x3 patches of 16 px -> 3 image tokens after the 2x2 merge.
        "qwen3_vl": dict(
            image_processor_type="Qwen2VLImageProcessor",
            size={"shortest_edge": 32 * 32, "longest_edge": 64 * 64},
            patch_size=16,
            temporal_patch_size=2,
            merge_size=2,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        ),
        # One 32x32 tile (no cropping into patches): 4 image tokens between <img> and </img>.
        "internvl": dict(
            image_processor_type="GotOcr2ImageProcessor",
            size={"height": 32, "width": 32},
            crop_to_patches=False,
            min_patches=1,
            max_patches=2,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        ),
        # AnyRes over 32 px tiles: the base view (16 tokens) plus the best pinpoint's tiles.
        "llava_onevision": dict(
            image_processor_type="LlavaOnevisionImageProcessor",
            size={"height": 32, "width": 32},
            image_grid_pinpoints=_ONEVISION_PINPOINTS,
            do_pad=True,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
            resample=3,
        ),
        # Longest edge 64 px; with splitting 4 crops + the whole image, 4 image tokens each.
        "idefics2": dict(
            image_processor_type="Idefics2ImageProcessor",
            do_image_splitting=True,
            size={"longest_edge": 64, "shortest_edge": 32},
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
            resample=2,
        ),
        # 32x32 px: 16 image tokens before <bos>.
        "paligemma": dict(
            image_processor_type="SiglipImageProcessor",
            size={"height": 32, "width": 32},
            image_seq_length=16,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
            resample=3,
        ),
    }
)
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
    "smolvlm": dict(processor_class="SmolVLMProcessor", image_seq_len=4),
    "gemma3": dict(processor_class="Gemma3Processor", image_seq_length=4),
    "qwen3_vl": dict(processor_class="Qwen3VLProcessor"),
    "internvl": dict(processor_class="InternVLProcessor", image_seq_length=4),
    "llava_onevision": dict(
        processor_class="LlavaOnevisionProcessor",
        num_image_tokens=16,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
    ),
    "idefics2": dict(processor_class="Idefics2Processor", image_seq_len=4),
    "paligemma": dict(processor_class="PaliGemmaProcessor"),
}


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")
