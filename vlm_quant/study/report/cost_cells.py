"""Cells of the cost table that need more than a number: fallbacks and the reason a value is absent.

* Peak memory: CUDA's allocator peak (``peak_vram_allocated_mib``) where the run logged it; on a CPU
  run, where there is no VRAM, the process's peak resident set size (``peak_rss_mib``, MiB). When
  no run of the table has a VRAM peak the column is headed "Peak RSS (MiB)"; a single run without
  VRAM among GPU runs shows its RSS suffixed "(RSS)", so the two are never read as one quantity.
* Energy without NVML: ``energy_j_per_image`` and ``co2e_kg`` come from the NVML energy counter; a
  run without it shows ``n/a (no NVML)`` (the logged ``vlm_quant.energy_absent_reason`` goes to the
  legend). Such runs get codecarbon's CPU + RAM energy in its own column, in Wh over the whole run
  (model load, quality and cost passes), facility energy (x PUE), marked as an estimate with
  codecarbon's CPU method (param ``codecarbon_cpu_method``: ``constant`` is TDP x load, not a
  counter). It is not per image: the span includes loading and warm-up.
* Anything else missing: ``n/a (not logged)``. Never 0.
"""

from __future__ import annotations

import pandas as pd

from vlm_quant.study.report.render import MIB_SPEC, NA, fmt_number, is_missing

J_PER_WH = 3600.0
WH_PER_KWH = 1000.0
NOT_LOGGED = f"{NA} (not logged)"
NO_NVML = f"{NA} (no NVML)"
NVML_METRICS = ("energy_j_per_image", "energy_j_per_token", "co2e_kg")
CODECARBON_HEADER = "CPU+RAM energy, run (Wh, est.)"
ENERGY_REASON_TAG = "vlm_quant.energy_absent_reason"
CODECARBON_REASON_TAG = "vlm_quant.codecarbon_absent_reason"

# Columns of the numbers table (results.csv) these cells read, beyond rs.COST_METRICS.
EXTRA_METRICS = ("codecarbon_cpu_energy_kwh", "codecarbon_ram_energy_kwh")
EXTRA_PARAMS = ("codecarbon_cpu_method",)
EXTRA_TAGS = {"energy_absent_reason": ENERGY_REASON_TAG, "codecarbon_absent_reason": CODECARBON_REASON_TAG}


def metric_cells(numbers: pd.DataFrame, metric: str, fmt: str) -> list[str]:
    """One cost column as text, an absent value said with its reason."""
    cells = []
    for _, row in numbers.iterrows():
        value = row.get(metric)
        if not is_missing(value):
            cells.append(fmt_number(value, fmt))
        elif metric in NVML_METRICS and isinstance(row.get("energy_absent_reason"), str):
            cells.append(NO_NVML)
        else:
            cells.append(NOT_LOGGED)
    return cells


def memory_column(numbers: pd.DataFrame, header: str) -> tuple[str, list[str]]:
    """(header, cells) of the peak-memory column: VRAM, or RSS where the run has no VRAM (CPU)."""
    vram = numbers.get("peak_vram_allocated_mib", pd.Series(float("nan"), index=numbers.index))
    rss = numbers.get("peak_rss_mib", pd.Series(float("nan"), index=numbers.index))
    if vram.isna().all():
        return "Peak RSS (MiB)", [NOT_LOGGED if is_missing(v) else fmt_number(v, MIB_SPEC) for v in rss]
    cells = []
    for v, r in zip(vram, rss, strict=True):
        if not is_missing(v):
            cells.append(fmt_number(v, MIB_SPEC))
        elif not is_missing(r):
            cells.append(f"{fmt_number(r, MIB_SPEC)} (RSS)")
        else:
            cells.append(NOT_LOGGED)
    return header, cells


def needs_codecarbon_column(numbers: pd.DataFrame) -> bool:
    """True when a run without NVML energy has codecarbon's estimate: shown beside it then."""
    energy = numbers.get("energy_j_per_image", pd.Series(float("nan"), index=numbers.index))
    return any(
        is_missing(e) and codecarbon_wh(row) is not None
        for e, (_, row) in zip(energy, numbers.iterrows(), strict=True)
    )


def codecarbon_wh(row: pd.Series) -> float | None:
    """CPU + RAM energy of the whole run in Wh (codecarbon, facility energy), None if not measured."""
    parts = [row.get(name) for name in EXTRA_METRICS]
    if all(is_missing(p) for p in parts):
        return None
    return sum(float(p) for p in parts if not is_missing(p)) * WH_PER_KWH


def codecarbon_cells(numbers: pd.DataFrame) -> list[str]:
    """``0.412 (est., constant)`` per run; ``n/a (no codecarbon)`` / ``n/a (not logged)`` otherwise."""
    cells = []
    for _, row in numbers.iterrows():
        wh = codecarbon_wh(row)
        if wh is None:
            absent = isinstance(row.get("codecarbon_absent_reason"), str)
            cells.append(f"{NA} (no codecarbon)" if absent else NOT_LOGGED)
            continue
        method = row.get("codecarbon_cpu_method")
        method = method if isinstance(method, str) and method else "CPU method not logged"
        cells.append(f"{fmt_number(wh, '.3g')} (est., {method})")
    return cells


def legend(numbers: pd.DataFrame, with_codecarbon: bool) -> list[str]:
    """Sentences under the cost table: what n/a means, where RSS and codecarbon stand in."""
    lines = [f"{NOT_LOGGED}: the run did not log this metric (never read as 0)."]
    reasons = sorted({r for r in numbers.get("energy_absent_reason", []) if isinstance(r, str)})
    if reasons:
        lines.append(f"{NO_NVML}: no NVML energy counter ({'; '.join(reasons)}).")
    rss_used = numbers.get("peak_vram_allocated_mib", pd.Series(dtype=float)).isna() & numbers.get(
        "peak_rss_mib", pd.Series(dtype=float)
    ).notna()
    if bool(rss_used.any()):
        lines.append("Peak RSS: host resident set size where the run had no CUDA memory peak (CPU run).")
    if with_codecarbon:
        lines.append(
            f"{CODECARBON_HEADER}: codecarbon's CPU + RAM energy over the whole run (model load, quality "
            "and cost passes), facility energy (x PUE); an estimate, with codecarbon's CPU method "
            "('constant': TDP x load, not a measured counter). Not per image."
        )
    return lines
