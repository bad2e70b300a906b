"""The one comparability gate every reader of a run set goes through: ``compare``, ``paper``, ``slides``.

`gate` takes the loaded runs and returns the verdict: it raises ``UserError`` when the runs may not be
compared at all (a quality refusal) and returns the reason their costs may not be tabulated side by
side (a cost refusal), or None. ``build_report`` calls it first, so every command that writes a report
(and the paper and slides written from it) refuses the same runs with the same message.

CIDEr's IDF comes from the reference set being scored, and every Δ in the report is paired per
sample: runs on different id lists, seeds, prompts, tasks, datasets or splits would produce numbers
that look comparable and are not. Nor may they differ in the model, its revision, or how it
generated (max_new_tokens, max_image_side, image_splitting, batch_size, image_processor_backend,
i.e. which pixels the model saw): a Δ would then mix a setting's effect into the quantization's.

Three sets of params, checked in this order:

* `SHARED_PARAMS` (every run, random-weight ones too, since their cost rows sit next to the
  others): a difference refuses the whole comparison;
* `QUALITY_PARAMS` (pretrained-weight runs, the ones in quality tables): refuses the whole
  comparison, since the quality tables are its core;
* `COST_PARAMS` (every run in a cost table): device, GPU, compute dtype, the engine that really ran,
  the cost pass's settings (micro-set size, warm-up, iterations, seconds, batch sizes, output
  length), the number of processes (a multi-GPU throughput is a sum), ONNX Runtime's execution
  provider, and the PUE and country behind CO2e. A difference here refuses the *cost* part only:
  quality tables, Δ, examples and appendix are still written, and the cost table, cost figures,
  power traces and every cost the paper and slides would state are replaced by the refusal message
  (`cost_refusal`). Revision is not in the cost set: a random-weight run has no revision and
  measures the same architecture.

How a param a run did not log compares:

* by default it counts as its own value ``<not logged>``, so it cannot slip through: a run that
  logged a value and one that did not are refused;
* ``distributed_world_size`` is logged by multi-process runs only: a run without it ran in one
  process and counts as world size ``1`` (`IMPLIED_WHEN_MISSING`);
* ``ort_execution_provider`` is logged only by a run with an ONNX Runtime role: a run without it
  has no provider to compare (its absence *is* the precision difference under study), so only runs
  that both used ONNX Runtime must agree on it (`ONLY_WHERE_LOGGED`);
* a gguf-* run (``engine_resolved`` ``llama.cpp``) brings its engine and libmtmd's image preprocessing
  with its preset: ``engine_resolved`` and ``image_processor_backend`` are part of its precision
  configuration and are compared only between runs that are not llama.cpp's (`PART_OF_A_GGUF_PLAN`);
  the report marks such runs (caveat ``llama_cpp_inputs``);
* a published quantized checkpoint (``quant=prequantized``) that names its ``base_model`` counts as
  that model, and its own revision is not compared (it is another repository's): the report says
  which checkpoint it was.

Numeric settings (`NUMERIC_PARAMS`) compare as numbers, so ``1`` and ``1.0`` are one PUE.
"""

from __future__ import annotations

import re

import pandas as pd

from vlm_quant.errors import UserError
from vlm_quant.tracking import run_schema as rs

MISSING = "<not logged>"
SHARED_PARAMS = rs.COMPARABILITY_PARAMS  # ids_hash, seed, prompt, task, dataset, split, shots, pope_source
GENERATION_PARAMS = (
    "model",
    "max_new_tokens",
    "max_image_side",
    "image_splitting",
    "batch_size",
    "image_processor_backend",
)
QUALITY_PARAMS = (*SHARED_PARAMS, "model", "revision", *GENERATION_PARAMS[1:])
COST_SETTINGS = (  # as the cost pass resolved and logged them (`cost_pass.CostSettings.to_params`)
    "cost_samples",
    "cost_warmup",
    "cost_iterations",
    "cost_seconds",
    "cost_new_tokens",
    "cost_batch_sizes",
)
COST_PARAMS = (
    *GENERATION_PARAMS,
    "device",
    "gpu_name",
    "dtype",
    "engine_resolved",
    *COST_SETTINGS,
    "distributed_world_size",
    "ort_execution_provider",
    "pue",
    "country_iso_code",
)
IMPLIED_WHEN_MISSING = {"distributed_world_size": "1"}  # single-process runs do not log it
ONLY_WHERE_LOGGED = ("ort_execution_provider",)  # logged by runs with an ONNX Runtime role only
PART_OF_A_GGUF_PLAN = ("engine_resolved", "image_processor_backend")  # set by a gguf-* preset itself
NUMERIC_PARAMS = (
    "max_new_tokens",
    "max_image_side",
    "batch_size",
    "cost_samples",
    "cost_warmup",
    "cost_iterations",
    "cost_seconds",
    "cost_new_tokens",
    "distributed_world_size",
    "pue",
)
COST_REFUSAL_PREFIX = "cost not compared: "


