"""Refuse to compare runs that differ in anything but precision, naming the parameter.

CIDEr's IDF comes from the reference set being scored, and every Δ in the report is paired per
sample: runs on different id lists, seeds, prompts, tasks, datasets or splits would produce numbers
that look comparable and are not. Nor may they differ in the model, its revision, or how it
generated (max_new_tokens, max_image_side, image_splitting, batch_size): a Δ would then mix a
setting's effect into the quantization's.

Three sets of params, checked by ``compare`` in this order:

* `SHARED_PARAMS` (every run, random-weight ones too, since their cost rows sit next to the
  others): a difference refuses the whole comparison;
* `QUALITY_PARAMS` (pretrained-weight runs, the ones in quality tables): refuses the whole
  comparison, since the quality tables are its core;
* `COST_PARAMS` (every run in a cost table): device, GPU, compute dtype, the engine that really ran,
  and the tokens generated per timed call also change latency, memory and energy. A difference
  here refuses the *cost* part only: quality tables, Δ, examples and appendix are still written,
  and the cost table, cost figures and power traces are replaced by the refusal message (see
  `cost_refusal`). Revision is not in the cost set: a random-weight run has no revision and
  measures the same architecture.

A param a run did not log counts as its own value, so it cannot slip through. A published quantized
checkpoint (``quant=prequantized``) that names its ``base_model`` counts as that model, and its own
revision is not compared (it is another repository's): the report says which checkpoint it was.
"""

from __future__ import annotations

import pandas as pd

from vlm_quant.errors import UserError
from vlm_quant.tracking import run_schema as rs

MISSING = "<not logged>"
SHARED_PARAMS = rs.COMPARABILITY_PARAMS  # ids_hash, seed, prompt, task, dataset, split, shots
GENERATION_PARAMS = ("model", "max_new_tokens", "max_image_side", "image_splitting", "batch_size")
QUALITY_PARAMS = (*SHARED_PARAMS, "model", "revision", *GENERATION_PARAMS[1:])
COST_PARAMS = (*GENERATION_PARAMS, "device", "gpu_name", "dtype", "engine_resolved", "cost_new_tokens")


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
    return None if difference is None else f"cost not compared: {difference}"


def first_difference(runs: pd.DataFrame, params: tuple[str, ...]) -> str | None:
    """The message for the first param in ``params`` that differs between runs, else None."""
    for param in params:
        values = [_value(runs, i, param) for i in range(len(runs))]
        if len({v for v in values if v is not None}) > 1:
            listing = "\n".join(
                f"  {runs['run_name'].iat[i]} ({runs['run_id'].iat[i]}): "
                + (str(values[i]) if values[i] in (MISSING, None) else repr(values[i]))
                for i in range(len(runs))
            )
            return (
                f"parameter '{param}' differs between them. Compare only runs of the same "
                f"{', '.join(params)}; values:\n{listing}"
            )
    return None


def _value(runs: pd.DataFrame, i: int, param: str) -> str | None:
    """The run's value of ``param``; None where the param does not apply to it (see module docstring)."""
    base_model = _raw(runs, i, "base_model")
    if base_model and param == "model":
        return base_model
    if base_model and param == "revision":
        return None
    value = _raw(runs, i, param)
    return MISSING if value is None else value


def _raw(runs: pd.DataFrame, i: int, param: str) -> str | None:
    column = f"params.{param}"
    if column not in runs.columns:
        return None
    value = runs[column].iat[i]
    return value if isinstance(value, str) else None
