"""`vlm-quant score pope`: POPE's metrics from a published question file and an answer file.

Registered on the `score` group in commands.py (``score.add_command(score_pope_command)``). User errors
print ``error: ...`` on stderr and exit with status 2.
"""

from __future__ import annotations

import json
import sys

import click

from vlm_quant.errors import UserError


@click.command("pope")
@click.option("--predictions", required=True, type=click.Path(),
              help="Answers: JSON lines of {question_id, text} (LLaVA's answer files).")
@click.option("--questions", required=True, type=click.Path(),
              help="One POPE question file: JSON lines of {question_id, image, text, label} "
                   "(coco_pope_<split>.json).")
def score_pope_command(predictions: str, questions: str) -> None:
    """POPE accuracy, precision, recall, F1, yes-ratio (0-1) by the published answer rule."""
    from vlm_quant.tasks.pope_rescore import score_pope_files

    try:
        result = score_pope_files(predictions, questions)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps(result, indent=2))
