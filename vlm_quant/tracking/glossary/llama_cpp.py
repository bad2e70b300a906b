"""What a run of a gguf-* preset (the llama.cpp engine, docs/gguf.md) logs beyond the torch runs' names."""

from __future__ import annotations

from vlm_quant.tracking.glossary.term import Term

LLAMA_CPP_METRICS: tuple[Term, ...] = (
    Term(
        ("llama_cpp_prompt_eval_ms_<stat>",),
        "ms",
        "llama.cpp's own counter (`llama_perf_context` t_p_eval_ms) over the cost pass's timed calls: the "
        "text model's evaluation of prompt + image embeddings, beside our `ttft_ms` of the same calls",
    ),
    Term(
        ("llama_cpp_decode_ms_per_token_<stat>",),
        "ms/token",
        "llama.cpp's own counter t_eval_ms / n_eval of the same calls, beside our `decode_ms_per_token`",
    ),
    Term(
        ("gguf_convert_s",),
        "s",
        "llama.cpp's converter writing the F16 text and mmproj GGUFs in this run (absent when cached); the "
        "quantizer's time is `quantize_time_s`",
    ),
)
LLAMA_CPP_TAGS: tuple[Term, ...] = (
    Term(
        ("vlm_quant.fidelity_roles_absent_reason",),
        "text",
        "why the role cosines are absent from a llama.cpp run's fidelity: only next-token logits are exposed",
    ),
    Term(
        ("vlm_quant.gguf_convert_absent_reason", "vlm_quant.quantize_time_absent_reason"),
        "text",
        "why `gguf_convert_s` / `quantize_time_s` are absent: the GGUF files came from the cache",
    ),
    Term(
        ("vlm_quant.cost_absent_bs<B>",),
        "text",
        "why a cost batch size has no metrics (the llama.cpp engine generates one image-prompt at a time)",
    ),
)
LLAMA_CPP_ARTIFACTS: tuple[Term, ...] = (
    Term(
        ("precision/gguf_tensor_types.json",),
        "JSON",
        "a gguf-* run's audit: per role, the GGML type of every weight matrix and other tensor read back "
        "from the two files, their bytes, and the files (path, size, from the cache or not)",
    ),
)
