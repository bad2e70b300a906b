"""Cells of the cost table that need more than a number: fallbacks, windows, and why a value is absent.

* Peak memory: CUDA's allocator peak (``peak_vram_allocated_mib``) where the run logged it; on a CPU
  run, where there is no VRAM, the process's peak resident set size (``peak_rss_mib``, MiB). When
  no run of the table has a VRAM peak the column is headed "Peak RSS (MiB)"; a single run without
  VRAM among GPU runs shows its RSS suffixed "(RSS)", so the two are never read as one quantity.
* Energy, each header naming its window (what `run/cost_pass.py` and `run/runner.py` meter):
  ``energy_j_per_image`` is GPU board energy (NVML counter) over the cost pass's timed throughput
  iterations at the evaluation batch size B (window ``throughput_bs{B}``), per image: "Energy
  (J/image, cost pass bs B)". ``co2e_kg`` is the whole quality pass's GPU energy x PUE x carbon
  intensity (window ``quality_pass``, a total, not per image): "CO2e (kg, quality pass)".
  ``idle_power_w`` (param, W) is the board's mean power over ``idle_seconds`` before the model
  loaded. "Net of idle" is ``energy_j_per_image - idle_power_w / throughput_images_per_s``: the
  gross mean power of the same window minus idle power, times the time per image of the same timed
  iterations (both headline metrics come from the batch-B window). It is never clamped: a negative
  net (the board drew less than the idle reading taken before loading, at other clocks or
  temperature) is shown, marked "(below idle)", and the legend says what that means.
* Absent energy says why, from what the run logged: ``n/a (no NVML)`` for a run without the counter
  (tag ``vlm_quant.energy_absent_reason``); the window's own reason (tags
  ``vlm_quant.energy_absent_throughput_bs{B}``, ``vlm_quant.energy_absent_quality_pass``), its first
  clause in the cell and in full in the legend; out of memory at batch B (``vlm_quant.cost_oom_bs{B}``);
  B not among ``cost_batch_sizes``. Net of idle without an idle reading: ``n/a (no idle power)``.
* Without NVML, codecarbon's CPU + RAM energy gets a column, in Wh over the whole run (model load,
  quality and cost passes), facility energy (x PUE), marked as an estimate with codecarbon's CPU
  method (param ``codecarbon_cpu_method``; `CODECARBON_METHODS` as codecarbon 3.3.2 computes them).
  It is not per image: the span includes loading and warm-up.
* Anything else missing: ``n/a (not logged)``. Never 0.
"""

from __future__ import annotations

import pandas as pd

from vlm_quant.study.report.render import MIB_SPEC, NA, fmt_number, is_missing
from vlm_quant.tracking import run_schema as rs

J_PER_WH = 3600.0
WH_PER_KWH = 1000.0
NOT_LOGGED = f"{NA} (not logged)"
NO_NVML = f"{NA} (no NVML)"
NO_IDLE = f"{NA} (no idle power)"
BELOW_IDLE = "(below idle)"
NVML_METRICS = ("energy_j_per_image", "energy_j_per_token", "co2e_kg")
QUALITY_PASS_METRICS = ("co2e_kg",)  # metered over the quality pass; the other NVML metrics: cost pass
NET_COLUMN = "energy_j_per_image_net"  # results.csv column: J/image net of idle power (may be < 0)
NET_FORMAT = ".2f"
IDLE_HEADER = "Idle power (W, before load)"
CODECARBON_HEADER = "CPU+RAM energy (Wh, whole run, est.)"
ENERGY_REASON_TAG = "vlm_quant.energy_absent_reason"
CODECARBON_REASON_TAG = "vlm_quant.codecarbon_absent_reason"
WINDOW_REASON_TAG = "vlm_quant.energy_absent_{window}"  # per energy window (cost_pass.py, runner.py)
OOM_TAG = "vlm_quant.cost_oom_bs{batch_size}"
# codecarbon 3.3.2's CPU power per method (codecarbon/external/hardware.py, tracking_mode "machine").
CODECARBON_METHODS = {
    "constant": "0.5 x the CPU's TDP, whatever the load",
    "cpu_load": "TDP x (0.1 + 0.9 x load^3), load being the whole machine's CPU utilisation (0-1)",
    "intel_rapl": "the CPU's RAPL energy counters (measured)",
}

