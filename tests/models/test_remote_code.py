"""trust_remote_code: refused by default, pinned when allowed, and a remote-code VLM runs end to end.

The models are vlm-quant's own tiny remote-code repositories (tests/fixtures/remote_code/), laid out like
Phi-3.5-vision and Bunny; nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import AutoModelForCausalLM

from tests.remote_code_vlms import build_remote_code_vlm
from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.models import config_source
from vlm_quant.models.config_source import bundled_model_ids
from vlm_quant.models.families import family_for_config, parameter_counts_by_role
from vlm_quant.models.loading import load_vlm
from vlm_quant.models.meta_model import build_meta_model
from vlm_quant.models.remote_code import check_remote_code, directory_code_sha256
from vlm_quant.run.runner import (
    model_config,
    model_family,
    prepare_experiment,
    remote_code_params,
    run_experiment,
)
from vlm_quant.tracking import run_schema
from vlm_quant.tracking.tracker import InMemoryTracker

HASH = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="session")
def remote_code_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote_code")
    return {
        name: build_remote_code_vlm(name, root / name) for name in ("tiny-phi3v-style", "tiny-bunny-style")
    }


def _config(directory):
    return json.loads((directory / "config.json").read_text())


def test_refused_without_trust_remote_code_naming_it_and_the_risk(remote_code_dirs):
    directory = remote_code_dirs["tiny-phi3v-style"]
    cfg = ExperimentConfig.from_mapping({"model": str(directory), "data_dir": "."})
    with pytest.raises(UserError) as refused:
        model_config(cfg)  # prepare_experiment's first look at the model: before any code runs
    message = str(refused.value)
    assert "trust_remote_code=true" in message and "executes Python files" in message
    assert "modeling_tiny_phi3v.py" in message
    with pytest.raises(UserError, match="trust_remote_code=true"):
        load_vlm(str(directory), dtype=None)


def test_hub_model_needs_a_commit_hash_revision(remote_code_dirs):
    config = _config(remote_code_dirs["tiny-bunny-style"])
    for revision in (None, "main", "v1.0", HASH[:12]):
        with pytest.raises(UserError, match="40 hex characters") as refused:
            check_remote_code(
                "BAAI/Bunny-v1_0-3B", config, trust_remote_code=True, revision=revision, local_dir=None
            )
        assert "huggingface.co/BAAI/Bunny-v1_0-3B/commits" in str(refused.value)
    pinned = check_remote_code(
        "BAAI/Bunny-v1_0-3B", config, trust_remote_code=True, revision=HASH, local_dir=None
    )
    assert pinned.revision == HASH and pinned.code_files == (
        "configuration_tiny_bunny.py",
        "modeling_tiny_bunny.py",
    )
    # transformers' own classes: nothing to trust, nothing pinned.
    assert (
        check_remote_code(
            "x/y", {"model_type": "llava"}, trust_remote_code=False, revision=None, local_dir=None
        )
        is None
    )
    with pytest.raises(UserError, match="no auto_map"):
        check_remote_code(
            "x/y", {"model_type": "not_a_type"}, trust_remote_code=True, revision=HASH, local_dir=None
        )


@pytest.mark.parametrize(
    ("name", "vision", "projector"),
    [
        ("tiny-phi3v-style", "model.vision_embed_tokens", "model.vision_embed_tokens.img_projection"),
        ("tiny-bunny-style", "model.vision_tower", "model.mm_projector"),
    ],
)
def test_roles_of_the_remote_code_layouts_are_total(remote_code_dirs, name, vision, projector):
    cfg = ExperimentConfig.from_mapping(
        {"model": str(remote_code_dirs[name]), "trust_remote_code": True, "data_dir": "."}
    )
    config = model_config(cfg)
    family = family_for_config(config, trust_remote_code=True)
    assert family.roles["vision"] == (vision,)
    assert family.roles["projector"] == (projector,)
    assert family.roles["language"] == ("model",)  # the decoder's layers sit in `model` beside the vision
    assert family.roles["lm_head"] == ("lm_head",)
    model = build_meta_model(config, trust_remote_code=True)
    counts = parameter_counts_by_role(model, family)  # raises on any module outside every role
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())
    vision_params = sum(p.numel() for p in model.get_submodule(vision).parameters())
    projector_params = sum(p.numel() for p in model.get_submodule(projector).parameters())
    expected_vision = vision_params - (projector_params if projector.startswith(vision + ".") else 0)
    assert counts["vision"] == expected_vision and counts["projector"] == projector_params
    assert family.supports_multiple_images == (name == "tiny-phi3v-style")  # Bunny: one image per prompt


@pytest.mark.parametrize(
    ("name", "quant"),
    [("tiny-phi3v-style", "fp16"), ("tiny-phi3v-style", "int8"), ("tiny-bunny-style", "fp16")],
)
def test_evaluate_runs_the_remote_code_model_and_logs_the_code_hash(remote_code_dirs, coco_dir, name, quant):
    directory = remote_code_dirs[name]
    cfg = ExperimentConfig.from_mapping(
        dict(
            model=str(directory),
            trust_remote_code=True,
            data_dir=str(coco_dir),
            quant=quant,
            n_samples=2,
            batch_size=2,
            max_new_tokens=3,
            log_model=False,
            cost_samples=1,
            fidelity_samples=1,
            fidelity_new_tokens=2,
            cost_iterations=1,
            cost_warmup=0,
            cost_new_tokens=2,
            idle_seconds=0,
        )
    )
    tracker = InMemoryTracker()
    summary = run_experiment(prepare_experiment(cfg), tracker, progress=False)
    params = tracker.params
    assert params["trust_remote_code"] in (True, "True", "true")
    assert params[run_schema.PARAM_REMOTE_CODE_SHA256] == directory_code_sha256(directory)
    code = {"tiny-phi3v-style": "tiny_phi3v", "tiny-bunny-style": "tiny_bunny"}[name]
    assert params[run_schema.PARAM_REMOTE_CODE_FILES] == f"configuration_{code}.py,modeling_{code}.py"
    assert params["model_family"] == {"tiny-phi3v-style": "phi3_v", "tiny-bunny-style": "bunny-phi"}[name]
    assert params["realized_precision_language"] == (
        "int8" if quant == "int8" else "fp32"
    )  # fp16 -> fp32 on CPU
    assert summary.n_predictions == 2  # both COCO images captioned through generate


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tiny-phi3v-style", "<|user|>\n<|image_1|>\nWhat is this?<|end|>\n<|assistant|>\n"),
        (
            "tiny-bunny-style",
            "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
            "helpful, detailed, and polite answers to the user's questions. "
            "USER: <image>\nWhat is this? ASSISTANT:",
        ),
    ],
)
def test_prompt_format_of_the_family_when_the_processor_has_no_template(remote_code_dirs, name, expected):
    loaded = load_vlm(str(remote_code_dirs[name]), dtype=None, trust_remote_code=True)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    text = loaded.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == expected
    assert loaded.remote_code.code_sha256 == directory_code_sha256(remote_code_dirs[name])
    if name == "tiny-phi3v-style":  # several images are numbered, as in the model card's multi-frame prompts
        two = [
            {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "x"}]}
        ]
        rendered = loaded.processor.apply_chat_template(two, add_generation_prompt=True, tokenize=False)
        assert rendered == "<|user|>\n<|image_1|>\n<|image_2|>\nx<|end|>\n<|assistant|>\n"


def test_bundled_remote_code_configs_need_their_code_for_random_weights(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))  # an empty cache
    assert "microsoft/Phi-3.5-vision-instruct" in bundled_model_ids()
    with pytest.raises(UserError, match="trust_remote_code=true"):
        load_vlm("microsoft/Phi-3.5-vision-instruct", weights="random", dtype=None)
    with pytest.raises(UserError, match="40 hex"):
        load_vlm("BAAI/Bunny-v1_0-3B", weights="random", dtype=None, trust_remote_code=True, revision="main")
    with pytest.raises(UserError, match="not in the local Hugging Face cache") as refused:
        load_vlm("BAAI/Bunny-v1_0-3B", weights="random", dtype=None, trust_remote_code=True, revision=HASH)
    assert f"huggingface-cli download BAAI/Bunny-v1_0-3B --revision {HASH}" in str(refused.value)


def test_random_weights_build_a_bundled_remote_code_config_with_its_cached_code(
    remote_code_dirs, tmp_path, monkeypatch
):
    built = remote_code_dirs["tiny-phi3v-style"]
    bundle = tmp_path / "bundled" / "vlmq-tests__tiny-phi3v-style"
    bundle.mkdir(parents=True)
    shutil.copyfile(built / "config.json", bundle / "config.json")  # the config alone, as bundled
    snapshot = tmp_path / "hub" / "models--vlmq-tests--tiny-phi3v-style" / "snapshots" / HASH
    shutil.copytree(built, snapshot, ignore=shutil.ignore_patterns("*.safetensors", "config.json"))
    monkeypatch.setattr(config_source, "BUNDLED_ROOT", tmp_path / "bundled")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    loaded = load_vlm(
        "vlmq-tests/tiny-phi3v-style", weights="random", dtype=None, trust_remote_code=True, revision=HASH
    )
    assert loaded.family.roles["projector"] == ("model.vision_embed_tokens.img_projection",)
    assert loaded.remote_code.revision == HASH
    assert loaded.remote_code.code_sha256 == directory_code_sha256(snapshot)
    reference = AutoModelForCausalLM.from_pretrained(built, trust_remote_code=True)
    assert sum(p.numel() for p in loaded.model.parameters()) == sum(p.numel() for p in reference.parameters())
    params = remote_code_params(loaded.remote_code, "random")
    assert params[run_schema.PARAM_REMOTE_CODE_REVISION] == HASH
    # prepare_experiment's look at the config (no weights) goes through the same cached code.
    cfg = ExperimentConfig.from_mapping(
        {
            "model": "vlmq-tests/tiny-phi3v-style",
            "weights": "random",
            "trust_remote_code": True,
            "revision": HASH,
            "data_dir": ".",
        }
    )
    assert model_family(cfg).roles["vision"] == ("model.vision_embed_tokens",)


def test_a_checkpoint_without_processor_is_refused_before_its_weights_load(remote_code_dirs, tmp_path):
    # The published Bunny checkpoints ship a tokenizer only (their model card encodes images by hand).
    folder = tmp_path / "bunny-without-processor"
    ignore = shutil.ignore_patterns("processor_config.json", "preprocessor_config.json", "processing_*.py")
    shutil.copytree(remote_code_dirs["tiny-bunny-style"], folder, ignore=ignore)
    (folder / "model.safetensors").write_bytes(b"not weights")  # never read: refused before
    with pytest.raises(UserError, match="ships no multimodal processor"):
        load_vlm(str(folder), dtype=None, trust_remote_code=True)
