"""Regenerate docs/gguf_families.md: which VLM families llama.cpp's converter turns into GGUF (text model
and mmproj), and whether llama.cpp then loads the pair in libmtmd and runs an image through it.

For every family of the test suite's tiny models (tests/tiny_vlms.py, the models of the ``tiny_vlm_dirs``
and ``tiny_family_dirs`` fixtures) it saves the tiny checkpoint, runs
``gguf_converter.convert(..., mmproj=False)`` and ``(..., mmproj=True)``, and when both convert runs
``gguf_load_check.load_check`` (a child process: an abort of llama.cpp is reported, not inherited).
``--real MODEL_ID`` (repeatable) adds a row for a real architecture with random weights
(``materialize_random_checkpoint(MODEL_ID, seed=0)`` into a temporary folder, deleted afterwards; several
GB and minutes for a 2B model).

Usage: ``VLMQ_GGUF_CONVERTER=... python tools/write_gguf_families.py [--real Qwen/Qwen2-VL-2B-Instruct]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "gguf_families.md"
sys.path.insert(0, str(REPO / "tests"))  # the tiny models' builder, shared with the test fixtures

from tiny_vlms import TINY_FAMILIES, build_tiny_vlm  # noqa: E402

from vlm_quant.errors import UserError  # noqa: E402
from vlm_quant.quantize import gguf, gguf_converter  # noqa: E402
from vlm_quant.quantize.gguf_load_check import IMAGE_SIZE_PX, STAGES, LoadCheck, load_check  # noqa: E402

# Why a row reads as it does, found by reading the converter and llama.cpp (see docs/gguf_families.md).
NOTES = {
    "idefics3": "libmtmd's Idefics3 image template looks up `\"\\n\\n\"` as one token (it aborts without "
    "it): the tiny test tokenizer and the synthetic offline tokenizer carry it, as the real SmolVLM "
    "tokenizers do.",
    "qwen2_vl": "Its mmproj converts thanks to an adaptation (`gguf_convert_child.py`): the tiny tower's "
    "single block left the converter without a name for the projector's `visual.merger.mlp.2`. The real "
    "Qwen2-VL-2B converts without it.",
    "qwen2_5_vl": "As qwen2_vl (2 tower blocks); the real Qwen2.5-VL-3B converts and runs.",
    "llava": "LLaVA-1.5's CLIP tower: the converter's `LlavaVisionModel` takes Pixtral and Mistral-3 towers "
    "only and raises on any other `vision_config.model_type`; the bundled llava-1.5-7b config says "
    "`clip_vision_model`, so the real checkpoint is refused the same way (read from the code, not run). "
    "The text model is a Llama and converts.",
    "smolvlm": "As idefics3 (same image template). Its text model converts thanks to an adaptation: a config "
    "saved by transformers 5 lacks the Hub's `text_config.architectures`.",
    "gemma3": "Its mmproj converts thanks to an adaptation: transformers 5 saves the SigLIP tower without "
    "the `vision_model.` level that the Hub's files and the converter's name table have.",
    "internvl": "The converter knows InternVL only in OpenGVLab's remote-code layout "
    "(e.g. OpenGVLab/InternVL3-2B: `vision_config.architectures` `InternVisionModel`, the text model "
    "from `llm_config`), not transformers' native `InternVLForConditionalGeneration` (the `-hf` "
    "checkpoints and these tiny models).",
    "llava_onevision": "No class of the converter registers this architecture.",
    "idefics2": "No class of the converter registers this architecture.",
    "paligemma": "No class of the converter registers this architecture.",
}


@dataclass(frozen=True)
class FamilyRow:
    """One family: its model_type and architecture, the converter's refusal of each part (None: it
    converted), and libmtmd's load check (None: not tried, because a part did not convert)."""

    name: str
    model_type: str
    architecture: str
    text_refusal: str | None
    mmproj_refusal: str | None
    load: LoadCheck | None
    seconds: float


def family_row(name: str, checkpoint: Path, out: Path) -> FamilyRow:
    """Convert both parts of ``checkpoint`` into ``out`` and, when both convert, load them in libmtmd."""
    started = time.perf_counter()
    config = json.loads((checkpoint / "config.json").read_text())
    refusals = {}
    for part, mmproj in (("text", False), ("mmproj", True)):
        try:
            gguf_converter.convert(checkpoint, out / f"{part}-f16.gguf", mmproj=mmproj)
            refusals[part] = None
        except UserError as refused:
            refusals[part] = str(refused).split(f"{checkpoint}: ", 1)[-1]
    load = None
    if refusals["text"] is None and refusals["mmproj"] is None:
        load = load_check(out / "text-f16.gguf", out / "mmproj-f16.gguf")
    return FamilyRow(
        name,
        config["model_type"],
        (config.get("architectures") or ["?"])[0],
        refusals["text"],
        refusals["mmproj"],
        load,
        time.perf_counter() - started,
    )