# Columns of the numbers table (results.csv) these cells read, beyond rs.COST_METRICS.
EXTRA_METRICS = ("codecarbon_cpu_energy_kwh", "codecarbon_ram_energy_kwh")
EXTRA_PARAMS = ("codecarbon_cpu_method", "batch_size", "cost_batch_sizes", "idle_power_w")
EXTRA_TAGS = {"energy_absent_reason": ENERGY_REASON_TAG, "codecarbon_absent_reason": CODECARBON_REASON_TAG}
WINDOW_COLUMNS = {  # numbers column -> which window's tag it holds
    "energy_absent_cost_pass": "cost",
    "energy_absent_quality_pass": "quality",
    "cost_oom_eval_batch": "oom",
    "idle_power_absent": "idle",
}


def window_columns(runs: pd.DataFrame) -> dict[str, list]:
    """The per-window absent reasons of each run (the tags of its own batch size B) and J/image net of
    idle power, as numbers-table columns (`WINDOW_COLUMNS`, `NET_COLUMN`)."""
    columns: dict[str, list] = {name: [] for name in WINDOW_COLUMNS}
    for _, row in runs.iterrows():
        batch = _batch_size(row.get("params.batch_size"))
        tags = {
            "cost": WINDOW_REASON_TAG.format(window=f"throughput_bs{batch}") if batch else None,
            "quality": WINDOW_REASON_TAG.format(window="quality_pass"),
            "oom": OOM_TAG.format(batch_size=batch) if batch else None,
            "idle": rs.TAG_IDLE_POWER_ABSENT,
        }
        for name, window in WINDOW_COLUMNS.items():
            value = row.get(f"tags.{tags[window]}") if tags[window] else None
            columns[name].append(value if isinstance(value, str) else None)
    columns[NET_COLUMN] = [_net(row) for _, row in runs.iterrows()]
    return columns


def _net(row: pd.Series) -> float:
    gross, rate = row.get("metrics.energy_j_per_image"), row.get("metrics.throughput_images_per_s")
    idle = idle_power_w(row.get("params.idle_power_w"))
    if is_missing(gross) or is_missing(rate) or idle is None or float(rate) <= 0:
        return float("nan")
    return float(gross) - idle / float(rate)


