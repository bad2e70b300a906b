"""The report's sustainability section: one table, one figure, and the savings against the baseline.

Everything comes from what each run logged (`run.sustainability`, the cost pass's phase windows):

- the table ``sustainability.md`` / ``sustainability.csv`` / ``sustainability.tex``: Wh per 1,000 images at
  batch 1 (AI Energy Score convention), J/image at the energy-optimal batch (with the batch), decode share,
  FLOPs per image and FLOP/J, MFU, water, CO2e per 1,000 images in the run's country and the
  highest/lowest ratio across places, and the projection to 1 million images (energy, CO2e, water);
- the saving of each configuration against the baseline, ``1 - E/E_base`` of batch-1 J/image, with the
  95% interval of `measure.scale.saving` over the runs' per-window values (artifact
  ``sustainability/phase_windows.json``);
- the figure ``co2e_by_place``: each run's ``sustainability/co2e_by_place.json`` rows, g CO2e per 1,000
  images by country; a CPU run's bars are codecarbon's CPU+RAM estimate, and the title says so.

A value a run did not log prints ``n/a`` (GPU-only quantities on a CPU run), never 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vlm_quant.measure.place import PLACES
from vlm_quant.measure.scale import saving
from vlm_quant.study.report.plots import PlotOutcome
from vlm_quant.study.report.query import RunSet
from vlm_quant.study.report.render import (
    NA,
    fmt_interval,
    fmt_number,
    is_missing,
    latex_table,
    markdown_table,
)
from vlm_quant.tracking import run_schema as rs

COLUMNS = (  # (metric, header, format)
    ("energy_wh_per_1k_images_bs1", "GPU Wh/1k images (batch 1)", ".3g"),
    ("energy_j_per_image_optimal", "J/image at best batch", ".3g"),
    ("energy_optimal_batch_size", "Best batch", ".0f"),
    ("decode_energy_share", "Decode share", ".2f"),
    ("flops_per_image", "GFLOP/image", "gflop"),
    ("flop_per_j", "GFLOP/J", "gflop"),
    ("mfu", "MFU", ".2%"),
    ("water_l_per_1k_images", "Water (L/1k images)", ".3g"),
    ("scale_energy_kwh_per_1m_images", "kWh per 1M images", ".3g"),
    ("scale_co2e_t_per_1m_images", "t CO2e per 1M images", ".3g"),
    ("scale_water_m3_per_1m_images", "m3 water per 1M images", ".3g"),
    ("co2e_place_highest_to_lowest_ratio", "CO2e highest/lowest place", ".1f"),
)
SAVING_HEADER = "Energy saving vs baseline [95% CI]"


@dataclass
class SustainabilityReport:
    """The printed table, the numbers behind it, the savings and the figure."""

    table: pd.DataFrame
    numbers: pd.DataFrame
    savings: dict[str, tuple[float, float | None, float | None]]  # run id -> (saving, low, high)
    plot: PlotOutcome
    paths: tuple[Path, ...] = ()
    notes: list[str] = field(default_factory=list)

    def sections(self) -> list[tuple[str, pd.DataFrame]]:
        """(title, table) for the HTML page."""
        return [("Sustainability", self.table)]


def full_window_j_per_image(record: list[dict] | None) -> list[float]:
    """J/image of each usable full-length phase window of a run's ``phase_windows.json`` (>= 2 s, energy)."""
    return [
        w["energy_j"] / w["calls"]
        for w in record or []
        if w.get("kind") == "full" and w.get("energy_j") is not None and w.get("duration_s", 0) >= 2.0
    ]


def savings_against(
    windows: dict[str, list[float]], baseline_id: str | None
) -> dict[str, tuple[float, float | None, float | None]]:
    """Each non-baseline run's saving (fraction) and interval against the baseline's windows."""
    base = windows.get(baseline_id or "", [])
    if not base:
        return {}
    return {rid: saving(base, values) for rid, values in windows.items() if rid != baseline_id and values}


