"""GGUF conversion (llama.cpp's converter) and quantization (llama.cpp's quantizer) of a tiny Idefics3,
the audit of the tensor types the files really hold, the families the converter refuses or needs an
adaptation for, and libmtmd's load check. Skips without llama-cpp-python or the converter."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from tiny_vlms import TINY_FAMILIES

from vlm_quant.errors import UserError
from vlm_quant.quantize import gguf, gguf_converter
from vlm_quant.quantize.gguf_load_check import STAGES, _reason, load_check

FAMILIES_PAGE = Path(__file__).resolve().parents[2] / "docs" / "gguf_families.md"


@pytest.fixture(scope="module")
def llama_cpp_and_converter() -> None:
    for missing in (gguf.llama_cpp_missing(), gguf_converter.converter_missing()):
        if missing:
            pytest.skip(missing)


@pytest.fixture(scope="module")
def tiny_ggufs(tmp_path_factory, tiny_vlm_dirs, llama_cpp_and_converter) -> dict[str, Path]:
    """The tiny Idefics3 as f16 text + mmproj GGUFs and their quantized versions (built once)."""
    out = tmp_path_factory.mktemp("tiny-gguf")
    checkpoint = tiny_vlm_dirs["idefics3"]
    text = gguf_converter.convert(checkpoint, out / "text-f16.gguf", mmproj=False)
    mmproj = gguf_converter.convert(checkpoint, out / "mmproj-f16.gguf", mmproj=True)
    return {
        "text-f16": text,
        "mmproj-f16": mmproj,
        "text-q8_0": gguf.quantize(text, out / "text-q8_0.gguf", "gguf-q8_0", threads=1),
        "text-q4_k_m": gguf.quantize(text, out / "text-q4_k_m.gguf", "gguf-q4_k_m", threads=1),
        "mmproj-q8_0": gguf.quantize(mmproj, out / "mmproj-q8_0.gguf", "gguf-q8_0", threads=1),
    }


def test_converter_writes_every_role_at_f16(tiny_ggufs):
    assert gguf.matrix_types_per_role(tiny_ggufs["text-f16"]) == {
        "embedding": {"F16": 1},
        "language": {"F16": 14},  # 2 layers x (q, k, v, o, gate, up, down)
        "lm_head": {"F16": 1},
    }
    mmproj = gguf.matrix_types_per_role(tiny_ggufs["mmproj-f16"])
    assert set(mmproj) == {"vision", "projector"}
    assert mmproj["projector"] == {"F16": 1}


def test_q8_0_quantizes_every_language_matrix(tiny_ggufs):
    types = gguf.matrix_types_per_role(tiny_ggufs["text-q8_0"])
    assert types["language"] == {"Q8_0": 14}
    assert gguf.size_on_disk_mib(tiny_ggufs["text-q8_0"]) < gguf.size_on_disk_mib(tiny_ggufs["text-f16"])


def test_q4_k_m_audit_shows_llamacpp_fallbacks_not_the_preset_name(tiny_ggufs):
    # The tiny model's rows (64, 128 values) are not multiples of the 256-value K-quant block, so
    # llama.cpp falls back to Q5_0 (for Q4_K) and Q8_0 (for Q6_K): the audit must report that.
    language = gguf.matrix_types_per_role(tiny_ggufs["text-q4_k_m"])["language"]
    assert "Q4_K" not in language and "F16" not in language
    assert sum(language.values()) == 14 and language.get("Q5_0", 0) > 0


def test_mmproj_q8_0_keeps_the_embeddings_the_converter_forces_to_f32(tiny_ggufs):
    before = gguf.matrix_types_per_role(tiny_ggufs["mmproj-f16"])["vision"]
    after = gguf.matrix_types_per_role(tiny_ggufs["mmproj-q8_0"])
    assert after["projector"] == {"Q8_0": 1}
    assert after["vision"].get("F32", 0) == before.get("F32", 0) > 0
    assert after["vision"]["Q8_0"] == before["F16"]


def test_a_family_the_converter_does_not_know_is_refused_with_its_reason(
    llama_cpp_and_converter, tiny_family_dirs, tmp_path
):
    with pytest.raises(
        UserError, match=r"text model .*Model PaliGemmaForConditionalGeneration is not supported"
    ):
        gguf_converter.convert(tiny_family_dirs["paligemma"], tmp_path / "text.gguf", mmproj=False)
    assert not (tmp_path / "text.gguf").exists()


def test_a_shallow_qwen2_vl_tower_converts_and_runs_an_image_in_libmtmd(
    llama_cpp_and_converter, tiny_vlm_dirs, tmp_path
):
    # The tiny tower has 1 block; the converter names the projector's layer 2 from the per-block table.
    checkpoint = tiny_vlm_dirs["qwen2_vl"]
    text = gguf_converter.convert(checkpoint, tmp_path / "text.gguf", mmproj=False)
    mmproj = gguf_converter.convert(checkpoint, tmp_path / "mmproj.gguf", mmproj=True)
    assert gguf.matrix_types_per_role(mmproj)["projector"] == {"F16": 2}  # merger.mlp.0 and .2
    check = load_check(text, mmproj)
    assert check.ok and check.reason is None
    assert check.image_tokens > 0


def test_gemma3_tower_saved_by_transformers_5_converts(llama_cpp_and_converter, tiny_family_dirs, tmp_path):
    # transformers 5 saves the SigLIP tower without its ``vision_model.`` level; the Hub's files have it.
    mmproj = gguf_converter.convert(tiny_family_dirs["gemma3"], tmp_path / "mmproj.gguf", mmproj=True)
    roles = gguf.matrix_types_per_role(mmproj)
    assert sum(roles["vision"].values()) > 0 and roles["projector"]


def test_tiny_idefics3_runs_an_image_in_libmtmd(tiny_ggufs):
    # libmtmd's Idefics3 image template looks up "\n\n" as one token; the tiny tokenizer has it ("ĊĊ").
    check = load_check(tiny_ggufs["text-q8_0"], tiny_ggufs["mmproj-f16"])
    assert check.ok and check.image_tokens > 0, check.reason


def test_a_llamacpp_abort_is_reported_with_its_assert_line():
    stderr = "llama_model_loader: loaded\n/src/tools/mtmd/mtmd-helper.cpp:226: GGML_ASSERT(idx >= 0) failed\n"
    reason = _reason(-signal.SIGABRT, stderr, None)
    assert re.fullmatch(r"killed by SIGABRT: .*GGML_ASSERT\(idx >= 0\) failed", reason)
    assert _reason(1, "", "mtmd_init_from_file failed") == "mtmd_init_from_file failed"


def test_a_text_gguf_given_as_mmproj_fails_at_the_mmproj_stage(tiny_ggufs):
    check = load_check(tiny_ggufs["text-q8_0"], tiny_ggufs["text-q8_0"])
    assert check.stage == STAGES[0] and check.image_tokens is None
    assert check.reason.startswith("mtmd_init_from_file failed")


def test_families_page_has_one_row_per_tiny_family():
    rows = re.findall(r"^\| `([a-z0-9_]+)` \|", FAMILIES_PAGE.read_text(), flags=re.MULTILINE)
    assert sorted(rows) == sorted(TINY_FAMILIES)


def test_missing_converter_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("VLMQ_GGUF_CONVERTER", str(tmp_path / "absent"))
    with pytest.raises(UserError, match="install_gguf_converter.py"):
        gguf_converter.convert(tmp_path, tmp_path / "x.gguf", mmproj=False)


def test_unknown_preset_is_refused(tmp_path):
    with pytest.raises(UserError, match="gguf-q4_k_m"):
        gguf.quantize(tmp_path / "a.gguf", tmp_path / "b.gguf", "gguf-q2")


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("v.blk.0.attn_q.weight", "vision"),
        ("mm.model.fc.weight", "projector"),
        ("token_embd.weight", "embedding"),
        ("output.weight", "lm_head"),
        ("output_norm.weight", "language"),
        ("blk.3.ffn_down.weight", "language"),
    ],
)
def test_tensor_role_from_llamacpp_names(name, role):
    assert gguf.tensor_role(name) == role
