"""Child process that runs llama.cpp's ``convert_hf_to_gguf.py`` on one checkpoint (see gguf_converter).

Usage: ``python -m vlm_quant.quantize.gguf_convert_child CONVERTER_DIR CHECKPOINT OUT OUTTYPE text|mmproj``.

Four adaptations, all needed only for checkpoints that llama.cpp's own tests never see (saved by
transformers 5: random weights, tiny test models), and all said here because they change what the
converter reads or writes. None changes a weight's values; docs/gguf_families.md shows what converts.

- Idefics3/SmolVLM and SmolVLM2: the converter picks the text model's class from
  ``text_config.architectures``, which the Hub's configs carry (``VLlama3ForCausalLM``) but a config saved
  by transformers 5 (random weights, tiny test models) does not; a copy of the config names
  ``LlamaForCausalLM``, the architecture of their text model. The weights are not touched.
- A tokenizer whose pre-tokenizer the converter does not recognise (the synthetic byte-level tokenizer
  of offline runs, word-level test tokenizers) is declared ``gpt-2`` instead of aborting: the vocabulary
  and token ids are written unchanged. Such a tokenizer has no BPE merges, and llama.cpp refuses to load
  a BPE vocabulary without the merges key (GGUF forbids an empty array), so one merge of the first two
  tokens is written: its result is not in the vocabulary, so llama.cpp's tokenizer falls back to the
  two tokens and the token ids are the same as with no merge.
- Qwen2-VL / Qwen2.5-VL: the converter names the projector's layers (``visual.merger.mlp.0``, ``.2``)
  through the vision tower's per-block name table, which has one entry per tower block, so a tower of
  fewer than 3 blocks (the tiny test models: 1 and 2) fails with "Can not map tensor
  'visual.merger.mlp.2.bias'". Such a tower gets a 3-entry table; real towers (32 blocks) are unchanged:
  the random Qwen2-VL-2B converts with or without this.
- Gemma 3: transformers 5 saves its SigLIP tower without the ``vision_model.`` level
  (``vision_tower.encoder...``; transformers' ``PrefixChange`` for ``CLIPVisionModel``), while the Hub's
  files and the converter's name table have ``vision_tower.vision_model.encoder...``; the level is put
  back before the names are mapped. The tower's ``head`` (absent from the real Gemma 3) is then skipped
  by the converter as for its own tiny Gemma 3.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

TEXT_ARCHITECTURE_WHEN_MISSING = {
    "Idefics3ForConditionalGeneration": "LlamaForCausalLM",
    "SmolVLMForConditionalGeneration": "LlamaForCausalLM",
}
# Qwen2-VL's projector is ``visual.merger.mlp.0`` and ``.2``: the converter looks those indices up in the
# vision tower's per-block name table, so it needs a tower of at least this many blocks to name them.
QWEN2VL_PROJECTOR_INDICES = 3


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


def name_qwen2vl_projector_layers_of_shallow_towers() -> None:
    import conversion.qwenvl as qwenvl
    import gguf

    init = qwenvl.Qwen2VLVisionModel.__init__

    def __init__(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        if self.block_count < QWEN2VL_PROJECTOR_INDICES:
            self.tensor_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, QWEN2VL_PROJECTOR_INDICES)

    qwenvl.Qwen2VLVisionModel.__init__ = __init__


def put_back_the_vision_model_level_of_gemma3() -> None:
    import conversion.gemma as gemma

    filter_tensors = gemma.Gemma3VisionModel.filter_tensors.__func__

    def hub_name(cls, item):
        name, gen = item
        if name.startswith("vision_tower.") and not name.startswith("vision_tower.vision_model."):
            name = "vision_tower.vision_model." + name.removeprefix("vision_tower.")
        return filter_tensors(cls, (name, gen))

    gemma.Gemma3VisionModel.filter_tensors = classmethod(hub_name)


def main(converter_dir: str, checkpoint: str, out: str, outtype: str, part: str) -> None:
    sys.path[:0] = [converter_dir, str(Path(converter_dir) / "gguf-py")]
    declare_unknown_pre_tokenizers_gpt2()
    write_a_merge_when_there_are_none()
    name_qwen2vl_projector_layers_of_shallow_towers()
    put_back_the_vision_model_level_of_gemma3()
    import convert_hf_to_gguf

    with tempfile.TemporaryDirectory() as scratch:
        source = checkpoint_for_converter(Path(checkpoint), Path(scratch))
        sys.argv = ["convert_hf_to_gguf.py", str(source), "--outfile", out, "--outtype", outtype]
        sys.argv += ["--mmproj"] if part == "mmproj" else []
        convert_hf_to_gguf.main()


if __name__ == "__main__":
    main(*sys.argv[1:6])
