"""A processor for a bundled checkpoint that works without the Hugging Face Hub.

The bundled directories hold the real configuration files of each checkpoint but no vocabulary. This
module writes, next to those real files, a *synthetic* tokenizer that keeps everything the rest of the
pipeline depends on:

- the vocabulary size equals the config's ``vocab_size`` (every id a random model can emit decodes);
- every special / added token (bos, eos, pad, unk, ``<image>``, ``<fake_token_around_image>``,
  ``<row_r_col_c>``, ``<global-img>``, ``<|vision_start|>``, ...) sits at its real id, with its real
  flags, taken from the bundled ``tokenizer_config.json`` (``added_tokens_decoder``) and
  ``added_tokens.json``;
- text is encoded byte-level (one token per UTF-8 byte, like GPT-2), so any prompt encodes without
  unknown tokens, with one merge: ``"\n\n"`` is one token, as in the real BPE vocabularies, because
  llama.cpp's multimodal library looks it up as a single token (the Idefics3/SmolVLM image template)
  and aborts when it is missing; the remaining ids are placeholder words (``" kabo"``, ``" zimeru"``)
  so random generations decode to readable, space-separated text.

The image processor, processor settings and chat template are the real files, copied verbatim, so
image-token counts equal the real checkpoint's (SmolVLM-256M: 832 for 640x480; Qwen2-VL: 391; LLaVA:
576). Text prompts are longer than with the real BPE (one token per byte).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, PreTrainedTokenizerFast

# Processor files of a checkpoint that are copied unchanged (those that exist).
PROCESSOR_FILES = (
    "preprocessor_config.json",
    "processor_config.json",
    "chat_template.json",
    "chat_template.jinja",
)

# Settings of the real tokenizer_config.json that the synthetic tokenizer keeps (the rest describe the
# real vocabulary files, which are absent).
TOKENIZER_SETTINGS = (
    "bos_token",
    "eos_token",
    "pad_token",
    "unk_token",
    "additional_special_tokens",
    "extra_special_tokens",
    "model_max_length",
    "add_bos_token",
    "add_eos_token",
    "clean_up_tokenization_spaces",
    "padding_side",
    "truncation_side",
    "split_special_tokens",
    "chat_template",
)

# Byte-level pairs that are one token of their own (the byte-level spelling: "Ċ" is the byte 0x0A).
MERGES = (("Ċ", "Ċ"),)  # "\n\n"
# Bumped whenever the synthetic vocabulary changes: part of the random-weights cache entry's name, so an
# entry written with an older vocabulary is never reused.
SYNTHETIC_TOKENIZER_VERSION = 2

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_SYLLABLES = [consonant + vowel for consonant in _CONSONANTS for vowel in _VOWELS]  # 70 syllables


def placeholder_word(index: int) -> str:
    """The ``index``-th placeholder word: two syllables for the first 4,900, then three (unique)."""
    n = len(_SYLLABLES)
    if index < n * n:
        return _SYLLABLES[index // n] + _SYLLABLES[index % n]
    index -= n * n
    first, rest = divmod(index, n * n)
    if first >= n:
        raise ValueError(f"placeholder_word supports indices below {n * n + n**3}, got {index + n * n}")
    return _SYLLABLES[first] + _SYLLABLES[rest // n] + _SYLLABLES[rest % n]


def real_added_tokens(config_dir: Path) -> dict[int, dict]:
    """The checkpoint's added/special tokens: id -> ``added_tokens_decoder`` entry (content and flags).

    Tokenizers saved by transformers 5 keep them in ``tokenizer.json`` (``added_tokens``) only."""
    tokenizer_config = json.loads((config_dir / "tokenizer_config.json").read_text())
    decoder = tokenizer_config.get("added_tokens_decoder")
    if decoder is None and (config_dir / "tokenizer.json").is_file():
        entries = json.loads((config_dir / "tokenizer.json").read_text()).get("added_tokens", [])
        decoder = {entry["id"]: {k: v for k, v in entry.items() if k != "id"} for entry in entries}
    added = {int(token_id): entry for token_id, entry in (decoder or {}).items()}
    added_tokens_file = config_dir / "added_tokens.json"
    if added_tokens_file.exists():
        for content, token_id in json.loads(added_tokens_file.read_text()).items():
            added.setdefault(token_id, {"content": content, "special": True, "normalized": False})
    return added


def _synthetic_vocabulary(vocab_size: int, added: dict[int, dict]) -> dict[str, int]:
    """token string -> id for every id below ``vocab_size``: added tokens, 256 byte tokens, the merged
    pairs (`MERGES`), then words."""
    free_ids = (token_id for token_id in range(vocab_size) if token_id not in added)
    vocabulary: dict[str, int] = {}
    # ByteLevel's alphabet sorted by code point is GPT-2's byte order ("!" first, "Ġ" = space at 220
    # when no special token precedes it).
    for byte_character in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocabulary[byte_character] = next(free_ids)
    for left, right in MERGES:
        vocabulary[left + right] = next(free_ids)
    for word_index, token_id in enumerate(free_ids):
        vocabulary["Ġ" + placeholder_word(word_index)] = token_id  # "Ġ" decodes to a leading space
    for token_id, entry in added.items():
        vocabulary[entry["content"]] = token_id
    return vocabulary


def synthetic_tokenizer(config_dir: Path, vocab_size: int | None = None) -> PreTrainedTokenizerFast:
    """Build the synthetic tokenizer of the bundled checkpoint in ``config_dir`` (see module docstring).

    ``vocab_size``: the model's, when the caller has it (a remote-code config cannot be read without its
    code); else read from the config."""
    config_dir = Path(config_dir)
    if vocab_size is None:
        vocab_size = AutoConfig.from_pretrained(config_dir).get_text_config().vocab_size
    added = real_added_tokens(config_dir)
    backend = Tokenizer(models.BPE(vocab=_synthetic_vocabulary(vocab_size, added), merges=list(MERGES)))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # Registering the added tokens after they are in the vocabulary keeps their real ids.
    backend.add_tokens(
        [
            AddedToken(
                entry["content"],
                single_word=entry.get("single_word", False),
                lstrip=entry.get("lstrip", False),
                rstrip=entry.get("rstrip", False),
                normalized=entry.get("normalized", False),
                special=entry.get("special", True),
            )
            for _, entry in sorted(added.items())
        ]
    )
    tokenizer_config = json.loads((config_dir / "tokenizer_config.json").read_text())
    settings = {key: tokenizer_config[key] for key in TOKENIZER_SETTINGS if key in tokenizer_config}
    return PreTrainedTokenizerFast(tokenizer_object=backend, **settings)


def save_offline_processor(config_dir: Path, out_dir: Path, *, vocab_size: int | None = None) -> None:
    """Write a complete processor for the bundled checkpoint in ``config_dir`` into ``out_dir``.

    The tokenizer is written with ``save_pretrained``; the image processor, processor settings and chat
    template files are the real ones, copied verbatim, so ``AutoProcessor.from_pretrained(out_dir)``
    rebuilds exactly the real processor classes around the synthetic tokenizer. (A saved *processor*
    object cannot be used for the Qwen families here: their processors need torchvision's video
    processor to be instantiated, see ``loading.load_processor``.)
    """
    config_dir, out_dir = Path(config_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    synthetic_tokenizer(config_dir, vocab_size).save_pretrained(out_dir)
    for name in PROCESSOR_FILES:
        if (config_dir / name).exists():
            shutil.copyfile(config_dir / name, out_dir / name)
