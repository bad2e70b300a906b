"""A process materialising a random checkpoint from a tiny bundled-like config (test_random_weights.py).

`tiny_bundled_root` copies SmolVLM-256M's bundled files (real tokenizer settings and processor) and
shrinks the model to one layer of width 64, so a real build takes about a second.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

MODEL_ID = "acme/tiny-smolvlm"


def tiny_bundled_root(root: Path) -> Path:
    from vlm_quant.models import config_source

    entry = root / MODEL_ID.replace("/", "__")
    shutil.copytree(config_source.BUNDLED_ROOT / "HuggingFaceTB__SmolVLM-256M-Instruct", entry)
    config = json.loads((entry / "config.json").read_text())
    small = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2)
    config["text_config"].update(small, num_key_value_heads=1, head_dim=32)
    config["vision_config"].update(small)
    (entry / "config.json").write_text(json.dumps(config))
    return root


def build(bundled: Path, cache: Path, out: Path, barrier, index: int) -> None:
    from vlm_quant.models import config_source, random_weights

    config_source.BUNDLED_ROOT = bundled
    write = random_weights._write_random_checkpoint
    built = []

    def counting_write(*args, **kwargs):
        built.append(os.getpid())
        write(*args, **kwargs)

    random_weights._write_random_checkpoint = counting_write
    barrier.wait(timeout=120)  # both processes ask for the empty cache entry at the same moment
    path = random_weights.materialize_random_checkpoint(MODEL_ID, seed=0, cache_dir=cache)
    result = {"path": str(path), "built": len(built), "problem": random_weights.entry_problem(path)}
    (out / f"{index}.json").write_text(json.dumps(result))
