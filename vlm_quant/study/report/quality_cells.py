"""Quality cells of a run whose scoring was deferred (score=later, not yet `vlm-quant score run`).

Such a run logged no quality metric, by design: its cells read ``n/a (scoring deferred, score=later)``
(from the run's tag ``vlm_quant.scoring_absent_reason``), never blank and never 0, and a legend line
says how to fill them in. Any other missing quality value reads ``n/a``.
"""

from __future__ import annotations

import pandas as pd

from vlm_quant.study.report.render import NA, fmt_number, is_missing
from vlm_quant.tracking import run_schema as rs

REASON_COLUMN = "scoring_absent_reason"  # column of the numbers table (results.csv), from the run's tag
REASON_TAG = rs.TAG_SCORING_ABSENT
DEFERRED_CELL = f"{NA} (scoring deferred, score=later)"


def metric_cells(numbers: pd.DataFrame, metric: str, fmt: str = ".3f") -> list[str]:
    """One quality column as text: the value, or why a deferred run has none."""
    reasons = numbers.get(REASON_COLUMN, pd.Series(None, index=numbers.index, dtype=object))
    return [
        DEFERRED_CELL if is_missing(value) and isinstance(reason, str) and reason else fmt_number(value, fmt)
        for value, reason in zip(numbers[metric], reasons, strict=True)
    ]


def legend(numbers: pd.DataFrame) -> list[str]:
    """The line under the quality table when a run's scoring is deferred."""
    reasons = numbers.get(REASON_COLUMN, pd.Series(dtype=object))
    deferred = numbers.loc[[isinstance(r, str) and bool(r) for r in reasons], "label"].tolist()
    if not deferred:
        return []
    return [
        f"{DEFERRED_CELL}: {', '.join(map(str, deferred))} ran with score=later and are not scored yet; "
        "`vlm-quant score run RUN_ID` on a machine with Java logs their scores into the same run."
    ]
