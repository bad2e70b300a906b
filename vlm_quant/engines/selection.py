"""Choose the generation engine that will really run, and label it by what was observed.

The compiled engine (static KV cache + torch.compile of the decode step) is probed once on a real
request before the quality pass. transformers decides on its own whether to compile: only on
accelerators, and not for some quantization backends or offloaded models, without raising. So the
label comes from what the probe did, not from what was asked (params `engine_resolved`, `engine_note`):

- ``compiled``: torch.compile produced at least one graph during the probe;
- ``static-cache``: the static KV cache ran but nothing was compiled (always the case on CPU); the
  rest of the run then disables compilation explicitly, so the label stays true;
- ``eager``: asked for, or the compiled path failed (the reason is in the note).

A comparison therefore never silently mixes engines.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from vlm_quant.engines.generate import GenerationSettings, Request, generate


def compiled_graphs() -> int:
    """How many graphs torch.compile (dynamo) has produced in this process so far.

    Read from dynamo's own counters (``torch._dynamo.utils.counters["stats"]["unique_graphs"]``, which
    torch increments on every new compiled graph, recompilations included); 0 where that is absent.
    """
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # a torch without dynamo compiles nothing
        return 0
    return int(counters["stats"]["unique_graphs"])


def resolve_engine(
    model: Any, processor: Any, probe: Request, settings: GenerationSettings, dtype: torch.dtype
) -> tuple[GenerationSettings, str]:
    """The settings to use (``engine`` is what will really run) and a note on what ran and why."""
    if settings.engine != "compiled":
        return settings, "eager: transformers generate() with a dynamic KV cache"
    probe_settings = dataclasses.replace(settings, max_new_tokens=2, min_new_tokens=2)
    graphs_before = compiled_graphs()
    try:
        generate(model, processor, [probe], probe_settings, dtype=dtype)
    except Exception as exc:  # any failure of the compiled path means: this model cannot use it
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return dataclasses.replace(
            settings, engine="eager"
        ), f"compiled engine unavailable ({reason}); fell back to eager"
    new_graphs = compiled_graphs() - graphs_before
    if new_graphs > 0:
        return settings, (
            f"compiled: static KV cache + torch.compile of the decode step ({new_graphs} graph(s) compiled "
            "by the probe)"
        )
    device = next(model.parameters()).device.type
    why = (
        "transformers compiles only on accelerators"
        if device not in ("cuda", "xpu")
        else "transformers skipped compilation (e.g. a quantization backend it cannot compile)"
    )
    return dataclasses.replace(settings, engine="static-cache"), (
        f"static-cache: static KV cache without torch.compile on {device} ({why}; no graph was compiled "
        "by the probe), compilation disabled for the run"
    )
