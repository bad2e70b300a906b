"""The paper's figures: quality-vs-cost scatters with the Pareto front, cost bars, GPU power traces.

Every plot function returns a :class:`PlotOutcome` holding the exact data it drew, so tests (and the
HTML page) can read the series rather than trust that a file exists. A plot whose metric no run
logged is skipped with the reason recorded, never drawn empty. Figures are built with
``matplotlib.figure.Figure`` directly: no pyplot global state, no GUI backend needed.

Runs with a caveat (`caveats`: resumed, OOM back-off, engine fallback) are drawn but kept off the
Pareto front, hollow and listed in ``data["excluded"]``, unless ``include_caveats`` is set. When
the runs' costs may not be compared (`comparability.cost_refusal`) every cost figure is skipped
with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vlm_quant.study.report import caveats
from vlm_quant.study.report.tables import COST_COLUMNS, QUALITY_HEADERS

# Quality is plotted against these costs (metric, short file-name stem).
PARETO_COSTS = (
    ("latency_ms_p50", "latency"),
    ("peak_vram_allocated_mib", "peak_vram"),
    ("size_on_disk_mib", "size_on_disk"),
    ("energy_j_per_image", "energy"),
)
COST_AXIS = {metric: header for metric, header, _ in COST_COLUMNS} | {
    "peak_rss_mib": "Peak RSS (MiB)",
    # the energy windows (cost_cells): J/image of the cost pass's throughput, CO2e of the quality pass
    "energy_j_per_image": "Energy (J/image, cost pass)",
    "co2e_kg": "CO2e (kg, quality pass)",
}


@dataclass(frozen=True)
class PlotOutcome:
    """One figure: its files (PNG then PDF), the data drawn, or why it was skipped.

    ``figure`` is the matplotlib Figure itself, kept so its artists can be checked against ``data``.
    """

    name: str
    paths: tuple[Path, ...] = ()
    data: dict = field(default_factory=dict)
    skipped: str | None = None
    figure: Figure | None = field(default=None, repr=False, compare=False)


def pareto_front(costs: np.ndarray, qualities: np.ndarray) -> np.ndarray:
    """Boolean mask of points no other point beats: lower-or-equal cost and higher-or-equal quality,
    strictly better in at least one. Points with a missing value are never on the front."""
    costs, qualities = np.asarray(costs, float), np.asarray(qualities, float)
    valid = ~(np.isnan(costs) | np.isnan(qualities))
    front = valid.copy()
    for i in np.flatnonzero(valid):
        no_worse = valid & (costs <= costs[i]) & (qualities >= qualities[i])
        better = (costs < costs[i]) | (qualities > qualities[i])
        front[i] = not np.any(no_worse & better)
    return front


def quality_vs_cost(
    runs: pd.DataFrame,
    cost_metric: str,
    quality_metric: str,
    out_dir: Path,
    stem: str,
    *,
    include_caveats: bool = False,
) -> PlotOutcome:
    """Scatter of ``quality_metric`` against ``cost_metric`` for pretrained runs, Pareto front marked.

    ``data["points"]`` has columns label, cost, quality, caveat (the run has one), pareto (only runs
    with both values). Runs with a caveat are not eligible for the front unless ``include_caveats``;
    ``data["excluded"]`` lists their labels.
    """
    name = f"quality_vs_{stem}"
    pretrained = runs[runs["weights"] != "random"]
    if pretrained.empty:
        return PlotOutcome(name, skipped="no pretrained-weight run (random weights have no quality)")
    cost = _values(pretrained, cost_metric)
    quality = _values(pretrained, quality_metric)
    if cost.isna().all():
        return PlotOutcome(name, skipped=f"metric '{cost_metric}' absent from every pretrained run")
    if quality.isna().all():
        return PlotOutcome(name, skipped=f"metric '{quality_metric}' absent from every pretrained run")
    points = pd.DataFrame(
        {
            "label": pretrained["label"].to_numpy(),
            "cost": cost.to_numpy(),
            "quality": quality.to_numpy(),
            "caveat": [caveats.keeps_off_front(keys) for keys in caveats.caveat_keys(pretrained)],
        }
    )
    missing = points.loc[points[["cost", "quality"]].isna().any(axis=1), "label"].tolist()
    points = points.dropna(subset=["cost", "quality"]).reset_index(drop=True)
    eligible = ~points["caveat"] if not include_caveats else pd.Series(True, index=points.index)
    # A run with a caveat may not dominate others either: the front is computed without it.
    candidate_cost = points["cost"].where(eligible).to_numpy(float)
    points["pareto"] = pareto_front(candidate_cost, points["quality"].where(eligible).to_numpy(float))
    excluded = points.loc[~eligible, "label"].tolist()

    fig = Figure(figsize=(4.2, 3.2), layout="constrained")
    ax = fig.add_subplot()
    plain = points[~points["label"].isin(excluded)]
    ax.scatter(plain["cost"], plain["quality"], color="0.6", label="configuration", zorder=2)
    if excluded:
        kept_off = points[points["label"].isin(excluded)]
        ax.scatter(
            kept_off["cost"], kept_off["quality"], facecolors="none", edgecolors="0.4",
            label="caveat: not on the front", zorder=2,
        )
    front = points[points["pareto"]].sort_values("cost")
    ax.plot(front["cost"], front["quality"], "o-", color="tab:red", label="Pareto front", zorder=3)
    for row in points.itertuples():
        ax.annotate(row.label, (row.cost, row.quality), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(COST_AXIS.get(cost_metric, cost_metric))
    ax.set_ylabel(QUALITY_HEADERS.get(quality_metric, quality_metric))
    ax.margins(x=0.15, y=0.1)  # room for the point labels at the edges
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    data = {
        "cost_metric": cost_metric,
        "quality_metric": quality_metric,
        "points": points,
        "missing": missing,
        "excluded": excluded,
        "include_caveats": include_caveats,
    }
    return PlotOutcome(name, _save(fig, out_dir, name), data, figure=fig)


def cost_bars(runs: pd.DataFrame, out_dir: Path) -> PlotOutcome:
    """Horizontal bar grid, one panel per cost metric that some run logged; random-weight bars hatched.

    ``data["panels"]`` maps metric -> frame (label, value, random); ``data["absent"]`` lists metrics
    no run logged (no panel drawn for them). A run missing one metric gets an "n/a" label, no bar.
    """
    metrics = [m for m, _, _ in COST_COLUMNS]
    if _values(runs, "peak_vram_allocated_mib").isna().all():  # CPU runs: RSS is their peak memory
        metrics[metrics.index("peak_vram_allocated_mib")] = "peak_rss_mib"
    present = [m for m in metrics if _values(runs, m).notna().any()]
    absent = [m for m in metrics if m not in present]
    if not present:
        return PlotOutcome("cost_bars", skipped="no cost metric was logged by any run")
    random = (runs["weights"] == "random").to_numpy()
    labels = [
        (f"{lab}†" if r else lab) + caveats.marks(keys)
        for lab, r, keys in zip(runs["label"], random, caveats.caveat_keys(runs), strict=True)
    ]
    columns = min(3, len(present))
    rows = -(-len(present) // columns)
    width = 3.0 * columns + 0.07 * max(len(lab) for lab in labels)
    # Fixed margins instead of constrained layout: several times faster on a grid, same result here.
    fig = Figure(figsize=(width, 0.35 * len(runs) * rows + 0.6 * rows + 0.45))
    axes = list(fig.subplots(rows, columns, sharey=True, squeeze=False).flat)
    positions = np.arange(len(runs))
    panels = {}
    for ax, metric in zip(axes, present, strict=False):  # axes may outnumber metrics
        values = _values(runs, metric).to_numpy()
        bars = ax.barh(positions, np.nan_to_num(values), color="tab:blue")
        for bar, value, is_random in zip(bars, values, random, strict=True):
            if is_random:
                bar.set_hatch("//")
                bar.set_facecolor("0.8")
            if np.isnan(value):  # a missing value is a labelled gap, never a zero-length bar
                bar.set_visible(False)
                ax.text(0, bar.get_y() + bar.get_height() / 2, " n/a", va="center", fontsize=7)
        ax.set_title(COST_AXIS[metric], fontsize=8)
        ax.tick_params(labelsize=7)
        panels[metric] = pd.DataFrame({"label": runs["label"].to_numpy(), "value": values, "random": random})
    for ax in axes[len(present) :]:
        ax.set_visible(False)
    axes[0].set_yticks(positions, labels)
    axes[0].invert_yaxis()  # shared: first configuration on top in every panel, as in the tables
    fig.subplots_adjust(
        left=(0.07 * max(len(lab) for lab in labels) + 0.15) / width,
        right=0.98,
        top=1 - 0.35 / fig.get_figheight(),
        bottom=0.4 / fig.get_figheight(),
        hspace=0.5,
        wspace=0.12,
    )
    data = {"panels": panels, "absent": absent}
    return PlotOutcome("cost_bars", _save(fig, out_dir, "cost_bars"), data, figure=fig)


def power_traces(
    traces: dict[str, pd.DataFrame], out_dir: Path, random_labels: frozenset[str] = frozenset()
) -> PlotOutcome:
    """GPU power (W) of every configuration overlaid on one time axis (s since its run started).

    ``traces`` maps label -> frame with columns t_s, power_w; empty frames are left out and listed
    in ``data["missing"]``. Labels in ``random_labels`` (random-weight runs) are drawn dashed.
    """
    drawn = {label: frame for label, frame in traces.items() if len(frame)}
    missing = [label for label, frame in traces.items() if not len(frame)]
    if not drawn:
        return PlotOutcome("gpu_power", skipped="no run logged a gpu_power_w history (no NVML GPU)")
    fig = Figure(figsize=(5.5, 3.0), layout="constrained")
    ax = fig.add_subplot()
    for label, frame in drawn.items():
        ax.plot(
            frame["t_s"],
            frame["power_w"],
            label=label,
            linewidth=1.0,
            linestyle="--" if label in random_labels else "-",
        )
    ax.set_xlabel("time since run start (s)")
    ax.set_ylabel("GPU power (W)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    data = {"traces": drawn, "missing": missing}
    return PlotOutcome("gpu_power", _save(fig, out_dir, "gpu_power"), data, figure=fig)


def make_plots(
    runs: pd.DataFrame,
    quality_metric: str,
    traces: dict[str, pd.DataFrame],
    out_dir: Path,
    *,
    include_caveats: bool = False,
    cost_refused: str | None = None,
) -> list[PlotOutcome]:
    """All figures of the report, written under ``out_dir`` as PNG and PDF.

    ``cost_refused``: every figure is a cost figure, so each is skipped with that reason.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if cost_refused is not None:
        names = [f"quality_vs_{stem}" for _, stem in PARETO_COSTS] + ["cost_bars", "gpu_power"]
        return [PlotOutcome(name, skipped=cost_refused.splitlines()[0]) for name in names]
    costs = list(PARETO_COSTS)
    if _values(runs, "peak_vram_allocated_mib").isna().all() and _values(runs, "peak_rss_mib").notna().any():
        costs[costs.index(("peak_vram_allocated_mib", "peak_vram"))] = ("peak_rss_mib", "peak_rss")  # CPU
    outcomes = [
        quality_vs_cost(runs, metric, quality_metric, out_dir, stem, include_caveats=include_caveats)
        for metric, stem in costs
    ]
    random_labels = frozenset(runs.loc[runs["weights"] == "random", "label"])
    return outcomes + [cost_bars(runs, out_dir), power_traces(traces, out_dir, random_labels)]


def _values(runs: pd.DataFrame, metric: str) -> pd.Series:
    column = f"metrics.{metric}"
    return runs[column].astype(float) if column in runs.columns else pd.Series(np.nan, index=runs.index)


def _save(fig: Figure, out_dir: Path, name: str) -> tuple[Path, Path]:
    png, pdf = out_dir / f"{name}.png", out_dir / f"{name}.pdf"
    fig.savefig(png, dpi=150)
    # No creation date in the PDF: the same runs give byte-identical figures.
    fig.savefig(pdf, metadata={"CreationDate": None})
    return png, pdf