def gate(runs: pd.DataFrame) -> str | None:
    """The verdict on a loaded run set: raise ``UserError`` on a quality refusal, else return the cost
    refusal (`cost_refusal`: why the costs may not be tabulated side by side), None when they may."""
    check_quality_comparable(runs)
    refusal = cost_refusal(runs)
    if refusal is not None and "weights" in runs.columns and (runs["weights"] == "random").all():
        # Random-weight runs are cost-only: with their costs refused, nothing is left to compare.
        raise UserError(
            f"runs are not comparable: {first_difference(runs, COST_PARAMS)}\n"
            "Every run has random weights (cost only), so nothing else could be compared."
        )
    return refusal


def check_comparable(runs: pd.DataFrame, params: tuple[str, ...] = SHARED_PARAMS) -> None:
    """Raise ``UserError`` on the first param in ``params`` whose value differs between runs.

    The message names the parameter and lists every run's value as ``run_name (run_id): value``.
    """
    difference = first_difference(runs, params)
    if difference is not None:
        raise UserError(f"runs are not comparable: {difference}")


def check_quality_comparable(runs: pd.DataFrame) -> None:
    """`SHARED_PARAMS` over every run, then `QUALITY_PARAMS` over the pretrained-weight runs."""
    check_comparable(runs, SHARED_PARAMS)
    pretrained = runs[runs["weights"] != "random"] if "weights" in runs.columns else runs
    check_comparable(pretrained.reset_index(drop=True), QUALITY_PARAMS)


def cost_refusal(runs: pd.DataFrame) -> str | None:
    """Why the runs' costs may not be tabulated side by side (None when they may): `COST_PARAMS`."""
    difference = first_difference(runs, COST_PARAMS)
    return None if difference is None else f"{COST_REFUSAL_PREFIX}{difference}"


def refusal_headline(refusal: str) -> str:
    """The refusal's first sentence (``cost not compared: parameter 'pue' differs between them``)."""
    return refusal.splitlines()[0].split(". Compare only")[0]


def refusal_values(refusal: str, *, run_ids: bool = True) -> list[str]:
    """The refusal's per-run lines (``fp16 (run id): '1.0'``), as listed under its first line;
    ``run_ids=False``: without the 32-character ids (``fp16: '1.0'``), for prose set in a column."""
    lines = [line.strip() for line in refusal.splitlines()[1:] if line.strip()]
    return lines if run_ids else [re.sub(r" \([0-9a-f]{32}\):", ":", line, count=1) for line in lines]


def first_difference(runs: pd.DataFrame, params: tuple[str, ...]) -> str | None:
    """The message for the first param in ``params`` that differs between runs, else None."""
    for param in params:
        values = [_value(runs, i, param) for i in range(len(runs))]
        if len({_comparable(param, v) for v in values if v is not None}) > 1:
            listing = "\n".join(
                f"  {runs['run_name'].iat[i]} ({runs['run_id'].iat[i]}): {_shown(runs, i, param, values[i])}"
                for i in range(len(runs))
            )
            return (
                f"parameter '{param}' differs between them. Compare only runs of the same "
                f"{', '.join(params)}; values:\n{listing}"
            )
    return None


def _shown(runs: pd.DataFrame, i: int, param: str, value: str | None) -> str:
    if value is None:
        return "(does not apply)"
    if value == MISSING:
        return MISSING
    if _raw(runs, i, param) is None:  # implied (IMPLIED_WHEN_MISSING): say that it was not logged
        return f"{value!r} ({MISSING}: implied)"
    return repr(value)


def _comparable(param: str, value: str) -> object:
    if param in NUMERIC_PARAMS and value != MISSING:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _value(runs: pd.DataFrame, i: int, param: str) -> str | None:
    """The run's value of ``param``; None where the param does not apply to it (see module docstring)."""
    base_model = _raw(runs, i, "base_model")
    if base_model and param == "model":
        return base_model
    if base_model and param == "revision":
        return None
    if param in PART_OF_A_GGUF_PLAN and _raw(runs, i, "engine_resolved") == "llama.cpp":
        return None
    value = _raw(runs, i, param)
    if value is None and param in ONLY_WHERE_LOGGED:
        return None
    if value is None:
        return IMPLIED_WHEN_MISSING.get(param, MISSING)
    return value


def _raw(runs: pd.DataFrame, i: int, param: str) -> str | None:
    column = f"params.{param}"
    if column not in runs.columns:
        return None
    value = runs[column].iat[i]
    return value if isinstance(value, str) else None
