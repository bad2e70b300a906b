"""Batch invariance in the report: the agreement column of the quality table and its warning.

Each evaluate run regenerates a seeded subset at batch 1 (`vlm_quant.run.batch_invariance`) and logs
``batch_invariance_agreement`` (0-1) and ``batch_invariance_<primary>_delta`` (the primary metric on the
subset at batch 1 minus batched). The quality table shows the agreement per run ("Batch-1 agreement",
with the subset size); a run that did not measure it reads ``n/a (<reason>)`` (the logged reason, e.g.
"evaluated at batch 1", or "not logged"), never 0 or 1. A pretrained run whose agreement is below
`AGREEMENT_WARNING_THRESHOLD` gets a warning (under the quality table, in notes.md and printed by
`compare`) that states the subset's metric delta: its quality numbers depend on the batch size, not
only on the precision. The column is shown only when some pretrained run logged either.
"""

from __future__ import annotations

import pandas as pd

from vlm_quant.study.report.render import NA, fmt_number, is_missing
from vlm_quant.tracking import run_schema as rs

# Below this share of identical predictions, the batched quality numbers are not the model's batch-1
# quality: more than 1 in 10 regenerated samples changed their greedy output with the batch size.
AGREEMENT_WARNING_THRESHOLD = 0.9
HEADER = "Batch-1 agreement"

AGREEMENT = rs.METRIC_BATCH_INVARIANCE_AGREEMENT
DELTA = "batch_invariance_delta"  # numbers-table column: the logged batch_invariance_<primary>_delta
N = rs.PARAM_BATCH_INVARIANCE_N
BATCH_SIZE = rs.PARAM_BATCH_INVARIANCE_BATCH_SIZE
ABSENT = "batch_invariance_absent_reason"
DELTA_ABSENT = "batch_invariance_delta_absent_reason"


def number_columns(runs: pd.DataFrame, task: str) -> dict[str, pd.Series]:
    """Columns of results.csv: agreement, delta (of the task's primary metric), subset size, batch size
    compared, and the logged reasons when absent."""
    def column(name: str) -> pd.Series:
        return runs[name] if name in runs.columns else pd.Series(float("nan"), index=runs.index)

    return {
        AGREEMENT: column(f"metrics.{AGREEMENT}"),
        DELTA: column(f"metrics.{rs.batch_invariance_delta_metric(task)}"),
        N: pd.to_numeric(column(f"params.{N}"), errors="coerce"),
        BATCH_SIZE: pd.to_numeric(column(f"params.{BATCH_SIZE}"), errors="coerce"),
        ABSENT: column(f"tags.{rs.TAG_BATCH_INVARIANCE_ABSENT}"),
        DELTA_ABSENT: column(f"tags.{rs.TAG_BATCH_INVARIANCE_DELTA_ABSENT}"),
    }


def shown(rows: pd.DataFrame) -> bool:
    """Whether any of ``rows`` (numbers-table rows) measured the agreement or said why not."""
    present = [rows[c].notna() for c in (AGREEMENT, ABSENT) if c in rows.columns]
    return bool(present) and bool(pd.concat(present, axis=1).any(axis=None))


def cells(rows: pd.DataFrame) -> list[str]:
    """The quality table's column: ``0.94 (n=16)``, or ``n/a (<reason>)``."""
    out = []
    for _, row in rows.iterrows():
        if not is_missing(row.get(AGREEMENT)):
            n = row.get(N)
            out.append(fmt_number(row[AGREEMENT], ".2f") + ("" if is_missing(n) else f" (n={int(n)})"))
        elif isinstance(row.get(ABSENT), str):
            out.append(f"{NA} ({row[ABSENT]})")
        else:
            out.append(f"{NA} (not logged)")
    return out


def legend() -> str:
    return (
        f"{HEADER}: share of a seeded subset of n samples whose greedy prediction regenerated at batch 1 "
        "is identical to the evaluated (batched) one; runs below "
        f"{AGREEMENT_WARNING_THRESHOLD:.2f} are warned."
    )


def warnings(rows: pd.DataFrame, task: str) -> list[str]:
    """One warning per pretrained run whose agreement is below the threshold, with the subset's delta."""
    primary = rs.PRIMARY_QUALITY_METRIC[task]
    found = []
    for _, row in rows[rows["weights"] != "random"].iterrows():
        agreement = row.get(AGREEMENT)
        if is_missing(agreement) or agreement >= AGREEMENT_WARNING_THRESHOLD:
            continue
        batch = "batch size" if is_missing(row.get(BATCH_SIZE)) else f"batch {int(row[BATCH_SIZE])}"
        n = "" if is_missing(row.get(N)) else f" (n={int(row[N])})"
        if is_missing(row.get(DELTA)):
            reason = row.get(DELTA_ABSENT)
            delta = f"its {primary} delta was not measured"
            delta += f" ({reason})" if isinstance(reason, str) else ""
        else:
            delta = f"{primary} on that subset changes by {fmt_number(row[DELTA], '+.3f')} at batch 1"
        found.append(
            f"batch invariance: {row['label']} ({row['run_id']}): agreement {agreement:.2f}{n} is below "
            f"{AGREEMENT_WARNING_THRESHOLD:.2f}: {1 - agreement:.0%} of the samples regenerated at batch 1 "
            f"predict otherwise than at the evaluated {batch}; {delta}; its quality numbers depend on the "
            "batch size."
        )
    return found
