"""The supported-models page is the output of a survey over every image-text-to-text type of the pinned
transformers, built on the meta device; the survey's role maps are total and their counts add up."""

from __future__ import annotations

from pathlib import Path

import pytest
import transformers

from vlm_quant.models.coverage import Coverage, image_text_to_text_types, render_markdown, survey
from vlm_quant.reference import readme

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "supported_models.md"


@pytest.fixture(scope="module")
def rows() -> list[Coverage]:
    return survey()


def test_the_supported_models_page_is_the_surveys_output(rows):
    assert PAGE.read_text() == render_markdown(rows, transformers.__version__), (
        "docs/supported_models.md is stale: run `python tools/write_supported_models.py` and commit it"
    )


def test_the_readmes_models_block_is_the_surveys_output(rows):
    supported = [row.model_type for row in rows if row.supported]
    block = readme.models_block(supported, len(rows), transformers.__version__)
    text = (REPO / "README.md").read_text()
    assert readme.fill(text, "models", block) == text, (
        "README.md's models block is stale: run `python tools/write_supported_models.py` and commit it"
    )


def test_every_image_text_to_text_type_is_surveyed_and_most_are_supported(rows):
    assert [row.model_type for row in rows] == list(image_text_to_text_types())
    supported = [row.model_type for row in rows if row.supported]
    assert len(supported) >= 60
    # The assignment's families with transformers classes, and what students pick today.
    for model_type in (
        "llava",
        "qwen2_vl",
        "idefics3",
        "smolvlm",
        "gemma3",
        "qwen2_5_vl",
        "qwen3_vl",
        "internvl",
        "llava_onevision",
        "idefics2",
        "paligemma",
    ):
        assert model_type in supported
    assert all(row.reason for row in rows if not row.supported)


def test_supported_role_maps_are_total_and_their_counts_add_up(rows):
    for row in rows:
        if row.supported:
            assert sum(row.parameters.values()) == row.total_parameters, row.model_type
            assert all(row.parameters[role] > 0 for role in ("vision", "projector", "language")), (
                row.model_type
            )


def test_the_survey_names_what_a_left_out_model_has_beyond_the_roles(rows):
    by_type = {row.model_type: row for row in rows}
    assert "model.audio_tower" in by_type["qwen2_5_omni_thinker"].reason  # audio is not a role
    assert "vqmodel" in by_type["janus"].reason  # image generation is not a role
    # A projector nested inside the vision tower, found by name: Qwen's merger, Qwen3-VL's deepstack mergers.
    assert by_type["qwen2_vl"].roles["projector"] == ("model.visual.merger",)
    assert by_type["qwen3_vl"].roles["projector"] == (
        "model.visual.merger",
        "model.visual.deepstack_merger_list",
    )
    # LLaVA-NeXT's row separator is a parameter of the container itself: counted with the projector.
    assert by_type["llava_next"].supported
