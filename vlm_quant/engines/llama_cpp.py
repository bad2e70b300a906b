"""The llama.cpp engine: one image-prompt in, greedy tokens + time stamps out, through llama-cpp-python's
bindings to libllama (the text model GGUF) and libmtmd (the vision tower + projector, "mmproj" GGUF).

A sibling of the torch engines (`engines.generate`): the prompt is the same chat template rendered by the
checkpoint's processor, with the image placeholder replaced by libmtmd's media marker (libmtmd writes the
family's image tokens itself, e.g. ``<fake_token_around_image><global-img>`` for Idefics3); decoding is
greedy (argmax of the last logits, the EOS tokens suppressed until ``min_new_tokens``); the new token ids
are decoded to text by the processor's tokenizer, so both engines' text goes through one decoder.

Where llama.cpp differs from the processor, and it is said in the run's params:

- **Image preprocessing** is llama.cpp's own (``mtmd_tokenize``): for Idefics3/SmolVLM an overview image
  resized to the tile size plus tiles of the image resized to a multiple of it. libmtmd has no
  "no splitting" mode: with ``image_max_tokens`` = one tile's tokens a 640x480 image becomes the overview
  and one tile (128 image tokens, where the processor with splitting off makes 64). Its preprocessed
  pixels are not exposed by the bindings, so the engine reports the image token counts, not a pixel
  difference.
- **Timing** follows the torch engine's cost pass: ``preprocess`` = bitmap + ``mtmd_tokenize`` (image
  resize and slicing, text tokenization); ``ttft`` = ``mtmd_helper_eval_chunks`` (vision encoding +
  prefill) and the first argmax; each later token is stamped after its ``llama_decode`` and argmax.
  llama.cpp's own counters (``llama_perf_context``: prompt eval and eval ms) are read per call beside.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

DEFAULT_CONTEXT = 4096  # tokens: SmolVLM at full tiling is ~900 positions + the answer
GGML_LOG_LEVEL_WARN = 3  # ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continuation

log = logging.getLogger(__name__)
_log_callbacks: list[Any] = []  # ctypes callbacks must outlive every call into the libraries


def quiet_llama_cpp_logs() -> None:
    """Route libllama's and libmtmd's log lines (hundreds per model load, on stderr by default) to this
    module's logger: warnings and errors as WARNING, the rest as DEBUG (they stay in the run's log)."""
    if _log_callbacks:
        return
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    def forward(level: int, text: bytes, _user_data: Any) -> None:
        line = text.decode(errors="replace").rstrip()
        if line:
            log.log(logging.WARNING if level in (GGML_LOG_LEVEL_WARN, 4) else logging.DEBUG, "%s", line)

    callback = llama_cpp.llama_log_callback(forward)
    _log_callbacks.append(callback)
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    mtmd.mtmd_log_set(callback, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(callback, ctypes.c_void_p(0))  # the helpers' "encoding image slice..." lines


@dataclass(frozen=True)
class LlamaCppTimings:
    """One generation's time stamps (seconds, one clock) and llama.cpp's own counters for it.

    ``token_stamps_s``: the clock after each new token's logits were read (token 1 after prefill)."""

    start_s: float
    tokenized_s: float
    token_stamps_s: tuple[float, ...]
    end_s: float
    llama_prompt_eval_ms: float  # llama_perf_context t_p_eval_ms (text model only; the image encoder not)
    llama_prompt_tokens: int
    llama_eval_ms: float  # t_eval_ms: the decode steps
    llama_eval_tokens: int


@dataclass(frozen=True)
class LlamaCppGeneration:
    """New token ids (up to and including EOS), image tokens libmtmd made, and the timings."""

    token_ids: list[int]
    image_tokens: int
    positions: int  # prompt + image positions evaluated before the first new token
    timings: LlamaCppTimings


