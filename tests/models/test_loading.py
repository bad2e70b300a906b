"""load_vlm on tiny checkpoints of every family, and its errors when there is nothing to load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
from PIL import Image

from vlm_quant.errors import UserError
from vlm_quant.models import loading
from vlm_quant.models.loading import LoadedVLM, family_of, load_processor, load_vlm

FAMILY_OF_TINY = {family: family for family in ("idefics3", "qwen2_vl", "qwen2_5_vl", "llava")}
# Image placeholder tokens the tiny processors produce for a 640x480 image (see tests/tiny_vlms.py).
TINY_IMAGE_TOKENS = {"idefics3": 20, "qwen2_vl": 12, "qwen2_5_vl": 12, "llava": 16}


def describe(image: Image.Image) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": "Describe the image."}],
        }
    ]


@pytest.fixture()
def offline_hub(monkeypatch):
    """No Hub: HF_HUB_OFFLINE=1 (the constant is read once at import, so patch it too)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("family", sorted(FAMILY_OF_TINY))
def test_load_vlm_reads_a_local_checkpoint(family, tiny_vlm_dirs):
    loaded = load_vlm(str(tiny_vlm_dirs[family]))
    assert isinstance(loaded, LoadedVLM)
    assert loaded.family.name == FAMILY_OF_TINY[family] == family_of(loaded.model).name
    assert (loaded.weights, loaded.revision) == ("pretrained", None)
    assert loaded.source_dir == str(tiny_vlm_dirs[family].resolve())
    assert loaded.model_id == str(tiny_vlm_dirs[family])
    assert loaded.load_time_s > 0
    assert not loaded.model.training
    assert next(loaded.model.parameters()).dtype == torch.float16


