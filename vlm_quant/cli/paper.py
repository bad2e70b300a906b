"""`vlm-quant paper` and `vlm-quant slides`: the draft paper and the talk, from the tracking store only.

Same selection options as `compare`. Each writes the compare report into --out-dir, then `paper/`
(resp. `slides/`) with the .tex and what it includes, compiles it when TeX is installed, and logs
the folder as the artifacts of a `paper` (resp. `slides`) run next to the compared runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from vlm_quant.errors import UserError

TRACKING_HELP = "MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db]."


def selection_options(command: Any) -> Any:
    """The options `compare` takes: which runs, where to write, baseline, bootstrap, logging."""
    options = [
        click.option("--experiment", default=None, help="Use the finished evaluate runs of this experiment."),
        click.option(
            "--parent-run",
            "--parent_run",
            "parent_run",
            default=None,
            help="Use the children of this sweep run.",
        ),
        click.option(
            "--run-ids", "--run_ids", "run_ids", default=None, help="Use these runs (comma-separated ids)."
        ),
        click.option(
            "--out-dir",
            "--out_dir",
            "out_dir",
            default=None,
            help="Report folder [default: reports/<experiment or parent run>].",
        ),
        click.option(
            "--baseline", default=None, help="Baseline run id, run name or quant [default: fp16, else bf16]."
        ),
        click.option(
            "--bootstrap", "n_resamples", default=2000, show_default=True, help="Paired bootstrap resamples."
        ),
        click.option("--tracking-uri", "--tracking_uri", "tracking_uri", default=None, help=TRACKING_HELP),
        click.option(
            "--compile/--no-compile",
            "compile_pdf",
            default=True,
            show_default=True,
            help="Compile the PDF when TeX (latexmk or pdflatex) is installed.",
        ),
        click.option(
            "--log/--no-log",
            "log_run",
            default=True,
            show_default=True,
            help="Log the folder as the artifacts of a run next to the compared runs.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_draft(kind: str, template: str | None, **selection: Any) -> None:
    """Build, compile and log one draft; print a JSON summary (user errors: one message, exit 2)."""
    from vlm_quant.study.paper.build import build_draft, load_study
    from vlm_quant.study.report.logging import log_report_run
    from vlm_quant.tracking.tracker import resolve_tracking_uri

    try:
        uri = resolve_tracking_uri(selection["tracking_uri"])
        run_ids = selection["run_ids"]
        ids = [i.strip() for i in run_ids.split(",") if i.strip()] if run_ids else None
        folder = Path(
            selection["out_dir"] or f"reports/{selection['experiment'] or selection['parent_run'] or 'runs'}"
        )
        template_path = Path(template) if template else None
        if template_path is not None and not template_path.is_file():
            raise UserError(f"--template {template!r} is not a file")
        study = load_study(
            folder,
            experiment=selection["experiment"],
            parent_run=selection["parent_run"],
            run_ids=ids,
            tracking_uri=uri,
            baseline=selection["baseline"],
            n_resamples=selection["n_resamples"],
        )
        draft = build_draft(study, kind, template=template_path, compile=selection["compile_pdf"])
        run_id = None
        if selection["log_run"]:
            run_id = log_report_run(
                draft.report,
                experiment=selection["experiment"],
                tracking_uri=uri,
                kind=kind,
                files=draft.files,
                files_root=draft.folder,
                artifact_root=kind,
            )
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    compiled = draft.compiled
    if compiled is not None and compiled.pdf is None:
        click.echo(f"note: {compiled.message}", err=True)
    click.echo(
        json.dumps(
            {
                "folder": str(draft.folder),
                "pdf": str(compiled.pdf) if compiled and compiled.pdf else None,
                "tex_engine": compiled.engine if compiled else None,
                f"{kind}_run_id": run_id,
                "runs": list(draft.report.run_ids),
                "files": sorted(str(p) for p in draft.files),
            },
            indent=2,
        )
    )


@click.command()
@selection_options
@click.option(
    "--template",
    default=None,
    help="Your own LaTeX class (.cls) or preamble file (\\documentclass + packages) for paper.tex.",
)
def paper(template: str | None, **selection: Any) -> None:
    """A draft paper (paper.tex, references.bib, figures, tables; paper.pdf when TeX is installed)."""
    make_draft("paper", template, **selection)


@click.command()
@selection_options
def slides(**selection: Any) -> None:
    """A beamer deck of about eight frames (slides.tex; slides.pdf when TeX is installed)."""
    make_draft("slides", None, **selection)