@dataclass
class LlamaCppEngine:
    """A loaded text GGUF + mmproj GGUF on the CPU, ``threads`` threads (``close()`` frees them)."""

    text_gguf: Path
    mmproj_gguf: Path
    threads: int
    image_max_tokens: int = 0  # 0: libmtmd's default tiling
    n_ctx: int = DEFAULT_CONTEXT
    _handles: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        self._llama, self._mtmd = llama_cpp, mtmd
        quiet_llama_cpp_logs()
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = 0
        model = llama_cpp.llama_model_load_from_file(str(self.text_gguf).encode(), model_params)
        if not model:
            raise RuntimeError(f"llama.cpp could not load {self.text_gguf}")
        self._handles["model"] = model
        context_params = llama_cpp.llama_context_default_params()
        context_params.n_ctx = self.n_ctx
        context_params.n_batch = self.n_ctx  # the whole prompt + image in one batch
        context_params.n_ubatch = 512
        context_params.n_threads = context_params.n_threads_batch = self.threads
        context_params.no_perf = False  # llama.cpp's own timings are logged beside ours
        context = llama_cpp.llama_init_from_model(model, context_params)
        if not context:
            raise RuntimeError("llama.cpp could not create a context")
        self._handles["context"] = context
        mtmd_params = mtmd.mtmd_context_params_default()
        mtmd_params.use_gpu = False
        mtmd_params.n_threads = self.threads
        mtmd_params.print_timings = False
        if self.image_max_tokens:
            mtmd_params.image_max_tokens = self.image_max_tokens
        projector = mtmd.mtmd_init_from_file(str(self.mmproj_gguf).encode(), model, mtmd_params)
        if not projector or not mtmd.mtmd_support_vision(projector):
            self.close()
            raise RuntimeError(f"libmtmd could not load the vision projector {self.mmproj_gguf}")
        self._handles["mtmd"] = projector
        vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
        self.eog_ids = [i for i in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)]
        self.marker = mtmd.mtmd_default_marker().decode()

    # --- prompts -----------------------------------------------------------------------------------

    def prompt(self, rendered: str, image_placeholder: str) -> str:
        """The processor's rendered chat prompt with its image placeholder replaced by libmtmd's marker."""
        if image_placeholder not in rendered:
            raise ValueError(f"the rendered prompt has no image placeholder {image_placeholder!r}")
        return rendered.replace(image_placeholder, self.marker, 1)

    # --- generation -------------------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        image: Image.Image,
        *,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> LlamaCppGeneration:
        """Greedy tokens for one image-prompt (stops after an EOS token once ``min_new_tokens`` are made)."""
        llama = self._llama
        llama.llama_perf_context_reset(self._handles["context"])
        start = clock()
        chunks, image_tokens = self._tokenize(prompt, image)
        tokenized = clock()
        try:
            positions = self._evaluate(chunks)
        finally:
            self._mtmd.mtmd_input_chunks_free(chunks)
        stamps, tokens = [], []
        while len(tokens) < max_new_tokens:
            token = self._argmax(-1, suppress_eos=len(tokens) < min_new_tokens)
            tokens.append(token)
            stamps.append(clock())
            if token in self.eog_ids and len(tokens) >= min_new_tokens or len(tokens) == max_new_tokens:
                break
            self._decode([token], positions + len(tokens) - 1, all_logits=False)
        end = clock()
        perf = llama.llama_perf_context(self._handles["context"])
        timings = LlamaCppTimings(
            start,
            tokenized,
            tuple(stamps),
            end,
            float(perf.t_p_eval_ms),
            int(perf.n_p_eval),
            float(perf.t_eval_ms),
            int(perf.n_eval),
        )
        return LlamaCppGeneration(tokens, image_tokens, positions, timings)

    def continuation_log_probs(self, prompt: str, image: Image.Image, continuation: list[int]) -> np.ndarray:
        """(len(continuation), vocab) float32 log-probabilities, teacher-forced: row k predicts
        ``continuation[k]`` after the prompt and ``continuation[:k]`` (the fidelity pass's positions)."""
        chunks, _ = self._tokenize(prompt, image)
        try:
            positions = self._evaluate(chunks)
        finally:
            self._mtmd.mtmd_input_chunks_free(chunks)
        rows = [self._logits(-1)]
        if len(continuation) > 1:
            self._decode(continuation[:-1], positions, all_logits=True)
            rows += [self._logits(i) for i in range(len(continuation) - 1)]
        logits = np.stack(rows).astype(np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        return (shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))).astype(np.float32)

    def image_tokens(self, prompt: str, image: Image.Image) -> int:
        """How many image tokens libmtmd makes of ``image`` (tokenization only, nothing evaluated)."""
        chunks, image_tokens = self._tokenize(prompt, image)
        self._mtmd.mtmd_input_chunks_free(chunks)
        return image_tokens

    def close(self) -> None:
        """Free libmtmd's, the context's and the model's memory (idempotent)."""
        if projector := self._handles.pop("mtmd", None):
            self._mtmd.mtmd_free(projector)
        if context := self._handles.pop("context", None):
            self._llama.llama_free(context)
        if model := self._handles.pop("model", None):
            self._llama.llama_model_free(model)

    # --- libmtmd / libllama calls -----------------------------------------------------------------

    def _tokenize(self, prompt: str, image: Image.Image) -> tuple[Any, int]:
        """libmtmd's chunks of ``prompt`` with ``image`` at the marker, and how many image tokens it made."""
        mtmd = self._mtmd
        rgb = image.convert("RGB")
        data = rgb.tobytes()
        bitmap = mtmd.mtmd_bitmap_init(
            rgb.width, rgb.height, (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        )
        text = mtmd.mtmd_input_text()
        encoded = prompt.encode()
        text.text, text.text_len, text.add_special, text.parse_special = encoded, len(encoded), True, True
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            status = mtmd.mtmd_tokenize(
                self._handles["mtmd"], chunks, ctypes.byref(text), (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap), 1
            )
        finally:
            mtmd.mtmd_bitmap_free(bitmap)
        if status != 0:
            mtmd.mtmd_input_chunks_free(chunks)
            raise RuntimeError(f"libmtmd could not tokenize the prompt and image (status {status})")
        image_tokens = 0
        for index in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, index)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                image_tokens += int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
        return chunks, image_tokens

    def _evaluate(self, chunks: Any) -> int:
        """A fresh KV cache, then vision encoding + prefill of every chunk; the positions evaluated."""
        llama = self._llama
        context = self._handles["context"]
        llama.llama_memory_clear(llama.llama_get_memory(context), True)
        positions = llama.llama_pos(0)
        status = self._mtmd.mtmd_helper_eval_chunks(
            self._handles["mtmd"], context, chunks, 0, 0, self.n_ctx, True, ctypes.byref(positions)
        )
        if status != 0:
            raise RuntimeError(f"libmtmd could not evaluate the prompt and image (status {status})")
        return int(positions.value)

    def _decode(self, tokens: list[int], first_position: int, *, all_logits: bool) -> None:
        llama = self._llama
        batch = llama.llama_batch_init(len(tokens), 0, 1)
        try:
            for i, token in enumerate(tokens):
                batch.token[i] = token
                batch.pos[i] = first_position + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = all_logits or i == len(tokens) - 1
            batch.n_tokens = len(tokens)
            if llama.llama_decode(self._handles["context"], batch) != 0:
                raise RuntimeError("llama_decode failed")
        finally:
            llama.llama_batch_free(batch)

    def _logits(self, index: int) -> np.ndarray:
        pointer = self._llama.llama_get_logits_ith(self._handles["context"], index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()

    def _argmax(self, index: int, *, suppress_eos: bool) -> int:
        logits = self._logits(index)
        if suppress_eos and self.eog_ids:
            logits[self.eog_ids] = -np.inf
        return int(logits.argmax())
