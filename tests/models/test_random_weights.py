"""Random-weight checkpoints: ids, seeding, the atomic cache, and one real size end to end (slow)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import pytest
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file

from vlm_quant.errors import UserError
from vlm_quant.models import random_weights
from vlm_quant.models.config_source import bundled_model_ids, find_config_source
from vlm_quant.models.offline_processor import SYNTHETIC_TOKENIZER_VERSION
from vlm_quant.models.random_weights import (
    MANIFEST_NAME,
    build_random_model,
    checkpoint_dir_name,
    entry_problem,
    materialize_random_checkpoint,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # random_cache_child, for the spawned processes

SMOLVLM_256M = "HuggingFaceTB/SmolVLM-256M-Instruct"


def test_bundled_model_ids():
    assert bundled_model_ids() == [
        "BAAI/Bunny-v1_0-3B",  # remote code: random weights need its cached code (test_remote_code.py)
        "HuggingFaceTB/SmolVLM-256M-Instruct",
        "HuggingFaceTB/SmolVLM-500M-Instruct",
        "HuggingFaceTB/SmolVLM-Instruct",
        "Qwen/Qwen2-VL-2B-Instruct",
        "Qwen/Qwen2.5-VL-3B-Instruct",
        "llava-hf/llava-1.5-7b-hf",
        "microsoft/Phi-3.5-vision-instruct",  # remote code, likewise
    ]


def test_a_model_neither_bundled_nor_local_nor_on_the_reachable_hub_names_the_three_ways(tmp_path):
    bundled = r"not bundled \(.*HuggingFaceTB/SmolVLM-256M-Instruct, .*llava-hf"
    with pytest.raises(UserError, match=rf"'acme/vlm-1b'.*{bundled}.*not a local folder.*Hub"):
        materialize_random_checkpoint("acme/vlm-1b", seed=0, cache_dir=tmp_path)


def test_cache_directory_name_carries_the_config_digest_seed_and_transformers_version():
    source = find_config_source(SMOLVLM_256M)
    name = checkpoint_dir_name(source, 7)
    versions = f"tf{transformers.__version__}-tok{SYNTHETIC_TOKENIZER_VERSION}"
    assert name == f"HuggingFaceTB__SmolVLM-256M-Instruct-{source.key}-seed7-{versions}"


def test_default_cache_root_honours_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert random_weights.default_cache_root() == tmp_path / "vlm-quant" / "random"


def entries(cache_root: Path) -> list[str]:
    """The cache's entries and leftovers (the hidden lock files, which filelock keeps, aside)."""
    return sorted(p.name for p in cache_root.iterdir() if not p.name.endswith(".lock"))


def _fake_writer(calls: list):
    """Writes a small but complete checkpoint: the required files and a readable safetensors file."""

    def write(source, out_dir, *, seed):
        calls.append(seed)
        tensors = {"embed.weight": torch.zeros(4, 2), "head.weight": torch.ones(2)}
        save_file(tensors, out_dir / "model.safetensors")
        (out_dir / "config.json").write_text(json.dumps({"fake": seed}))
        for name in ("generation_config.json", "tokenizer_config.json", "preprocessor_config.json"):
            (out_dir / name).write_text("{}")

    return write


