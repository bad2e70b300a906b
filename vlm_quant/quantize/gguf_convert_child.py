"""Child process that runs llama.cpp's ``convert_hf_to_gguf.py`` on one checkpoint (see gguf_converter).

Usage: ``python -m vlm_quant.quantize.gguf_convert_child CONVERTER_DIR CHECKPOINT OUT OUTTYPE text|mmproj``.

Two adaptations, both needed only for checkpoints that llama.cpp's own tests never see, and both said
here because they change what the converter writes:

- Idefics3/SmolVLM: the converter picks the text model's class from ``text_config.architectures``,
  which the Hub's SmolVLM configs carry (``VLlama3ForCausalLM``) but a config saved by transformers 5
  (random weights, tiny test models) does not; a copy of the config names ``LlamaForCausalLM``, the
  architecture of Idefics3's text model. The weights are not touched.
- A tokenizer whose pre-tokenizer the converter does not recognise (the synthetic byte-level tokenizer
  of offline runs, word-level test tokenizers) is declared ``gpt-2`` instead of aborting: the vocabulary
  and token ids are written unchanged. Such a tokenizer has no BPE merges, and llama.cpp refuses to load
  a BPE vocabulary without the merges key (GGUF forbids an empty array), so one merge of the first two
  tokens is written: its result is not in the vocabulary, so llama.cpp's tokenizer falls back to the
  two tokens and the token ids are the same as with no merge.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

TEXT_ARCHITECTURE_WHEN_MISSING = {"Idefics3ForConditionalGeneration": "LlamaForCausalLM"}


def checkpoint_for_converter(checkpoint: Path, scratch: Path) -> Path:
    """``checkpoint``, or a linked copy of it whose config names the text architecture (see above)."""
    config = json.loads((checkpoint / "config.json").read_text())
    text_arch = TEXT_ARCHITECTURE_WHEN_MISSING.get((config.get("architectures") or [""])[0])
    text_config = config.get("text_config") or {}
    if text_arch is None or text_config.get("architectures"):
        return checkpoint
    copy = scratch / checkpoint.name
    copy.mkdir()
    for item in checkpoint.iterdir():
        (copy / item.name).symlink_to(item.resolve())
    (copy / "config.json").unlink()
    config["text_config"] = {**text_config, "architectures": [text_arch]}
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def declare_unknown_pre_tokenizers_gpt2() -> None:
    import conversion.base as base

    recognised = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return recognised(self, tokenizer)
        except NotImplementedError:
            return "gpt-2"

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre


def write_a_merge_when_there_are_none() -> None:
    import conversion.base as base
    from gguf import Keys

    set_vocab_gpt2 = base.TextModel._set_vocab_gpt2

    def _set_vocab_gpt2(self) -> None:
        set_vocab_gpt2(self)
        if not any(Keys.Tokenizer.MERGES in shard for shard in self.gguf_writer.kv_data):
            tokens, _, _ = self.get_vocab_base()
            self.gguf_writer.add_token_merges([f"{tokens[0]} {tokens[1]}"])

    base.TextModel._set_vocab_gpt2 = _set_vocab_gpt2


def main(converter_dir: str, checkpoint: str, out: str, outtype: str, part: str) -> None:
    sys.path[:0] = [converter_dir, str(Path(converter_dir) / "gguf-py")]
    declare_unknown_pre_tokenizers_gpt2()
    write_a_merge_when_there_are_none()
    import convert_hf_to_gguf

    with tempfile.TemporaryDirectory() as scratch:
        source = checkpoint_for_converter(Path(checkpoint), Path(scratch))
        sys.argv = ["convert_hf_to_gguf.py", str(source), "--outfile", out, "--outtype", outtype]
        sys.argv += ["--mmproj"] if part == "mmproj" else []
        convert_hf_to_gguf.main()


if __name__ == "__main__":
    main(*sys.argv[1:6])
