"""What the paper and the slides are written from: the compare report plus the runs frame it came from.

:class:`Study` is read-only access to one comparison: the tidy runs frame (one row per run, in the
report's order: baseline first, random-weight runs last), the report's tables, deltas and figures, and
the baseline's logged environment. The prose modules only ask it questions; nothing here talks to
MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vlm_quant.study.report import caveats
from vlm_quant.study.report.build import ReportResult
from vlm_quant.study.report.plots import PARETO_COSTS, PlotOutcome
from vlm_quant.study.report.render import is_missing
from vlm_quant.study.report.tables import QUALITY_HEADERS
from vlm_quant.tracking import run_schema as rs

ROLES = (  # (role, its name in the prose)
    ("vision", "vision encoder"),
    ("projector", "projector"),
    ("language", "language model"),
    ("lm_head", "LM head"),
)


@dataclass(frozen=True)
class Study:
    """One comparison: ``runs`` (report order), the compare ``report``, the baseline's environment."""

    runs: pd.DataFrame
    report: ReportResult
    environment: dict | None
    selector: str
    samples: dict[str, dict] = field(default_factory=dict)  # baseline's predictions.jsonl rows by sample_id

    @property
    def task(self) -> str:
        return self.report.task

    @property
    def primary(self) -> str:
        """The primary quality metric's key (``cider``, ``vqa_accuracy``)."""
        return rs.PRIMARY_QUALITY_METRIC[self.task]

    @property
    def primary_name(self) -> str:
        return QUALITY_HEADERS[self.primary]

    @property
    def cost_refused(self) -> str | None:
        """Why the runs' costs may not be compared (the comparability gate's cost refusal), or None.

        When set, no sentence, table or figure of the paper or slides states a cost."""
        return self.report.tables.cost_refused

    @property
    def baseline(self) -> pd.Series | None:
        rows = self.runs[self.runs["run_id"] == self.report.baseline_run_id]
        return rows.iloc[0] if len(rows) else None

    @property
    def pretrained(self) -> pd.DataFrame:
        return self.runs[self.runs["weights"] != "random"]

    @property
    def random(self) -> pd.DataFrame:
        return self.runs[self.runs["weights"] == "random"]

    @property
    def others(self) -> pd.DataFrame:
        """Pretrained runs other than the baseline, in report order."""
        return self.pretrained[self.pretrained["run_id"] != self.report.baseline_run_id]

    def metric(self, row: pd.Series, name: str) -> float | None:
        """A run's metric, None when it did not log it (absent, never 0)."""
        value = row.get(f"metrics.{name}")
        return None if is_missing(value) else float(value)

    def param(self, row: pd.Series, name: str) -> str | None:
        value = row.get(f"params.{name}")
        return value if isinstance(value, str) and value != "" else None

    def realized(self, row: pd.Series, role: str) -> str | None:
        """What the precision audit found in ``role`` (``realized_precision_<role>``); None: not logged."""
        return self.param(row, f"realized_precision_{role}")

    def shared(self, name: str) -> str | None:
        """The param's value when every run logged the same one; None when absent or it differs."""
        values = {self.param(row, name) for _, row in self.runs.iterrows()}
        return values.pop() if len(values) == 1 else None

    def pareto_plot(self, cost_metric: str) -> PlotOutcome | None:
        """The drawn quality-vs-``cost_metric`` figure, or None when it was skipped."""
        stems = dict(PARETO_COSTS)
        name = f"quality_vs_{stems.get(cost_metric, cost_metric)}"
        return next((p for p in self.report.plots if p.name == name and not p.skipped), None)

    def figure(self, name: str) -> Path | None:
        """The PDF of a drawn report figure by name (``cost_bars``, ``gpu_power``, ``qualitative``)."""
        for plot in self.report.plots:
            if plot.name == name and not plot.skipped:
                return next(p for p in plot.paths if p.suffix == ".pdf")
        if name == "qualitative" and self.report.qualitative:
            return next((p for p in self.report.qualitative.paths if p.name == "qualitative.pdf"), None)
        return None


def study_from(
    report: ReportResult,
    runs: pd.DataFrame,
    environment: dict | None,
    selector: str,
    samples: list[dict] | None = None,
) -> Study:
    """Order ``runs`` (the loaded frame) as the report does and wrap everything in a :class:`Study`."""
    order = {rid: i for i, rid in enumerate(report.run_ids)}
    ordered = runs[runs["run_id"].isin(order)].copy()
    ordered["_order"] = ordered["run_id"].map(order)
    ordered = ordered.sort_values("_order").drop(columns="_order").reset_index(drop=True)
    ordered = caveats.with_baseline(ordered, report.baseline_run_id)
    by_id = {str(r["sample_id"]): r for r in samples or []}
    return Study(ordered, report, environment, selector, by_id)
