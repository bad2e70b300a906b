"""Batch invariance in the report: the agreement column of the quality table and its warning.

Each evaluate run regenerates a seeded subset at batch 1 (`vlm_quant.run.batch_invariance`) and logs
``batch_invariance_agreement`` (0-1) and ``batch_invariance_<primary>_delta`` (the primary metric on the
subset at batch 1 minus batched). The quality table shows the agreement per run with its 95% Wilson
interval and the subset size ("Batch-1 agreement": ``0.94 [0.72, 0.99] (n=16)``); a run that did not
measure it reads ``n/a (<reason>)`` (the logged reason, e.g. "evaluated at batch 1", or "not logged"),
never 0 or 1. The warning is decided from the interval, not the point estimate: a pretrained run whose
interval reaches below `AGREEMENT_WARNING_THRESHOLD` gets a warning (under the quality table, in notes.md
and printed by `compare`). With 16 samples a true 10% mismatch rate leaves 15 or 16 identical about half
the time (0.9^16 + 16 x 0.1 x 0.9^15 = 0.51), which a point estimate would let pass; the interval of
16/16 still reaches 0.81, so 16 samples cannot show an agreement above 0.90 at all (35 all-identical
samples are the fewest that can, `samples_needed`). The warning says which case it is: below the
threshold (with the subset's metric delta: the quality numbers depend on the batch size, not only on the
precision), or too few samples to exclude it. After an OOM back-off the predictions were made at several
batch sizes (tag ``vlm_quant.quality_pass_batch_sizes``): the warning names them all. The column is shown
only when some pretrained run logged either.
"""

from __future__ import annotations

import functools

import pandas as pd
from scipy.stats import binomtest

from vlm_quant.study.report.render import NA, fmt_number, is_missing
from vlm_quant.tracking import run_schema as rs

# Below this share of identical predictions, the batched quality numbers are not the model's batch-1
# quality: more than 1 in 10 regenerated samples changed their greedy output with the batch size.
AGREEMENT_WARNING_THRESHOLD = 0.9
CONFIDENCE = 0.95  # of the agreement's Wilson interval
HEADER = "Batch-1 agreement"

AGREEMENT = rs.METRIC_BATCH_INVARIANCE_AGREEMENT
DELTA = "batch_invariance_delta"  # numbers-table column: the logged batch_invariance_<primary>_delta
N = rs.PARAM_BATCH_INVARIANCE_N
BATCH_SIZE = rs.PARAM_BATCH_INVARIANCE_BATCH_SIZE
ABSENT = "batch_invariance_absent_reason"
DELTA_ABSENT = "batch_invariance_delta_absent_reason"
BATCH_SIZES = "quality_pass_batch_sizes"  # numbers-table column: "8,4" after an OOM back-off
LOW, HIGH = f"{AGREEMENT}_low", f"{AGREEMENT}_high"  # numbers-table columns: the Wilson interval


def agreement_interval(agreement: float, n: int) -> tuple[float, float]:
    """The ``CONFIDENCE`` Wilson score interval (0-1) of an agreement measured on ``n`` samples.

    The identical count is ``round(agreement * n)`` (the logged share of n samples);
    ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``: inside [0, 1] by construction."""
    interval = binomtest(round(agreement * n), n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


@functools.cache
def samples_needed(threshold: float = AGREEMENT_WARNING_THRESHOLD) -> int:
    """The fewest samples whose interval, all of them identical, lies above ``threshold``."""
    n = 1
    while agreement_interval(1.0, n)[0] < threshold:
        n += 1
    return n


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
        BATCH_SIZES: column(f"tags.{rs.TAG_QUALITY_PASS_BATCH_SIZES}"),
        **dict(zip((LOW, HIGH), _interval_columns(runs, column), strict=True)),
    }


def _interval_columns(runs: pd.DataFrame, column) -> tuple[pd.Series, pd.Series]:
    agreement = column(f"metrics.{AGREEMENT}")
    n = pd.to_numeric(column(f"params.{N}"), errors="coerce")
    bounds = [
        agreement_interval(a, int(k)) if not (is_missing(a) or is_missing(k) or k < 1) else (None, None)
        for a, k in zip(agreement, n, strict=True)
    ]
    return (
        pd.Series([b[0] for b in bounds], index=runs.index, dtype=float),
        pd.Series([b[1] for b in bounds], index=runs.index, dtype=float),
    )


