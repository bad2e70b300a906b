"""VQA commands for the `vlm-quant` group: `score vqa` and `spotcheck import`.

Register them on the group in cli.py: ``score.add_command(score_vqa_command)`` and
``main.add_command(spotcheck)``. User errors print ``error: ...`` on stderr and exit with status 2.
"""

from __future__ import annotations

import json
import sys

import click

from vlm_quant.errors import UserError


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.command("vqa")
@click.option("--predictions", required=True, type=click.Path(),
              help="VQA results file: [{question_id, answer}, ...] (official format).")
@click.option("--annotations", required=True, type=click.Path(),
              help="Official annotations file ({annotations: [...]}, 10 answers per question).")
@click.option("--questions", default=None, type=click.Path(),
              help="Official questions file; when given, checked to cover the same question and image ids.")
@click.option("--dataset", default="vqav2", show_default=True,
              type=click.Choice(["vqav2", "textvqa", "vizwiz", "docvqa", "chartqa"]),
              help="docvqa: ANLS against val_v1.0.json; chartqa: relaxed accuracy against one "
                   "test_human.json / test_augmented.json (question_id = row index); else VQA accuracy.")
@click.option("--normalize-predictions", is_flag=True,
              help="Normalise each answer, and the human answers the same way, always (as `evaluate` "
                   "scores the vqa task); off: the official script on the answers as given.")
def score_vqa_command(predictions: str, annotations: str, questions: str | None, dataset: str,
                      normalize_predictions: bool) -> None:
    """Official VQA accuracy (0-1; x100 for the official percent), per answer and question type;
    DocVQA's ANLS or ChartQA's relaxed accuracy (0-1) with --dataset."""
    if dataset in ("docvqa", "chartqa"):
        from vlm_quant.tasks.ocr_rescore import score_ocr_files

        try:
            click.echo(json.dumps(score_ocr_files(dataset, predictions, annotations), indent=2))
        except UserError as exc:
            _fail(str(exc))
        return
    from vlm_quant.tasks.vqa_metrics import score_vqa_files

    try:
        # One scorer for both modes: with the flag, predictions *and* human answers are normalised
        # (as the vqa task of `evaluate` scores), so an exact "none" is never compared with a raw one.
        result = score_vqa_files(
            predictions, annotations, questions, normalize_prediction=normalize_predictions
        )
    except UserError as exc:
        _fail(str(exc))
    click.echo(json.dumps(result, indent=2))


@click.group()
def spotcheck() -> None:
    """Human spot-check of VQA runs: import a reviewer's filled sheet back into its run."""


@spotcheck.command("import")
@click.option("--run-id", required=True, help="The VQA run whose spotcheck/spotcheck.csv was filled.")
@click.option("--csv", "csv_path", required=True, type=click.Path(),
              help="The filled sheet: human_correct = 1/0, yes/no or true/false on every row.")
@click.option("--tracking-uri", default=None,
              help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db].")
def import_command(run_id: str, csv_path: str, tracking_uri: str | None) -> None:
    """Log human_accuracy, human_spotcheck_n and the human/automatic agreement to the run."""
    from vlm_quant.tasks.spotcheck import import_spotcheck

    try:
        metrics = import_spotcheck(run_id, csv_path, tracking_uri)
    except UserError as exc:
        _fail(str(exc))
    click.echo(json.dumps({"run_id": run_id, "metrics": metrics}, indent=2))