def tiny_rows(scratch: Path) -> list[FamilyRow]:
    rows = []
    for family in TINY_FAMILIES:
        checkpoint = build_tiny_vlm(family, scratch / "checkpoints" / family)
        rows.append(family_row(family, checkpoint, scratch / "gguf" / family))
        print(_cells(rows[-1]), flush=True)
    return rows


def real_row(model_id: str, scratch: Path) -> FamilyRow:
    from vlm_quant.models.random_weights import materialize_random_checkpoint

    with tempfile.TemporaryDirectory(dir=scratch) as own:  # several GB: gone before the next id
        checkpoint = materialize_random_checkpoint(model_id, seed=0, cache_dir=Path(own) / "random")
        row = family_row(model_id, checkpoint, Path(own) / "gguf")
    print(_cells(row), flush=True)
    return row


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _converts(refusal: str | None) -> str:
    return "yes" if refusal is None else "**no**"


def _loads(load: LoadCheck | None) -> str:
    if load is None:
        return "not tried"
    if load.ok:
        return f"yes ({load.image_tokens} image tokens)"
    return f"**no**: stopped after {load.stage or 'nothing'}"


def _reasons(row: FamilyRow) -> str:
    said = []
    if row.text_refusal:
        said.append(f"text: `{_cell(row.text_refusal)}`")
    if row.mmproj_refusal:
        said.append(f"mmproj: `{_cell(row.mmproj_refusal)}`")
    if row.load is not None and row.load.reason:
        said.append(f"libmtmd: `{_cell(_without_build_dir(row.load.reason))}`")
    return "<br>".join(said)


def _without_build_dir(reason: str) -> str:
    """llama.cpp's assert lines carry the path of the pip build folder; keep the source path only."""
    head, marker, tail = reason.partition("/vendor/llama.cpp/")
    return head.split(": /")[0] + ": " + tail if marker else reason


def _cells(row: FamilyRow) -> str:
    return (
        f"| `{row.name}` | {row.architecture} | {_converts(row.text_refusal)} | "
        f"{_converts(row.mmproj_refusal)} | {_loads(row.load)} | {_reasons(row)} |"
    )


HEADER = (
    "| family (model_type) | architecture | text converts | mmproj converts "
    "| libmtmd loads + runs an image | why not (verbatim) |\n|---|---|---|---|---|---|"
)


def render(tiny: list[FamilyRow], real: list[FamilyRow], versions: dict[str, str], seconds: float) -> str:
    import llama_cpp

    works = [row.name for row in tiny if row.load is not None and row.load.ok]
    lines = [
        "# Which VLM families llama.cpp converts and loads",
        "",
        "<!-- Generated by `python tools/write_gguf_families.py` (see its docstring). -->",
        "",
        f"llama.cpp's own converter (`convert_hf_to_gguf.py` of llama-cpp-python {llama_cpp.__version__}, "
        "with the adaptations of `vlm_quant/quantize/gguf_convert_child.py`) run on the tiny test model "
        "of each family (`tests/tiny_vlms.py`), once for the text model and once with `--mmproj` for the "
        "vision tower + projector, both at f16. When both convert, a child process loads them in libmtmd "
        "and evaluates a prompt holding one synthetic "
        f"{IMAGE_SIZE_PX[0]}x{IMAGE_SIZE_PX[1]} image (`vlm_quant/quantize/gguf_load_check.py`: stages "
        f"{', '.join(repr(stage) for stage in STAGES)}); the image tokens are libmtmd's count for that "
        "image.",
        "",
        f"Works end to end (tiny models): {', '.join(f'`{name}`' for name in works) or 'none'}.",
        "",
        HEADER,
        *(_cells(row) for row in tiny),
        "",
    ]
    if real:
        lines += [
            "Real architectures with random weights (`materialize_random_checkpoint(id, seed=0)`, "
            "the synthetic offline tokenizer):",
            "",
            HEADER,
            *(_cells(row) for row in real),
            "",
        ]
    lines += ["## Notes", ""]
    lines += [f"- `{name}`: {note}" for name, note in NOTES.items()]
    lines += [
        "",
        "## How this page was produced",
        "",
        "```",
        "VLMQ_GGUF_CONVERTER=<converter dir> python tools/write_gguf_families.py"
        + "".join(f" --real {row.name}" for row in real),
        "```",
        "",
        ", ".join(f"{name} {version}" for name, version in versions.items())
        + f"; {platform.machine()} CPU, no GPU; {seconds:.0f} s in all.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", action="append", default=[], metavar="MODEL_ID")
    args = parser.parse_args()
    for missing in (gguf.llama_cpp_missing(), gguf_converter.converter_missing()):
        if missing:
            raise SystemExit(missing)
    import llama_cpp
    import transformers

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gguf-families-") as scratch:
        tiny = tiny_rows(Path(scratch))
        real = [real_row(model_id, Path(scratch)) for model_id in args.real]
    versions = {"llama-cpp-python": llama_cpp.__version__, "transformers": transformers.__version__}
    PAGE.write_text(render(tiny, real, versions, time.perf_counter() - started))
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