def test_complete_checkpoint_is_reused(tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(random_weights, "_write_random_checkpoint", _fake_writer(calls))
    first = materialize_random_checkpoint(SMOLVLM_256M, seed=3, cache_dir=tmp_path)
    second = materialize_random_checkpoint(SMOLVLM_256M, seed=3, cache_dir=tmp_path)
    assert first == second == tmp_path / checkpoint_dir_name(find_config_source(SMOLVLM_256M), 3)
    assert calls == [3]
    manifest = json.loads((first / MANIFEST_NAME).read_text())
    assert manifest["model_id"] == SMOLVLM_256M and manifest["seed"] == 3
    assert entries(tmp_path) == [first.name]  # no temp dir left


def test_a_crash_while_writing_leaves_no_checkpoint_behind(tmp_path, monkeypatch):
    def crash(config_dir, out_dir, *, seed):
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(random_weights, "_write_random_checkpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        materialize_random_checkpoint(SMOLVLM_256M, seed=0, cache_dir=tmp_path)
    assert entries(tmp_path) == []


def test_an_incomplete_directory_is_rebuilt(tmp_path, monkeypatch):
    stale = tmp_path / checkpoint_dir_name(find_config_source(SMOLVLM_256M), 0)
    stale.mkdir()
    (stale / "config.json").write_text("{}")  # no manifest: e.g. copied by hand, half-way
    calls: list[int] = []
    monkeypatch.setattr(random_weights, "_write_random_checkpoint", _fake_writer(calls))
    assert materialize_random_checkpoint(SMOLVLM_256M, seed=0, cache_dir=tmp_path) == stale
    assert calls == [0] and (stale / MANIFEST_NAME).is_file()
    assert json.loads((stale / "config.json").read_text()) == {"fake": 0}  # the rebuilt one
    assert entry_problem(stale) is None


def _garble_header(entry):
    weights = entry / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:16] = b"\x00" * 8  # same size, header no longer JSON
    weights.write_bytes(bytes(data))


def _old_manifest(entry):
    manifest = json.loads((entry / MANIFEST_NAME).read_text())
    del manifest["files"]
    (entry / MANIFEST_NAME).write_text(json.dumps(manifest))


DAMAGE = {
    # what a killed `processes=2` run left: manifest and processor files, no config or weights
    "no config, no weights": lambda e: [(e / n).unlink() for n in ("config.json", "model.safetensors")],
    "truncated weights": lambda e: os.truncate(e / "model.safetensors", 100),
    "garbled weights header": _garble_header,
    "manifest without inventory": _old_manifest,
    "a processor file gone": lambda e: (e / "preprocessor_config.json").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_broken_entry_is_detected_from_its_files_and_rebuilt_with_a_log_line(
    damage, tmp_path, monkeypatch, caplog
):
    calls: list[int] = []
    monkeypatch.setattr(random_weights, "_write_random_checkpoint", _fake_writer(calls))
    entry = materialize_random_checkpoint(SMOLVLM_256M, seed=0, cache_dir=tmp_path)
    assert entry_problem(entry) is None
    DAMAGE[damage](entry)
    assert entry_problem(entry) is not None  # the manifest alone would have said "complete"
    with caplog.at_level(logging.WARNING, logger=random_weights.__name__):
        assert materialize_random_checkpoint(SMOLVLM_256M, seed=0, cache_dir=tmp_path) == entry
    assert calls == [0, 0] and entry_problem(entry) is None
    assert any("broken" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    assert entries(tmp_path) == [entry.name]


@pytest.mark.slow  # two fresh interpreters importing transformers: ~15 s on a quiet 2-core machine
def test_two_processes_building_the_same_checkpoint_at_once_build_it_once(tmp_path):
    """Real builds of a tiny bundled-like config (SmolVLM-256M files, 1 layer, width 64), started together."""
    import multiprocessing

    import random_cache_child

    bundled = random_cache_child.tiny_bundled_root(tmp_path / "bundled")
    cache, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    processes = [
        context.Process(target=random_cache_child.build, args=(bundled, cache, out, barrier, i))
        for i in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0, 0]
    results = [json.loads((out / f"{i}.json").read_text()) for i in range(2)]
    assert results[0]["path"] == results[1]["path"]
    assert [r["problem"] for r in results] == [None, None]
    assert sum(r["built"] for r in results) == 1  # one built it under the lock, the other reused it
    assert entries(cache) == [Path(results[0]["path"]).name]


@pytest.mark.parametrize("family", ["idefics3", "qwen2_vl", "qwen2_5_vl", "llava"])
def test_random_init_is_seeded_and_finite(family, tiny_vlm_dirs):
    """Every parameter is written by _init_weights (skipped constructor inits leave nothing empty)."""
    first = build_random_model(tiny_vlm_dirs[family], seed=1).state_dict()
    again = build_random_model(tiny_vlm_dirs[family], seed=1).state_dict()
    other = build_random_model(tiny_vlm_dirs[family], seed=2).state_dict()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert all(torch.isfinite(tensor).all() for tensor in first.values() if tensor.is_floating_point())
    differing = [name for name in first if not torch.equal(first[name], other[name])]
    assert any(name.endswith("embed_tokens.weight") for name in differing)


@pytest.mark.slow
def test_smolvlm_256m_at_full_size(tmp_path, monkeypatch):
    """The real architecture, written like the Hub checkpoint, loads and runs; the second call is free."""
    from vlm_quant.models.loading import load_vlm

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    started = time.perf_counter()
    checkpoint = materialize_random_checkpoint(SMOLVLM_256M, seed=0)
    print(f"materialized {SMOLVLM_256M} in {time.perf_counter() - started:.1f} s")
    # Same file size as the real model.safetensors (LFS pointer: 513,028,808 B, bf16).
    assert (checkpoint / "model.safetensors").stat().st_size == 513_028_808
    assert json.loads((checkpoint / "generation_config.json").read_text())["eos_token_id"] == 49279

    started = time.perf_counter()
    loaded = load_vlm(
        SMOLVLM_256M, weights="random", dtype=torch.float32
    )  # fp32: bf16 matmuls are slow on CPU
    assert time.perf_counter() - started < 60
    assert (loaded.weights, loaded.source_dir, loaded.revision) == ("random", str(checkpoint), None)
    assert sum(p.numel() for p in loaded.model.parameters()) == 256_484_928

    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}
    ]
    prompt = loaded.processor.apply_chat_template(messages, add_generation_prompt=True)
    # One 512 px tile (64 image tokens) keeps the CPU forward pass short.
    inputs = loaded.processor(
        text=[prompt],
        images=[[Image.new("RGB", (640, 480), (200, 30, 90))]],
        do_image_splitting=False,
        return_tensors="pt",
    )
    assert inputs["input_ids"][0].tolist().count(49190) == 64
    with torch.inference_mode():
        output = loaded.model.generate(
            **inputs,
            max_new_tokens=2,
            min_new_tokens=2,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    assert output.sequences.shape[1] == inputs["input_ids"].shape[1] + 2
    assert output.logits[0].shape[-1] == 49_280 and torch.isfinite(output.logits[0]).all()
