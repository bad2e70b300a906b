"""`vlm-quant`: the command-line interface (evaluate, score). Thin: parse -> config -> one call -> exit code.

Every `evaluate` option is generated from `ExperimentConfig`'s fields, so `--help`, the YAML keys and
the MLflow params can never drift apart. An empty value means "not given": the YAML's value (or
the default) applies. User errors print one line and exit with status 2.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import fields
from typing import Any

import click

from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError

TYPE_NAMES = {"int": "INTEGER", "float": "FLOAT", "bool": "true|false", "str": "TEXT"}


def config_options(command: Any) -> Any:
    """Decorate ``command`` with one --option per ExperimentConfig field (default: not given)."""
    for f in reversed(fields(ExperimentConfig)):
        choices = f.metadata.get("choices")
        default_text = f"default: {f.default!r}" + (f"; one of {', '.join(choices)}" if choices else "")
        command = click.option(
            # Parsed as text and coerced by ExperimentConfig, so that "" (MLproject's unset) is accepted.
            # `mlflow run -P n_samples=8` appends `--n_samples 8`: accept both spellings.
            *dict.fromkeys([f"--{f.name.replace('_', '-')}", f"--{f.name}"]),
            f.name,
            type=click.STRING,
            default=None,
            metavar=TYPE_NAMES[f.type],
            help=f"{f.metadata['help']} [{default_text}]",
        )(command)
    return command


def given(values: dict[str, Any]) -> dict[str, Any]:
    """Drop options that were not given (None or empty string: how MLproject passes an unset param)."""
    return {k: v for k, v in values.items() if v is not None and v != ""}


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """Measure what post-training quantization does to vision-language models (one MLflow run per config)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option(
    "--config",
    "config_path",
    default=None,
    help="Experiment YAML (see configs/); options given here override it.",
)
@click.option(
    "--tracking-uri",
    default=None,
    help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db].",
)
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@config_options
def evaluate(config_path: str | None, tracking_uri: str | None, no_progress: bool, **options: Any) -> None:
    """Evaluate one precision configuration: quality pass, cost pass, everything logged to one MLflow run."""
    from vlm_quant.runner import prepare_experiment, run_experiment
    from vlm_quant.tracking import open_run

    try:
        cfg = ExperimentConfig.from_sources(config_path or None, **given(options))
        prepared = prepare_experiment(cfg)
        run_name = cfg.run_name or f"{cfg.model.rstrip('/').split('/')[-1]}-{cfg.quant}"
        with open_run(cfg.experiment, run_name, tracking_uri=tracking_uri) as tracker:
            summary = run_experiment(prepared, tracker, progress=not no_progress)
    except UserError as exc:
        fail(str(exc))
    click.echo(
        json.dumps(
            {
                "run_id": summary.run_id,
                "n_predictions": summary.n_predictions,
                "n_skipped": summary.n_skipped,
                "metrics": summary.metrics,
            },
            indent=2,
        )
    )


@main.group()
def score() -> None:
    """Rescore logged predictions against official-format annotations (prints one JSON object)."""


@score.command("captions")
@click.option(
    "--predictions", required=True, type=click.Path(), help="COCO results file: [{image_id, caption}]."
)
@click.option(
    "--annotations", required=True, type=click.Path(), help="COCO captions file (captions_val2017.json)."
)
def score_captions_command(predictions: str, annotations: str) -> None:
    """CIDEr, BLEU-1..4, METEOR, ROUGE-L (and SPICE when its jars are present) of the images in P."""
    from vlm_quant.tasks.caption_metrics import score_caption_files

    try:
        result = score_caption_files(predictions, annotations)
    except UserError as exc:
        fail(str(exc))
    click.echo(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
