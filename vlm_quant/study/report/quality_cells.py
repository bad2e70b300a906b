"""Quality cells of a run whose scoring was deferred (score=later, not yet `vlm-quant score run`).

Such a run logged no quality metric, by design: its quality, hallucination and safety cells read
``n/a (scoring deferred, score=later)`` (from the run's tag ``vlm_quant.scoring_absent_reason``),
never blank and never 0, and a legend line says how to fill them in. Any other missing value reads
``n/a``.
"""

from __future__ import annotations

import pandas as pd

from vlm_quant.study.report.render import NA
from vlm_quant.tracking import run_schema as rs

REASON_COLUMN = "scoring_absent_reason"  # column of a numbers table (results.csv), from the run's tag
REASON_TAG = rs.TAG_SCORING_ABSENT
DEFERRED_CELL = f"{NA} (scoring deferred, score=later)"


def reasons(runs: pd.DataFrame) -> list[object]:
    """Per run of a runs frame (`query`): the deferral reason tag's text, else None."""
    column = f"tags.{REASON_TAG}"
    if column not in runs.columns:
        return [None] * len(runs)
    return [r if isinstance(r, str) and r else None for r in runs[column]]


def deferred_rows(frame: pd.DataFrame) -> list[bool]:
    """Per row (run): True when its scoring was deferred (a numbers table's column, or the runs' tag)."""
    for column in (REASON_COLUMN, f"tags.{REASON_TAG}"):
        if column in frame.columns:
            return [isinstance(reason, str) and bool(reason) for reason in frame[column]]
    return [False] * len(frame)


def or_deferred(cells: list[str], deferred: list[bool]) -> list[str]:
    """Each formatted cell, or the deferral reason where that run's scoring was deferred and it reads n/a."""
    pairs = zip(cells, deferred, strict=True)
    return [DEFERRED_CELL if late and cell == NA else cell for cell, late in pairs]


def legend(frame: pd.DataFrame) -> list[str]:
    """The line under a table when a run's scoring is deferred."""
    labels = [str(label) for label, late in zip(frame["label"], deferred_rows(frame), strict=True) if late]
    if not labels:
        return []
    return [
        f"{DEFERRED_CELL}: evaluated with score=later and not scored yet ({', '.join(labels)}); "
        "`vlm-quant score run RUN_ID` on a machine with Java logs the scores into the same run."
    ]
