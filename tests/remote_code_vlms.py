"""Tiny remote-code VLMs for the trust_remote_code tests, built from tests/fixtures/remote_code/.

Each fixture folder is a model repository as the Hub serves one with its own code: ``config.json`` whose
``auto_map`` names ``configuration_*.py`` / ``modeling_*.py`` (and a processor) in the same folder. The
modules follow the published layouts of Phi-3.5-vision (``model.vision_embed_tokens`` with the projection
nested in it) and Bunny (``model.vision_tower`` + ``model.mm_projector`` beside the decoder's layers);
the code is vlm-quant's own, written for these tests. ``build_remote_code_vlm`` copies a folder and adds
what is not checked in: a word-level tokenizer and seeded random weights (about a second).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "remote_code"
REMOTE_CODE_VLMS = ("tiny-phi3v-style", "tiny-bunny-style")

# Special tokens in id order (0, 1, ...): config.json of each fixture names these ids.
SPECIAL_TOKENS = {
    "tiny-phi3v-style": [
        "<unk>",
        "<s>",
        "<|endoftext|>",
        "<|end|>",
        "<|user|>",
        "<|assistant|>",
        "<|image|>",
    ],
    "tiny-bunny-style": ["<unk>", "<|endoftext|>", "<image>"],
}
WORDS = (
    ". , : ? ! A chat between a curious user and an artificial intelligence assistant The gives helpful "
    "detailed polite answers to the questions USER ASSISTANT Provide one-sentence caption for provided "
    "image picture photo man woman dog cat car street table sitting standing two red blue green"
).split()


def build_remote_code_vlm(name: str, out_dir: Path, *, seed: int = 0) -> Path:
    """Copy fixture ``name`` to ``out_dir`` and add its tokenizer and seeded random weights."""
    out_dir = Path(out_dir)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(FIXTURES / name, out_dir, dirs_exist_ok=True, ignore=ignore)
    tokenizer = _word_level_tokenizer(SPECIAL_TOKENS[name])
    tokenizer.save_pretrained(out_dir)
    config = AutoConfig.from_pretrained(out_dir, trust_remote_code=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, trust_remote_code=True)
    model.save_pretrained(out_dir)
    GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    ).save_pretrained(out_dir)
    return out_dir


def _word_level_tokenizer(specials: list[str]) -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate(specials)}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    names = {"<unk>": "unk_token", "<s>": "bos_token", "<|end|>": "eos_token", "<|endoftext|>": "pad_token"}
    named = {names[token]: token for token in specials if token in names}
    if "eos_token" not in named:
        named["eos_token"] = "<|endoftext|>"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **named)
    others = [token for token in specials if token not in named.values()]
    tokenizer.add_special_tokens({"additional_special_tokens": others})
    return tokenizer
