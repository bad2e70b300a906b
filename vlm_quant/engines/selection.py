"""Choose the generation engine that will really run, falling back with a logged reason.

The compiled engine (static KV cache + torch.compile) is probed once on a real request before the
quality pass; if the model family or a quantization backend cannot run it, the run continues with
the eager engine and says why (params `engine_resolved`, `engine_note`), so a comparison never
silently mixes engines.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from vlm_quant.engines.generate import GenerationSettings, Request, generate


def resolve_engine(
    model: Any, processor: Any, probe: Request, settings: GenerationSettings, dtype: torch.dtype
) -> tuple[GenerationSettings, str]:
    """The settings to use and a note on what the engine is on this device."""
    if settings.engine == "eager":
        return settings, "eager: transformers generate() with a dynamic KV cache"
    probe_settings = dataclasses.replace(settings, max_new_tokens=2, min_new_tokens=2)
    try:
        generate(model, processor, [probe], probe_settings, dtype=dtype)
    except Exception as exc:  # any failure of the compiled path means: this model cannot use it
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return dataclasses.replace(
            settings, engine="eager"
        ), f"compiled engine unavailable ({reason}); fell back to eager"
    on_cuda = next(model.parameters()).device.type == "cuda"
    note = (
        "static KV cache + torch.compile of the decode step (CUDA graphs)"
        if on_cuda
        else "static KV cache; transformers compiles only on accelerators, so no torch.compile on CPU"
    )
    return settings, f"compiled: {note}"
