"""Refuse to compare runs that were not measured on the same samples, seed and prompt.

CIDEr's IDF comes from the reference set being scored, and every Δ in the report is paired per
sample: runs on different id lists, seeds, prompts, tasks, datasets or splits would produce numbers
that look comparable and are not. The check covers random-weight runs too, since their cost rows
sit next to the others in the same table.
"""

from __future__ import annotations

import pandas as pd

from vlm_quant.errors import UserError
from vlm_quant.tracking import run_schema as rs

MISSING = "<not logged>"


def check_comparable(runs: pd.DataFrame, params: tuple[str, ...] = rs.COMPARABILITY_PARAMS) -> None:
    """Raise ``UserError`` on the first param in ``params`` whose value differs between runs.

    The message names the parameter and lists every run's value as ``run_name (run_id): value``.
    A param a run did not log counts as its own value, so it cannot slip through.
    """
    for param in params:
        values = [_value(runs, i, param) for i in range(len(runs))]
        if len(set(values)) > 1:
            listing = "\n".join(
                f"  {runs['run_name'].iat[i]} ({runs['run_id'].iat[i]}): "
                + (values[i] if values[i] == MISSING else repr(values[i]))
                for i in range(len(runs))
            )
            raise UserError(
                f"runs are not comparable: parameter '{param}' differs between them. Compare only "
                f"runs of the same {', '.join(params)}; values:\n{listing}"
            )


def _value(runs: pd.DataFrame, i: int, param: str) -> str:
    column = f"params.{param}"
    if column not in runs.columns:
        return MISSING
    value = runs[column].iat[i]
    return value if isinstance(value, str) else MISSING
