"""Offline processors of the bundled checkpoints: real image-token counts, real special-token ids."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image
from transformers import AutoConfig, AutoProcessor

from vlm_quant.models.config_source import bundled_config_dir, bundled_model_ids
from vlm_quant.models.loading import load_processor
from vlm_quant.models.offline_processor import placeholder_word, save_offline_processor
from vlm_quant.models.remote_code import needs_remote_code

SMOLVLM_256M = "HuggingFaceTB/SmolVLM-256M-Instruct"
QWEN2_VL = "Qwen/Qwen2-VL-2B-Instruct"
LLAVA = "llava-hf/llava-1.5-7b-hf"

# Image placeholder tokens per image with default processing (bundled README).
IMAGE_TOKENS = [
    (SMOLVLM_256M, (640, 480), 832),
    (SMOLVLM_256M, (512, 512), 1088),
    ("HuggingFaceTB/SmolVLM-500M-Instruct", (640, 480), 832),
    ("HuggingFaceTB/SmolVLM-Instruct", (640, 480), 1053),
    (QWEN2_VL, (640, 480), 391),
    (QWEN2_VL, (448, 448), 256),
    ("Qwen/Qwen2.5-VL-3B-Instruct", (640, 480), 391),
    (LLAVA, (640, 480), 576),
]

# Real ids of the special tokens (bundled README, "Special tokens and vocabulary").
SPECIAL_IDS = {
    SMOLVLM_256M: {
        "<|endoftext|>": 0,
        "<|im_start|>": 1,
        "<|im_end|>": 2,
        "<end_of_utterance>": 49279,
        "<image>": 49190,
        "<global-img>": 49152,
        "<row_1_col_1>": 49153,
        "<row_6_col_6>": 49188,
        "<fake_token_around_image>": 49189,
        "<|reserved_special_token_0|>": 49191,
        "<|reserved_special_token_87|>": 49278,
    },
    "HuggingFaceTB/SmolVLM-Instruct": {
        "<|endoftext|>": 0,
        "<|im_start|>": 1,
        "<|im_end|>": 2,
        "<fake_token_around_image>": 49152,
        "<image>": 49153,
        "<end_of_utterance>": 49154,
    },
    QWEN2_VL: {
        "<|endoftext|>": 151643,
        "<|im_start|>": 151644,
        "<|im_end|>": 151645,
        "<|vision_start|>": 151652,
        "<|vision_end|>": 151653,
        "<|vision_pad|>": 151654,
        "<|image_pad|>": 151655,
        "<|video_pad|>": 151656,
    },
    "Qwen/Qwen2.5-VL-3B-Instruct": {"<|image_pad|>": 151655, "<tool_call>": 151657, "</tool_call>": 151658},
    LLAVA: {"<unk>": 0, "<s>": 1, "</s>": 2, "<image>": 32000, "<pad>": 32001},
}
NAMED_IDS = {  # (bos, eos, pad, unk) of the tokenizer
    SMOLVLM_256M: (1, 49279, 2, 0),
    "HuggingFaceTB/SmolVLM-Instruct": (1, 49154, 2, 0),
    QWEN2_VL: (None, 151645, 151643, None),
    LLAVA: (1, 2, 32001, 0),
}
RENDERED = {  # one user turn with an image and "What is this?", with generation prompt
    SMOLVLM_256M: "<|im_start|>User:<image>What is this?<end_of_utterance>\nAssistant:",
    QWEN2_VL: "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>What is this?<|im_end|>\n<|im_start|>assistant\n",
    LLAVA: "USER: <image>\nWhat is this? ASSISTANT:",
}

_PROCESSOR_DIRS: dict[str, Path] = {}
_PROCESSORS: dict[str, object] = {}


@pytest.fixture(scope="module")
def processor_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("offline-processors")


def offline_processor(model_id: str, root: Path):
    """The offline processor of ``model_id``, written and read back from disk once per session."""
    if model_id not in _PROCESSORS:
        out_dir = root / model_id.replace("/", "__")
        save_offline_processor(bundled_config_dir(model_id), out_dir)
        _PROCESSOR_DIRS[model_id] = out_dir
        model_type = AutoConfig.from_pretrained(bundled_config_dir(model_id)).model_type
        _PROCESSORS[model_id] = load_processor(str(out_dir), model_type=model_type)
    return _PROCESSORS[model_id]


def one_image_prompt(image: Image.Image, text: str = "What is this?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]


@pytest.mark.parametrize(("model_id", "size", "expected"), IMAGE_TOKENS)
def test_image_token_count_equals_the_real_checkpoint(model_id, size, expected, processor_root):
    processor = offline_processor(model_id, processor_root)
    inputs = processor.apply_chat_template(
        one_image_prompt(Image.new("RGB", size, (90, 140, 30))),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    assert inputs["input_ids"][0].tolist().count(processor.image_token_id) == expected


@pytest.mark.parametrize("model_id", sorted(SPECIAL_IDS))
def test_special_tokens_sit_at_their_real_ids(model_id, processor_root):
    tokenizer = offline_processor(model_id, processor_root).tokenizer
    assert {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_IDS[model_id]} == SPECIAL_IDS[
        model_id
    ]
    vocab_size = AutoConfig.from_pretrained(bundled_config_dir(model_id)).get_text_config().vocab_size
    assert len(tokenizer) == vocab_size
    if model_id in NAMED_IDS:
        named = (
            tokenizer.bos_token_id,
            tokenizer.eos_token_id,
            tokenizer.pad_token_id,
            tokenizer.unk_token_id,
        )
        assert named == NAMED_IDS[model_id]


@pytest.mark.parametrize("model_id", sorted(RENDERED))
def test_real_chat_template(model_id, processor_root):
    processor = offline_processor(model_id, processor_root)
    text = processor.apply_chat_template(
        one_image_prompt(Image.new("RGB", (64, 64))), add_generation_prompt=True, tokenize=False
    )
    assert text == RENDERED[model_id]


def test_any_text_round_trips_and_filler_ids_decode_to_words(processor_root):
    tokenizer = offline_processor(SMOLVLM_256M, processor_root).tokenizer
    text = "A café ☕ with 2 dogs, one says: «hi»!\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id not in ids
    generated = tokenizer.decode([20_000, 31_337, 49_000])
    assert re.fullmatch(r"( [a-z]{4,6}){3}", generated), generated


def test_a_blank_line_is_one_token_as_llama_cpp_expects(processor_root):
    """libmtmd's Idefics3 image template looks "\n\n" up as one token and aborts without it."""
    tokenizer = offline_processor(SMOLVLM_256M, processor_root).tokenizer
    (blank_line,) = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode([blank_line]) == "\n\n"
    assert len(tokenizer("a\n\n\nb", add_special_tokens=False)["input_ids"]) == 4  # a, \n\n, \n, b