def sustainability_table(
    runs: pd.DataFrame, savings: dict[str, tuple[float, float | None, float | None]], baseline_id: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(printed table, numbers) with one row per run, in report order."""
    numbers = pd.DataFrame({"label": runs["label"], "run_id": runs["run_id"]})
    table = pd.DataFrame({"Configuration": runs["label"]})
    for metric, header, fmt in COLUMNS:
        values = _metric(runs, metric)
        numbers[metric] = values.to_numpy()
        table[header] = [_cell(value, fmt) for value in values]
    numbers["energy_saving"] = [savings.get(r, (np.nan,))[0] for r in runs["run_id"]]
    numbers["energy_saving_low"] = [_or_nan(savings.get(r, (0, None))[1]) for r in runs["run_id"]]
    numbers["energy_saving_high"] = [_or_nan(savings.get(r, (0, None, None))[2]) for r in runs["run_id"]]
    table[SAVING_HEADER] = [
        "baseline"
        if rid == baseline_id
        else (fmt_interval(*savings[rid], ".1%") if rid in savings else f"{NA} (no batch-1 phase windows)")
        for rid in runs["run_id"]
    ]
    return table.reset_index(drop=True), numbers.reset_index(drop=True)


def place_plot(records: dict[str, dict | None], out_dir: Path) -> PlotOutcome:
    """Grouped bars: g CO2e per 1,000 images by country, one bar per run; skipped without records."""
    drawn = {label: r for label, r in records.items() if r and r.get("rows")}
    if not drawn:
        return PlotOutcome("co2e_by_place", skipped="no run logged sustainability/co2e_by_place.json")
    estimate = any(str(r.get("basis", "")).startswith("ESTIMATE") for r in drawn.values())
    fig = Figure(figsize=(7.0, 2.6), layout="constrained")  # flat: one column of a 6-page paper
    ax = fig.add_subplot()
    width = 0.8 / len(drawn)
    data = {}
    for i, (label, record) in enumerate(drawn.items()):
        by_code = {row["country_iso_code"]: row["co2e_g"] for row in record["rows"]}
        heights = [by_code.get(code, np.nan) for code in PLACES]
        ax.bar(np.arange(len(PLACES)) + i * width, heights, width, label=label)
        data[label] = dict(zip(PLACES, heights, strict=True))
    ax.set_xticks(np.arange(len(PLACES)) + width * (len(drawn) - 1) / 2, PLACES)
    ax.set_ylabel("g CO2e per 1,000 images")
    title = "CO2e of the same energy by country (codecarbon's per-country intensity)"
    ax.set_title(title + ("\nESTIMATE: codecarbon CPU+RAM, no GPU counter" if estimate else ""), fontsize=9)
    ax.legend(fontsize=7)
    out_dir.mkdir(parents=True, exist_ok=True)
    png, pdf = out_dir / "co2e_by_place.png", out_dir / "co2e_by_place.pdf"
    fig.savefig(png, dpi=150)
    fig.savefig(pdf, metadata={"CreationDate": None})
    return PlotOutcome("co2e_by_place", (png, pdf), data, figure=fig)


def write_sustainability(
    run_set: RunSet, runs: pd.DataFrame, baseline_id: str | None, out_dir: Path, figures_dir: Path
) -> SustainabilityReport | None:
    """Read each run's sustainability artifacts through ``run_set`` and write the table and figure; None
    (nothing written) when no run logged any sustainability number (runs from before they existed)."""
    logged = [f"metrics.{m}" for m, _, _ in COLUMNS if f"metrics.{m}" in runs.columns]
    if not logged or not runs[logged].notna().any().any():
        return None
    windows = {
        rid: full_window_j_per_image(run_set.artifact_json(rid, rs.ARTIFACT_PHASE_WINDOWS))
        for rid in runs["run_id"]
    }
    savings = savings_against(windows, baseline_id)
    table, numbers = sustainability_table(runs, savings, baseline_id)
    places = {
        label: run_set.artifact_json(rid, rs.ARTIFACT_CO2E_BY_PLACE)
        for label, rid in zip(runs["label"], runs["run_id"], strict=True)
    }
    plot = place_plot(places, figures_dir)
    md, csv, tex = (
        out_dir / "sustainability.md",
        out_dir / "sustainability.csv",
        out_dir / "sustainability.tex",
    )
    md.write_text("# Sustainability\n\n" + markdown_table(table) + "\n", encoding="utf-8")
    numbers.to_csv(csv, index=False)
    tex.write_text(
        latex_table(
            table,
            caption="Sustainability: GPU energy at batch 1 and at the best batch, work per joule, water, "
            "CO2e by place and the projection to one million images (n/a: not measured on this hardware).",
            label="tab:sustainability",
            stack_headers=True,
        ),
        encoding="utf-8",
    )
    notes = [] if plot.skipped is None else [f"figure co2e_by_place skipped: {plot.skipped}"]
    return SustainabilityReport(table, numbers, savings, plot, (md, csv, tex), notes)


def _metric(runs: pd.DataFrame, name: str) -> pd.Series:
    column = f"metrics.{name}"
    return runs[column].astype(float) if column in runs.columns else pd.Series(np.nan, index=runs.index)


def _cell(value: object, fmt: str) -> str:
    if is_missing(value):
        return NA
    if fmt == "gflop":
        return fmt_number(float(value) / 1e9, ".3g")
    if fmt.endswith("%"):
        return f"{float(value):{fmt}}"
    return fmt_number(value, fmt)


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else value
