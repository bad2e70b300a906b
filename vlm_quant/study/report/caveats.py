"""Runs whose numbers carry a caveat: marked in every table, kept off the Pareto front by default.

The caveats are read from what a run logged:

* resumed: the run was reopened after an interruption (tag ``vlm_quant.resume_count`` > 0, or metric
  ``n_samples_resumed`` > 0): its quality-pass energy and time cover the last attempt only;
* OOM back-off: the quality pass ran out of memory and lowered its batch size (``oom_retries`` > 0),
  so it did not run at the configured batch size throughout;
* engine fallback: the requested engine could not run (param ``engine_resolved`` differs from
  ``engine``), so the run measured another engine than the one its configuration names; a gguf-* run's
  ``llama.cpp`` is its preset's engine, not a fallback;
* llama.cpp (a gguf-* preset): llama.cpp's multimodal library preprocessed the images itself (params
  ``gguf_image_tokens`` against ``processor_image_tokens``), so its quality and fidelity change include
  that preprocessing. It marks the run but keeps it on the Pareto front: the engine is the configuration.
* compute dtype differs from the baseline's: a run with a quantized role whose other roles computed in
  another dtype (param ``dtype``) than the baseline's (an AutoRound run on CPU computes in bfloat16
  against a float32 baseline), so its quality change mixes that dtype change into the quantization
  effect. It needs the baseline: `with_baseline` writes the baseline's dtype into the runs frame.
* image side below the task's need (tag ``vlm_quant.image_side_caveat``): the dataset declares that
  its inputs need a longer image side than the run's ``max_image_side`` (DocVQA pages: 2048 px), so its
  scores are a lower bound of the model's. It marks the run but keeps it on the Pareto front: every
  run of such a study usually shares it, and it says nothing about one configuration against another.
* shared host (tag ``vlm_quant.codecarbon_shared``, set by a parallel sweep): other children of the
  sweep ran on the same host at the same time, so codecarbon's machine-wide CPU/RAM energy includes
  their load (NVML GPU energy is per board and stays the run's own), and its CPU timings shared the
  cores. It marks the run but keeps it on the Pareto front.

Each has its own footnote symbol (Markdown/HTML and LaTeX) and one legend line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from vlm_quant.quantize.presets import LLAMA_CPP
from vlm_quant.study.report.precision_labels import is_unquantized, realized_precisions
from vlm_quant.tracking.run_schema import TAG_CODECARBON_SHARED, TAG_IMAGE_SIDE_CAVEAT
from vlm_quant.tracking.tracker import TAG_RESUMED

BASELINE_DTYPE = "baseline_dtype"  # runs-frame column written by `with_baseline`


@dataclass(frozen=True)
class Caveat:
    """One kind of caveat and how the tables show it."""

    key: str  # stable name, written to results.csv
    mark: str  # Markdown / HTML footnote symbol
    mark_tex: str  # the same symbol in LaTeX (math mode)
    legend: str  # one sentence, printed under every table that shows the mark
    off_front: bool = True  # a run with it is kept off the Pareto front (unless caveats are included)


RESUMED = Caveat(
    "resumed",
    "‡",
    r"$^\ddagger$",
    "resumed after an interruption: quality-pass energy and time cover the last attempt only",
)
OOM_BACKOFF = Caveat(
    "oom_backoff",
    "§",
    r"$^\S$",
    "out-of-memory back-off lowered the quality-pass batch size (oom_retries > 0)",
)
ENGINE_FALLBACK = Caveat(
    "engine_fallback",
    "¶",
    r"$^\P$",
    "the requested engine fell back to another one (engine_resolved differs from engine)",
)
MIXED_DTYPE = Caveat(
    "mixed_dtype",
    "‖",
    r"$^\|$",
    "its unquantized roles computed in another dtype (param dtype) than the baseline's: its quality "
    "change mixes that dtype change into the quantization effect",
)
IMAGE_SIDE = Caveat(
    "image_side",
    "°",
    r"$^\circ$",
    "max_image_side is below the image side the dataset's inputs need (tag vlm_quant.image_side_caveat): "
    "small print may be unreadable, so its scores are a lower bound of the model's",
    off_front=False,
)
SHARED_HOST = Caveat(
    "shared_host",
    "♯",
    r"$^\sharp$",
    "other sweep children ran on the same host at the same time (tag vlm_quant.codecarbon_shared): "
    "codecarbon's CPU+RAM energy is the whole machine's and includes theirs (GPU energy is its own board's)",
    off_front=False,
)
LLAMA_CPP_INPUTS = Caveat(
    "llama_cpp_inputs",
    "⋆",
    r"$^\star$",
    "ran on llama.cpp (a gguf-* preset), whose multimodal library preprocesses images itself (params "
    "gguf_image_tokens vs processor_image_tokens): its changes include that preprocessing",
    off_front=False,
)
CAVEATS = (RESUMED, OOM_BACKOFF, ENGINE_FALLBACK, MIXED_DTYPE, IMAGE_SIDE, SHARED_HOST, LLAMA_CPP_INPUTS)
BY_KEY = {c.key: c for c in CAVEATS}


def run_caveats(row: Mapping | pd.Series) -> tuple[Caveat, ...]:
    """The caveats of one runs-frame row, in `CAVEATS` order."""
    found = []
    if _number(row.get(f"tags.{TAG_RESUMED}")) > 0 or _number(row.get("metrics.n_samples_resumed")) > 0:
        found.append(RESUMED)
    if _number(row.get("metrics.oom_retries")) > 0:
        found.append(OOM_BACKOFF)
    requested, resolved = row.get("params.engine"), row.get("params.engine_resolved")
    on_llama_cpp = resolved == LLAMA_CPP
    fell_back = isinstance(requested, str) and isinstance(resolved, str) and requested != resolved
    if fell_back and not on_llama_cpp:
        found.append(ENGINE_FALLBACK)
    if mixed_dtype(row):
        found.append(MIXED_DTYPE)
    side = row.get(f"tags.{TAG_IMAGE_SIDE_CAVEAT}")
    if isinstance(side, str) and side:
        found.append(IMAGE_SIDE)
    shared = row.get(f"tags.{TAG_CODECARBON_SHARED}")
    if isinstance(shared, str) and shared:
        found.append(SHARED_HOST)
    if on_llama_cpp:
        found.append(LLAMA_CPP_INPUTS)
    return tuple(found)


def with_baseline(runs: pd.DataFrame, baseline_run_id: str | None) -> pd.DataFrame:
    """A copy of ``runs`` with the baseline's compute dtype in column `BASELINE_DTYPE` (None: no baseline)."""
    out = runs.copy()
    dtypes = out.loc[out["run_id"] == baseline_run_id, "params.dtype"] if "params.dtype" in out else []
    out[BASELINE_DTYPE] = next((d for d in dtypes if isinstance(d, str) and d), None)
    return out


