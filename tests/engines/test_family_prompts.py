"""What each family's processor receives: the chat template rendered once with one BOS, PaliGemma's
plain prompt, token-type ids where the model reads them, and image tokens that match the tiles."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vlm_quant.engines.generate import (
    PLAIN_PROMPT,
    GenerationSettings,
    model_inputs,
    processor_inputs,
    prompt_format,
    single_image_request,
)
from vlm_quant.models.loading import load_processor, load_vlm


@pytest.fixture(scope="module")
def images(coco_dir) -> list[Image.Image]:
    files = sorted((coco_dir / "val2017").glob("*.jpg"))[:2]
    return [Image.open(path).convert("RGB") for path in files]


def inputs_of(processor, images, **settings) -> dict[str, torch.Tensor]:
    requests = [single_image_request(image, "Describe the image .") for image in images]
    return processor_inputs(
        processor, requests, dtype=torch.float32, settings=GenerationSettings(max_new_tokens=2, **settings)
    )


def tokens(processor, ids: torch.Tensor) -> list[str]:
    return processor.tokenizer.convert_ids_to_tokens(ids.tolist())


def test_gemma3_prompt_has_one_bos_and_keeps_the_image_token_types(tiny_family_dirs, images):
    loaded = load_vlm(str(tiny_family_dirs["gemma3"]), dtype=torch.float32)
    inputs = inputs_of(loaded.processor, images)
    row = tokens(loaded.processor, inputs["input_ids"][1])  # the longer row: no left padding
    assert row[0] == "<bos>" and row.count("<bos>") == 1  # the template writes it; the tokenizer adds none
    is_image = inputs["input_ids"] == loaded.processor.tokenizer.image_token_id  # <image_soft_token>
    assert is_image.sum() == 2 * 4 and torch.equal(inputs["token_type_ids"] == 1, is_image)
    assert "token_type_ids" in model_inputs(loaded.model, inputs)  # bidirectional over the image


def test_token_type_ids_are_dropped_for_a_model_that_does_not_read_them(
    tiny_vlm_dirs, tiny_family_dirs, images
):
    loaded = load_vlm(str(tiny_vlm_dirs["llava"]), dtype=torch.float32)
    inputs = inputs_of(loaded.processor, images)
    with_types = {**inputs, "token_type_ids": torch.zeros_like(inputs["input_ids"])}
    assert "token_type_ids" not in model_inputs(loaded.model, with_types)


def test_paligemma_gets_a_plain_prompt_with_its_image_tokens_first(tiny_family_dirs, images):
    processor = load_processor(str(tiny_family_dirs["paligemma"]))
    assert prompt_format(processor) == PLAIN_PROMPT
    inputs = inputs_of(processor, images)
    row = tokens(processor, inputs["input_ids"][0])
    assert row == ["<image>"] * 16 + ["<bos>", "Describe", "the", "image", "."]
    assert "labels" not in inputs  # the processor's training labels never reach generate()


@pytest.mark.parametrize("splitting, tiles", [(False, 1), (True, 5)])
def test_idefics2_image_tokens_follow_the_run_s_splitting(splitting, tiles, tiny_family_dirs, images):
    processor = load_processor(str(tiny_family_dirs["idefics2"]))
    inputs = inputs_of(processor, images, image_splitting=splitting)
    assert inputs["pixel_values"].shape[1] == tiles  # tiles per image (4 crops + the whole image)
    assert (inputs["input_ids"] == processor.image_token_id).sum(dim=1).tolist() == [4 * tiles] * 2


def test_smolvlm2_processor_loads_without_num2words(tiny_family_dirs):
    processor = load_processor(str(tiny_family_dirs["smolvlm"]))
    assert type(processor).__name__ == "SmolVLMProcessor" and processor.image_seq_len == 4
