"""Can llama.cpp load a converted text + mmproj pair, and run one image through it? Asked in a child.

`load_check(text, mmproj)` runs this module as a child process that loads the text model
(``llama_model_load_from_file``), the mmproj beside it in libmtmd (``mtmd_init_from_file``), tokenizes a
prompt holding one synthetic 640x480 image (``mtmd_tokenize``) and evaluates it (``mtmd_helper_eval_chunks``:
the vision tower encodes the image, the text model decodes prompt + image embeddings). A child, because
llama.cpp stops the whole process on a failed ``GGML_ASSERT``: the parent reads the child's exit status
and llama.cpp's own last error line (its log goes to stderr) instead of dying with it.

Usage of the child: ``python -m vlm_quant.quantize.gguf_load_check TEXT_GGUF MMPROJ_GGUF``; its last
stdout line is a JSON object with the stage it reached.
"""

from __future__ import annotations

import ctypes
import json
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# The stages the child reports, in order; the last one means the image went through.
STAGES = ("text model loaded", "mmproj loaded", "image tokenized", "image evaluated")
IMAGE_SIZE_PX = (640, 480)  # a COCO-like landscape image: families that tile split it as they would COCO's
CONTEXT_TOKENS = 4096
# llama.cpp's log lines that say why it stopped (others are progress and hyper-parameters).
_FAILURE = re.compile(r"GGML_ASSERT|error|failed|unknown|not supported|abort", re.IGNORECASE)


@dataclass(frozen=True)
class LoadCheck:
    """What llama.cpp did with the pair: the last stage reached (None: not even the text model loaded),
    the image tokens libmtmd made of the one image (None when it was not tokenized), and why it stopped
    (None when every stage passed), in llama.cpp's own words where it gave any."""

    stage: str | None
    image_tokens: int | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.stage == STAGES[-1]


def load_check(text: Path, mmproj: Path, *, timeout_s: float = 600.0) -> LoadCheck:
    """Load ``text`` + ``mmproj`` in libmtmd and run one image through them, in a child process."""
    command = [sys.executable, "-m", "vlm_quant.quantize.gguf_load_check", str(text), str(mmproj)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return LoadCheck(None, None, f"timed out after {timeout_s:.0f} s")
    report = _last_json_line(done.stdout)
    stage, tokens = report.get("stage"), report.get("image_tokens")
    if done.returncode == 0 and stage == STAGES[-1]:
        return LoadCheck(stage, tokens, None)
    return LoadCheck(stage, tokens, _reason(done.returncode, done.stderr, report.get("failed")))


def _last_json_line(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def _reason(returncode: int, stderr: str, failed_call: str | None) -> str:
    lines = [line.strip() for line in stderr.splitlines() if _FAILURE.search(line)]
    said = lines[-1] if lines else ""
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}" + (f": {said}" if said else "")
    return "; ".join(part for part in (failed_call, said) if part) or f"exit status {returncode}"


def _child(text: str, mmproj: str) -> None:
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd
    from PIL import Image

    report: dict = {"stage": None, "image_tokens": None}

    def reached(stage: str) -> None:
        report["stage"] = stage
        print(json.dumps(report), flush=True)  # flushed now: an abort later must not lose it

    def failed(call: str) -> None:
        report["failed"] = f"{call} failed"
        print(json.dumps(report), flush=True)
        sys.exit(1)

    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(text.encode(), llama_cpp.llama_model_default_params())
    if not model:
        failed("llama_model_load_from_file")
    reached(STAGES[0])
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_threads = CONTEXT_TOKENS, 512, 1
    context = llama_cpp.llama_init_from_model(model, params)
    if not context:
        failed("llama_init_from_model")
    mtmd_params = mtmd.mtmd_context_params_default()
    mtmd_params.use_gpu, mtmd_params.n_threads = False, 1
    vision = mtmd.mtmd_init_from_file(mmproj.encode(), model, mtmd_params)
    if not vision:
        failed("mtmd_init_from_file")
    reached(STAGES[1])
    image = Image.radial_gradient("L").resize(IMAGE_SIZE_PX).convert("RGB")
    pixels = image.tobytes()
    bitmap = mtmd.mtmd_bitmap_init(*image.size, (ctypes.c_uint8 * len(pixels)).from_buffer_copy(pixels))
    text_bytes = f"{mtmd.mtmd_default_marker().decode()} describe".encode()
    prompt = mtmd.mtmd_input_text()
    prompt.text, prompt.text_len = text_bytes, len(text_bytes)
    prompt.add_special, prompt.parse_special = True, True
    chunks = mtmd.mtmd_input_chunks_init()
    bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
    if mtmd.mtmd_tokenize(vision, chunks, ctypes.byref(prompt), bitmaps, 1) != 0:
        failed("mtmd_tokenize")
    report["image_tokens"] = sum(
        mtmd.mtmd_input_chunk_get_n_tokens(mtmd.mtmd_input_chunks_get(chunks, index))
        for index in range(mtmd.mtmd_input_chunks_size(chunks))
        if mtmd.mtmd_input_chunk_get_type(mtmd.mtmd_input_chunks_get(chunks, index))
        == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE
    )
    reached(STAGES[2])
    n_past = llama_cpp.llama_pos(0)
    if mtmd.mtmd_helper_eval_chunks(vision, context, chunks, 0, 0, 512, True, ctypes.byref(n_past)) != 0:
        failed("mtmd_helper_eval_chunks")
    reached(STAGES[3])


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