def test_llava_tokenizer_prepends_bos_like_the_real_one(processor_root):
    processor = offline_processor(LLAVA, processor_root)
    inputs = processor.apply_chat_template(
        one_image_prompt(Image.new("RGB", (64, 64))),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    assert inputs["input_ids"][0, 0].item() == 1


@pytest.mark.parametrize("model_id", [SMOLVLM_256M, LLAVA])
def test_plain_auto_processor_reloads_the_saved_directory(model_id, processor_root):
    offline_processor(model_id, processor_root)  # make sure it is written
    processor = AutoProcessor.from_pretrained(_PROCESSOR_DIRS[model_id])
    assert type(processor).__name__ in ("Idefics3Processor", "LlavaProcessor")


def test_placeholder_words_are_unique():
    words = [placeholder_word(index) for index in range(160_000)]
    assert len(set(words)) == len(words)
    assert all(word.isalpha() and word.islower() for word in words[::997])


def test_every_bundled_checkpoint_has_processor_and_tokenizer_files():
    for model_id in bundled_model_ids():
        config_dir = bundled_config_dir(model_id)
        if needs_remote_code(json.loads((config_dir / "config.json").read_text())):
            continue  # Phi-3.5-vision, Bunny: their processor files come with their cached code
        assert (config_dir / "preprocessor_config.json").is_file()
        assert (config_dir / "tokenizer_config.json").is_file()
        assert (config_dir / "chat_template.json").is_file()