def idle_power_w(value: object) -> float | None:
    """The logged ``idle_power_w`` param as W; None when absent or not a number (runs logged before
    the tag ``vlm_quant.idle_power_absent_reason`` existed logged the string ``None`` instead)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if is_missing(number) else number


def window_label(numbers: pd.DataFrame, metric: str) -> str:
    """Which window ``metric`` was metered over: ``quality pass``, ``cost pass bs 8`` (the table's
    evaluation batch size, shared by every run a cost table holds), or ``cost pass`` without one."""
    if metric in QUALITY_PASS_METRICS:
        return "quality pass"
    sizes = {_batch_size(v) for v in numbers.get("batch_size", pd.Series(dtype=object))}
    return f"cost pass bs {sizes.pop()}" if len(sizes) == 1 and None not in sizes else "cost pass"


def window_header(numbers: pd.DataFrame, metric: str, header: str) -> str:
    """``Energy (J/image)`` -> ``Energy (J/image, cost pass bs 8)``: the header naming its window."""
    return f"{header.removesuffix(')')}, {window_label(numbers, metric)})"


def net_header(numbers: pd.DataFrame) -> str:
    return f"Net of idle (J/image, {window_label(numbers, 'energy_j_per_image')})"


def metric_cells(numbers: pd.DataFrame, metric: str, fmt: str) -> list[str]:
    """One cost column as text, an absent value said with its reason (energy: its window's)."""
    cells = []
    for _, row in numbers.iterrows():
        value = row.get(metric)
        if not is_missing(value):
            cells.append(fmt_number(value, fmt))
        elif metric in NVML_METRICS:
            cells.append(energy_absent_cell(row, metric))
        else:
            cells.append(NOT_LOGGED)
    return cells


def energy_absent_cell(row: pd.Series, metric: str) -> str:
    """``n/a (<reason>)`` for an absent NVML metric: no NVML, the window's logged reason (its first
    clause), out of memory at the evaluation batch size, or that size not being in the cost pass."""
    if isinstance(row.get("energy_absent_reason"), str):
        return NO_NVML
    reason = _window_reason(row, metric)
    return f"{NA} ({_first_clause(reason)})" if reason else NOT_LOGGED


def _window_reason(row: pd.Series, metric: str) -> str | None:
    if metric in QUALITY_PASS_METRICS:
        return _text(row.get("energy_absent_quality_pass"))
    reason = _text(row.get("energy_absent_cost_pass")) or _text(row.get("cost_oom_eval_batch"))
    if reason:
        return reason
    batch, sizes = _batch_size(row.get("batch_size")), _text(row.get("cost_batch_sizes"))
    if batch and sizes and str(batch) not in [s.strip() for s in sizes.split(",")]:
        return f"batch size {batch} not in cost_batch_sizes {sizes}"
    return None


def net_cells(numbers: pd.DataFrame) -> list[str]:
    """J/image net of idle power, ``(below idle)`` appended where negative; absent with the reason."""
    cells = []
    for _, row in numbers.iterrows():
        net = row.get(NET_COLUMN)
        if not is_missing(net):
            text = fmt_number(net, NET_FORMAT)
            cells.append(f"{text} {BELOW_IDLE}" if float(net) < 0 else text)
        elif is_missing(row.get("energy_j_per_image")):
            cells.append(energy_absent_cell(row, "energy_j_per_image"))
        elif idle_power_w(row.get("idle_power_w")) is None:
            cells.append(NO_IDLE)
        else:
            cells.append(f"{NA} (no throughput)")
    return cells


def idle_cells(numbers: pd.DataFrame) -> list[str]:
    """The board's idle power in W before the model loaded; ``n/a (no NVML)`` without the counter."""
    cells = []
    for _, row in numbers.iterrows():
        idle = idle_power_w(row.get("idle_power_w"))
        if idle is not None:
            cells.append(fmt_number(idle, ".1f"))
        elif isinstance(row.get("energy_absent_reason"), str):
            cells.append(NO_NVML)
        elif reason := _text(row.get("idle_power_absent")):  # the idle window's own reason
            cells.append(f"{NA} ({_first_clause(reason)})")
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


def needs_idle_columns(numbers: pd.DataFrame) -> bool:
    """True when some run measured GPU energy or idle power: idle power and net J/image are shown."""
    energy = numbers.get("energy_j_per_image", pd.Series(float("nan"), index=numbers.index))
    idle = [idle_power_w(v) for v in numbers.get("idle_power_w", pd.Series(dtype=object))]
    return bool(energy.notna().any()) or any(v is not None for v in idle)


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


def legend(numbers: pd.DataFrame, with_codecarbon: bool, with_idle: bool = False) -> list[str]:
    """Sentences under the cost table: the energy windows, what n/a means (each run's logged reason in
    full), where RSS and codecarbon stand in."""
    lines = [f"{NOT_LOGGED}: the run did not log this metric (never read as 0)."]
    energy = window_header(numbers, "energy_j_per_image", "Energy (J/image)")
    lines.append(
        f"{energy}: GPU board energy (NVML counter) over the cost pass's timed throughput iterations at "
        "that batch size, per image. CO2e (kg, quality pass): the whole quality pass's GPU energy x PUE "
        "x grid carbon intensity, a total, not per image."
    )
    if with_idle:
        lines.append(
            f"{IDLE_HEADER}: the GPU's mean power over idle_seconds before the model loaded. "
            f"{net_header(numbers)}: J/image minus idle power x time per image (1 / images/s of the same "
            f"timed iterations). Not clamped: {BELOW_IDLE} marks a negative value, the board drawing less "
            "than its idle reading (taken at other clocks and temperature)."
        )
    reasons = sorted({r for r in numbers.get("energy_absent_reason", []) if isinstance(r, str)})
    if reasons:
        lines.append(f"{NO_NVML}: no NVML energy counter ({'; '.join(reasons)}).")
    for _, row in numbers.iterrows():
        for metric in ("energy_j_per_image", "co2e_kg"):
            reason = _window_reason(row, metric)
            no_nvml = isinstance(row.get("energy_absent_reason"), str)  # said once above
            if is_missing(row.get(metric)) and reason and not no_nvml:
                lines.append(f"{row['label']}, {window_label(numbers, metric)}: {reason}.")
    rss_used = numbers.get("peak_vram_allocated_mib", pd.Series(dtype=float)).isna() & numbers.get(
        "peak_rss_mib", pd.Series(dtype=float)
    ).notna()
    if bool(rss_used.any()):
        lines.append("Peak RSS: host resident set size where the run had no CUDA memory peak (CPU run).")
    if with_codecarbon:
        methods = sorted({m for m in numbers.get("codecarbon_cpu_method", []) if isinstance(m, str)})
        described = "; ".join(f"'{m}': {CODECARBON_METHODS.get(m, 'see codecarbon')}" for m in methods)
        lines.append(
            f"{CODECARBON_HEADER}: codecarbon's CPU + RAM energy over the whole run (model load, quality "
            "and cost passes) and the whole machine, facility energy (x PUE); an estimate"
            + (f", codecarbon's CPU method {described}" if described else "")
            + ". Not per image."
        )
    return lines


def _first_clause(reason: str) -> str:
    """``window lasted 0.4 s (< 1 s): the NVML counter ...`` -> ``window lasted 0.4 s (< 1 s)``."""
    return reason.split(": ")[0]


def _batch_size(value: object) -> int | None:
    try:
        return int(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
