"""``paper`` and ``slides``: the compare report, then the LaTeX draft (or deck) from the same numbers.

Both read the tracking store only (through ``load_runs``), write the compare report into ``out_dir``
(the tables and figures they use), then ``out_dir/paper/`` or ``out_dir/slides/`` with the .tex,
everything it includes, ``numbers.json`` (each number the prose states, with its source) and, when
TeX is installed, the PDF.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vlm_quant.study.paper.compile import CompileOutcome, compile_pdf
from vlm_quant.study.paper.document import write_paper
from vlm_quant.study.paper.slides import write_slides
from vlm_quant.study.paper.study import Study, study_from
from vlm_quant.study.report.bootstrap import DEFAULT_RESAMPLES
from vlm_quant.study.report.build import ReportResult, build_report
from vlm_quant.study.report.query import load_runs


@dataclass(frozen=True)
class DraftResult:
    """A written paper or deck: its folder, files (for logging), the PDF outcome, the report behind it."""

    kind: str  # "paper" | "slides"
    folder: Path
    files: tuple[Path, ...]
    compiled: CompileOutcome | None  # None: compilation not asked for
    report: ReportResult


def load_study(
    out_dir: Path,
    *,
    experiment: str | None = None,
    parent_run: str | None = None,
    run_ids: Sequence[str] | None = None,
    tracking_uri: str | None = None,
    baseline: str | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Study:
    """Load the runs and write ``compare``'s report into ``out_dir`` (through the same comparability gate:
    the same ``UserError`` for runs ``compare`` refuses, the same cost refusal), wrap it."""
    run_set = load_runs(
        experiment=experiment, parent_run=parent_run, run_ids=run_ids, tracking_uri=tracking_uri
    )
    report = build_report(run_set, Path(out_dir), baseline=baseline, n_resamples=n_resamples)
    anchor = report.baseline_run_id or report.run_ids[0]
    samples = run_set.predictions(report.baseline_run_id) if report.baseline_run_id else None
    return study_from(report, run_set.runs, run_set.environment(anchor), run_set.selector, samples)


def build_draft(
    study: Study, kind: str, *, template: Path | None = None, compile: bool = True
) -> DraftResult:
    """Write (and compile) ``paper/`` or ``slides/`` under the report folder."""
    folder = study.report.out_dir / kind
    if kind == "paper":
        written, stated = write_paper(study, folder, template=template)
    else:
        written, stated = write_slides(study, folder)
    numbers = folder / "numbers.json"
    numbers.write_text(json.dumps(stated.as_records(), indent=1), encoding="utf-8")
    files = [*written.files, numbers]
    outcome = compile_pdf(written.tex, bibliography=kind == "paper") if compile else None
    if outcome is not None and outcome.pdf is not None:
        files.append(outcome.pdf)
    return DraftResult(kind, folder, tuple(files), outcome, study.report)