def mixed_dtype(row: Mapping | pd.Series) -> bool:
    """A pretrained run holding a quantized role whose compute dtype (param ``dtype``) differs from the
    baseline's (`with_baseline`). A run with no quantized role (bf16 against fp16) is its own dtype
    change, which its label already says."""
    dtype, baseline = row.get("params.dtype"), row.get(BASELINE_DTYPE)
    if not (isinstance(dtype, str) and isinstance(baseline, str)) or dtype == baseline:
        return False
    realized = realized_precisions(row)
    return row.get("weights") != "random" and realized is not None and not is_unquantized(realized)


def caveat_keys(runs: pd.DataFrame) -> list[str]:
    """Per run: its caveat keys joined by ``,`` ("" when none), the ``caveats`` column of results.csv."""
    return [",".join(c.key for c in run_caveats(row)) for _, row in runs.iterrows()]


def keeps_off_front(keys: str) -> bool:
    """Whether a ``caveat_keys`` cell holds a caveat that keeps its run off the Pareto front."""
    return any(c.off_front for c in parse_keys(keys))


def parse_keys(keys: str) -> tuple[Caveat, ...]:
    """The caveats of a ``caveat_keys`` cell."""
    return tuple(BY_KEY[key] for key in keys.split(",") if key) if isinstance(keys, str) else ()


def marks(keys: str, tex: bool = False) -> str:
    """The footnote symbols of a ``caveat_keys`` cell, to append to the configuration's label."""
    return "".join(c.mark_tex if tex else c.mark for c in parse_keys(keys))


def row_marks(row: Mapping | pd.Series, tex: bool = False) -> str:
    """The footnote symbols of one runs-frame row (`run_caveats`)."""
    return "".join(c.mark_tex if tex else c.mark for c in run_caveats(row))


def legend(keys: list[str], tex: bool = False) -> list[str]:
    """One legend line per caveat that occurs in ``keys`` (symbol, then sentence)."""
    present = {c.key for cell in keys for c in parse_keys(cell)}
    return [f"{c.mark_tex if tex else c.mark} {c.legend}" for c in CAVEATS if c.key in present]


def _number(value: object) -> float:
    try:
        number = float(value)  # tags are strings, metrics floats
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if pd.isna(number) else number