@pytest.mark.parametrize("family", sorted(FAMILY_OF_TINY))
def test_processor_expands_the_image_placeholder(family, tiny_vlm_dirs):
    processor = load_processor(str(tiny_vlm_dirs[family]))
    inputs = processor.apply_chat_template(
        describe(Image.new("RGB", (640, 480))),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    assert inputs["input_ids"][0].tolist().count(processor.image_token_id) == TINY_IMAGE_TOKENS[family]


@pytest.mark.coco
@pytest.mark.parametrize("family", sorted(FAMILY_OF_TINY))
def test_generate_on_a_real_coco_image(family, tiny_vlm_dirs, coco_dir):
    loaded = load_vlm(str(tiny_vlm_dirs[family]), dtype=torch.float32)
    image = Image.open(sorted((coco_dir / "val2017").glob("*.jpg"))[0]).convert("RGB")
    inputs = loaded.processor.apply_chat_template(
        describe(image), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.inference_mode():
        output = loaded.model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[1] :]
    assert len(new_tokens) == 4
    assert loaded.processor.decode(new_tokens, skip_special_tokens=True).strip()


def test_random_weights_go_through_the_same_loader(tiny_vlm_dirs, monkeypatch):
    materialized = []

    def fake_materialize(model_id, *, seed, revision):
        materialized.append((model_id, seed, revision))
        return tiny_vlm_dirs["idefics3"]

    monkeypatch.setattr(loading, "materialize_random_checkpoint", fake_materialize)
    loaded = load_vlm("HuggingFaceTB/SmolVLM-256M-Instruct", weights="random", seed=5, dtype=torch.float32)
    assert materialized == [("HuggingFaceTB/SmolVLM-256M-Instruct", 5, None)]
    assert (loaded.model_id, loaded.weights, loaded.revision) == (
        "HuggingFaceTB/SmolVLM-256M-Instruct",
        "random",
        None,
    )
    assert loaded.source_dir == str(tiny_vlm_dirs["idefics3"].resolve())


def test_unknown_weights_value_names_the_choices():
    with pytest.raises(UserError, match="'randn'.*pretrained, random"):
        load_vlm("HuggingFaceTB/SmolVLM-256M-Instruct", weights="randn")


def test_random_weights_of_an_unbundled_model_unreachable_offline_list_the_bundled_ones():
    with pytest.raises(UserError, match="'acme/vlm-1b'.*Qwen/Qwen2-VL-2B-Instruct.*local folder"):
        load_vlm("acme/vlm-1b", weights="random")


def test_random_weights_from_a_local_folder_keep_its_real_tokenizer(tiny_vlm_dirs, tmp_path, monkeypatch):
    """Any architecture whose config is at hand gets random weights: here a folder with config and
    processor files but no weights (as a user copies them from a model card)."""
    folder = tmp_path / "configs-only"
    shutil.copytree(tiny_vlm_dirs["llava"], folder, ignore=shutil.ignore_patterns("*.safetensors"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    loaded = load_vlm(str(folder), weights="random", seed=1, dtype=torch.float32)
    assert loaded.family.name == "llava" and loaded.weights == "random"
    assert Path(loaded.source_dir).parent == tmp_path / "cache" / "vlm-quant" / "random"
    reference = load_processor(str(tiny_vlm_dirs["llava"]))
    assert loaded.processor.tokenizer.get_vocab() == reference.tokenizer.get_vocab()
    original = load_vlm(str(tiny_vlm_dirs["llava"]), dtype=torch.float32).model.state_dict()
    drawn = loaded.model.state_dict()
    assert drawn.keys() == original.keys()
    assert all(drawn[k].shape == original[k].shape for k in drawn)
    assert not torch.equal(drawn["lm_head.weight"], original["lm_head.weight"])


def test_random_weights_fetch_only_configuration_files_from_the_hub(tiny_vlm_dirs, tmp_path, monkeypatch):
    """No weights are downloaded: snapshot_download is asked for configuration files only, and the
    snapshot's commit (its folder name) is recorded in the random checkpoint's manifest."""
    import huggingface_hub

    commit = "a" * 40
    snapshot = tmp_path / "hub" / "snapshots" / commit
    shutil.copytree(tiny_vlm_dirs["qwen2_vl"], snapshot, ignore=shutil.ignore_patterns("*.safetensors"))
    asked = []

    def fake_snapshot_download(repo_id, *, revision, allow_patterns):
        asked.append((repo_id, revision, allow_patterns))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    loaded = load_vlm("acme/tiny-qwen2-vl", weights="random", revision="main", dtype=torch.float32)
    ((repo, revision, patterns),) = asked
    assert (repo, revision) == ("acme/tiny-qwen2-vl", "main")
    assert "config.json" in patterns and not any("safetensors" in p or ".bin" in p for p in patterns)
    manifest = json.loads((Path(loaded.source_dir) / "vlm_quant_random.json").read_text())
    assert (manifest["config_origin"], manifest["config_revision"]) == ("hub", commit)
    assert loaded.revision == commit
    assert loaded.family.name == "qwen2_vl"


def test_random_weights_have_no_revision():
    with pytest.raises(UserError, match="revision"):
        load_vlm("HuggingFaceTB/SmolVLM-256M-Instruct", weights="random", revision="main")


def test_unreachable_hub_points_to_random_weights_or_a_local_path(offline_hub):
    with pytest.raises(
        UserError, match="nonexistent-org-xyz/no-such-vlm.*unreachable.*local checkpoint directory"
    ):
        load_vlm("nonexistent-org-xyz/no-such-vlm")


def test_unreachable_hub_for_a_bundled_model_suggests_weights_random(offline_hub):
    with pytest.raises(UserError, match=r"SmolVLM-500M-Instruct.*-P weights=random"):
        load_vlm("HuggingFaceTB/SmolVLM-500M-Instruct")


def test_missing_local_directory(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_vlm(str(tmp_path / "no" / "such" / "checkpoint"))


def test_a_directory_without_a_checkpoint(tmp_path):
    with pytest.raises(UserError, match="holds no readable model checkpoint"):
        load_vlm(str(tmp_path))


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_a_saved_processor_reloads_unchanged(family, tiny_vlm_dirs, tmp_path):
    """Also for Qwen without torchvision, whose processor is then built without its video part."""
    processor = load_processor(str(tiny_vlm_dirs[family]))
    processor.save_pretrained(tmp_path)
    # A saved processor has no config.json: the model type comes from the caller.
    reloaded = load_processor(str(tmp_path), model_type=family)
    assert type(reloaded).__name__ == type(processor).__name__
    prompt = describe(Image.new("RGB", (640, 480)))
    kwargs = dict(add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    before = processor.apply_chat_template(prompt, **kwargs)["input_ids"]
    assert torch.equal(reloaded.apply_chat_template(prompt, **kwargs)["input_ids"], before)