def shown(rows: pd.DataFrame) -> bool:
    """Whether any of ``rows`` (numbers-table rows) measured the agreement or said why not."""
    present = [rows[c].notna() for c in (AGREEMENT, ABSENT) if c in rows.columns]
    return bool(present) and bool(pd.concat(present, axis=1).any(axis=None))


def cells(rows: pd.DataFrame) -> list[str]:
    """The quality table's column: ``0.94 [0.72, 0.99] (n=16)``, or ``n/a (<reason>)``."""
    out = []
    for _, row in rows.iterrows():
        if not is_missing(row.get(AGREEMENT)):
            n = row.get(N)
            out.append(fmt_number(row[AGREEMENT], ".2f") + _interval_text(row)
                       + ("" if is_missing(n) else f" (n={int(n)})"))
        elif isinstance(row.get(ABSENT), str):
            out.append(f"{NA} ({row[ABSENT]})")
        else:
            out.append(f"{NA} (not logged)")
    return out


def _interval_text(row: pd.Series) -> str:
    low, high = row.get(LOW), row.get(HIGH)
    return "" if is_missing(low) else f" [{low:.2f}, {high:.2f}]"


def legend() -> str:
    return (
        f"{HEADER}: share of a seeded subset of n samples whose greedy prediction regenerated at batch 1 "
        f"is identical to the evaluated (batched) one, with its {CONFIDENCE:.0%} Wilson interval; runs whose "
        f"interval reaches below {AGREEMENT_WARNING_THRESHOLD:.2f} are warned (at least "
        f"{samples_needed()} samples, all identical, are needed to exclude that)."
    )


def warnings(rows: pd.DataFrame, task: str) -> list[str]:
    """One warning per pretrained run whose agreement's interval reaches below the threshold: below it
    (with the subset's delta), or too few samples to tell (the interval alone reaches below)."""
    found = []
    for _, row in rows[rows["weights"] != "random"].iterrows():
        agreement = row.get(AGREEMENT)
        if is_missing(agreement):
            continue
        low, threshold = row.get(LOW), AGREEMENT_WARNING_THRESHOLD
        if agreement >= threshold and (is_missing(low) or low >= threshold):
            continue
        n = "" if is_missing(row.get(N)) else f" (n={int(row[N])})"
        measured = f"{row['label']} ({row['run_id']}): agreement {agreement:.2f}{_interval_text(row)}{n}"
        if agreement >= threshold:
            found.append(
                f"batch invariance: {measured} cannot be told apart from an agreement below "
                f"{threshold:.2f}: its {CONFIDENCE:.0%} interval reaches {low:.2f}; too few "
                f"samples to show batch invariance (at least {samples_needed()} all identical are needed: "
                "invariance_samples)."
            )
            continue
        found.append(
            f"batch invariance: {measured} is below {threshold:.2f}: {1 - agreement:.0%} of "
            f"the samples regenerated at batch 1 predict otherwise than at the evaluated {_batches(row)}; "
            f"{_delta_text(row, task)}; its quality numbers depend on the batch size."
        )
    return found


def _batches(row: pd.Series) -> str:
    sizes = row.get(BATCH_SIZES)
    if isinstance(sizes, str) and "," in sizes:  # an OOM back-off: predictions at several sizes
        return f"batch sizes {sizes.replace(',', ', ')}"
    return "batch size" if is_missing(row.get(BATCH_SIZE)) else f"batch {int(row[BATCH_SIZE])}"


def _delta_text(row: pd.Series, task: str) -> str:
    primary = rs.PRIMARY_QUALITY_METRIC[task]
    if is_missing(row.get(DELTA)):
        reason = row.get(DELTA_ABSENT)
        return f"its {primary} delta was not measured" + (f" ({reason})" if isinstance(reason, str) else "")
    return f"{primary} on that subset changes by {fmt_number(row[DELTA], '+.3f')} at batch 1"
