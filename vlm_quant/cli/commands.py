"""`vlm-quant`: the command-line interface (evaluate, score). Thin: parse -> config -> one call -> exit code.

Every `evaluate` option is generated from `ExperimentConfig`'s fields, so `--help`, the YAML keys and
the MLflow params can never drift apart. An empty value means "not given": the YAML's value (or
the default) applies. User errors print one line and exit with status 2.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from vlm_quant.cli.launch_options import launcher_options, pop_launch_options
from vlm_quant.cli.paper import paper, slides
from vlm_quant.cli.pope import score_pope_command
from vlm_quant.cli.setup import setup
from vlm_quant.cli.vqa import score_vqa_command, spotcheck
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
    from vlm_quant.cli.terminal import quiet_terminal

    click.get_current_context().meta["run_log"] = quiet_terminal()  # logged as the run's logs/run.log


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
@click.option(
    "--first-run",
    is_flag=True,
    help="Choose weights and data from what this machine reaches (Hub or local COCO) and say so.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the machine-readable result (all metrics) as JSON."
)
@click.option("--parent-run-id", default=None, hidden=True, help="Sweep parent run (set by `sweep`).")
@config_options
def evaluate(
    config_path: str | None,
    tracking_uri: str | None,
    no_progress: bool,
    first_run: bool,
    as_json: bool,
    parent_run_id: str | None,
    **options: Any,
) -> None:
    """Evaluate one precision configuration: quality pass, cost pass, everything logged to one MLflow run."""
    from vlm_quant.run import distributed
    from vlm_quant.run.interrupts import RunInterrupted, graceful_signals
    from vlm_quant.run.resume import find_resume_target
    from vlm_quant.run.runner import prepare_experiment, run_experiment
    from vlm_quant.tracking.tracker import check_launcher_run, open_run, system_metrics_interval_s

    run_id = None
    options_given = dict(options)  # before --first-run fills in its choices
    try:
        if first_run:
            from vlm_quant.cli.first_run import first_run_options

            chosen, sentence = first_run_options(options.get("data_dir") or "")
            click.echo(sentence, err=True)
            options = {**chosen, **given(options)}  # what the user gave explicitly still wins
        cfg = ExperimentConfig.from_sources(config_path or None, **given(options))
        # under `mlflow run`: -P experiment / run_name / tracking-uri made true, or an error before any work
        check_launcher_run(chosen_experiment(cfg, options), cfg.run_name, tracking_uri=tracking_uri)
        relaunched = distributed.relaunch_if_needed(
            cfg.processes, evaluate_argv(config_path, tracking_uri, options)
        )
        if relaunched is not None:  # processes > 1: the ranks ran under `accelerate launch`
            sys.exit(relaunched)
        prepared = prepare_experiment(cfg)
        # a bad resume fails here, before any write; under `accelerate launch` only rank 0 reads the store
        target = find_resume_target(cfg, tracking_uri) if distributed.is_main() else None
        tags = {"mlflow.parentRunId": parent_run_id} if parent_run_id else None
        # SIGINT/SIGTERM: finish the batch, save, mark the run KILLED; handlers restored on exit.
        with (
            graceful_signals(),
            distributed.main_only(open_run)(  # other ranks: a NullTracker
                cfg.experiment,
                default_run_name(cfg, prepared),
                tracking_uri=tracking_uri,
                tags=tags,
                resume_run_id=target.run_id if target else None,
                system_metrics_interval_s=system_metrics_interval_s(len(prepared.data.ids)),
            ) as tracker,
        ):
            run_id = tracker.run_id
            try:
                summary = run_experiment(prepared, tracker, progress=not no_progress)
            finally:
                log_run_log(tracker)
    except UserError as exc:
        fail(str(exc))
    except RunInterrupted as exc:
        click.echo(
            f"interrupted by {exc.signal_name}: run {run_id} is KILLED with the predictions made so "
            f"far; continue it with --resume {run_id or 'auto'}",
            err=True,
        )
        sys.exit(exc.exit_code)
    if not as_json:
        from vlm_quant.cli.terminal import print_summary

        print_summary(
            click.echo,
            summary.metrics,
            run_name=default_run_name(cfg, prepared),
            run_id=summary.run_id,
            weights=cfg.weights,
            tracking_uri=getattr(tracker, "tracking_uri", tracking_uri or ""),
            experiment_id=getattr(tracker, "experiment_id", None),
        )
    else:
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
    if first_run:  # the last line a newcomer reads: what was sized down, and the full command
        from vlm_quant.cli.first_run import full_measurement_command

        note = full_measurement_command(cfg.quant, given(options_given))
        if note:
            click.echo(note, err=True)


def log_run_log(tracker: Any) -> None:
    """The run's full log (library messages kept off the terminal included) as ``logs/run.log``."""
    from vlm_quant.cli.terminal import ARTIFACT_RUN_LOG

    run_log = click.get_current_context().find_root().meta.get("run_log")
    if run_log and Path(run_log).is_file():
        for handler in logging.getLogger().handlers:
            handler.flush()
        folder, name = ARTIFACT_RUN_LOG.rsplit("/", 1)
        with tempfile.TemporaryDirectory(prefix="vlmq-log-") as tmp:
            shutil.copy(run_log, Path(tmp) / name)
            tracker.log_file(Path(tmp) / name, folder)


def evaluate_argv(config_path: str | None, tracking_uri: str | None, options: dict[str, Any]) -> list[str]:
    """This evaluate command line again (for the ranks `accelerate launch` starts)."""
    argv = ["evaluate", "--no-progress"]
    if config_path:
        argv += ["--config", config_path]
    if tracking_uri:
        argv += ["--tracking-uri", tracking_uri]
    for key, value in given(options).items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def chosen_experiment(cfg: ExperimentConfig, options: dict[str, Any]) -> str | None:
    """The experiment the user chose (an option, or a config file's non-default value), else None."""
    default = next(f.default for f in fields(ExperimentConfig) if f.name == "experiment")
    return cfg.experiment if "experiment" in given(options) or cfg.experiment != default else None


def default_run_name(cfg: ExperimentConfig, prepared: Any = None) -> str:
    """``run_name``, else ``<model short name> · <preset>[+override]``, plus the dtype that really ran when
    ``prepared`` says it differs from the preset's (see run/mlflow_views.py)."""
    from vlm_quant.run.mlflow_views import display_name

    return display_name(cfg, prepared)


@main.command()
@click.option("--quants", required=True, help="Comma-separated presets, e.g. fp16,int8,int8-vision,nf4.")
@click.option(
    "--force",
    type=click.BOOL,
    default=False,
    show_default=True,
    help="true: re-run configurations that already have a finished run with the same config.",
)
@click.option("--config", "config_path", default=None, help="Experiment YAML shared by every configuration.")
@click.option(
    "--tracking-uri",
    default=None,
    help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db].",
)
@launcher_options
@config_options
def sweep(
    quants: str, force: bool, config_path: str | None, tracking_uri: str | None, **options: Any
) -> None:
    """Every preset of --quants as a child run (own process) of one parent run.

    All configurations share the split, seed, prompt and engine. --launcher decides where the
    children run (docs/launchers.md).
    """
    from vlm_quant.run.runner import prepare_experiment
    from vlm_quant.study.launchers import make_launcher
    from vlm_quant.study.sweep import parse_quants, run_sweep
    from vlm_quant.tracking.run_story import sweep_display_name
    from vlm_quant.tracking.tracker import check_launcher_run, open_run, resolve_tracking_uri

    try:
        options.pop("quant", None)
        launch = pop_launch_options(options)
        cfg = ExperimentConfig.from_sources(config_path or None, **given(options))
        check_launcher_run(chosen_experiment(cfg, options), cfg.run_name, tracking_uri=tracking_uri)
        presets = parse_quants(quants)
        for quant in presets:  # every configuration's input is checked before the first one runs
            prepare_experiment(dataclasses.replace(cfg, quant=quant))
        launcher = make_launcher(launch, resolve_tracking_uri(tracking_uri))
        name = cfg.run_name or sweep_display_name(cfg.model, presets, cfg.split)
        with open_run(cfg.experiment, name, tracking_uri=tracking_uri) as tracker:
            outcome = run_sweep(cfg, presets, tracker, force=force, launcher=launcher)
    except UserError as exc:
        fail(str(exc))
    click.echo(
        json.dumps(
            {
                "parent_run_id": outcome.parent_run_id,
                "status": outcome.status,
                "run_ids": outcome.run_ids,
                "reasons": outcome.reasons,
            },
            indent=2,
        )
    )
    sys.exit(1 if outcome.failed else 0)


@main.command()
@click.option("--experiment", default=None, help="Compare the finished evaluate runs of this experiment.")
@click.option(
    "--parent-run", "--parent_run", "parent_run", default=None, help="Compare the children of this sweep run."
)
@click.option(
    "--run-ids", "--run_ids", "run_ids", default=None, help="Compare these runs (comma-separated ids)."
)
@click.option(
    "--out-dir",
    "--out_dir",
    "out_dir",
    default=None,
    help="Report folder [default: reports/<experiment or parent run>].",
)
@click.option(
    "--baseline",
    default=None,
    help="Baseline run id, run name, label or realized precision "
    "[default: the run realized in fp16, else bf16, else fp32].",
)
@click.option(
    "--bootstrap", "n_resamples", default=2000, show_default=True, help="Paired bootstrap resamples."
)
@click.option(
    "--tracking-uri",
    default=None,
    help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db].",
)
@click.option(
    "--log/--no-log",
    "log_run",
    default=True,
    show_default=True,
    help="Log the report folder as a `compare` run.",
)
@click.option(
    "--pareto-include-caveats",
    is_flag=True,
    help="Let runs with a caveat (resumed, OOM back-off, engine fallback) onto the Pareto fronts.",
)
def compare(
    experiment: str | None,
    parent_run: str | None,
    run_ids: str | None,
    out_dir: str | None,
    baseline: str | None,
    n_resamples: int,
    tracking_uri: str | None,
    log_run: bool,
    pareto_include_caveats: bool,
) -> None:
    """Tables, figures, qualitative examples and appendix of a study, read from the tracking store only."""
    from vlm_quant.study.report.build import compare as build_comparison
    from vlm_quant.study.report.logging import log_report_run
    from vlm_quant.tracking.tracker import resolve_tracking_uri

    try:
        uri = resolve_tracking_uri(tracking_uri)
        ids = [i.strip() for i in run_ids.split(",") if i.strip()] if run_ids else None
        folder = Path(out_dir or f"reports/{experiment or parent_run or 'runs'}")
        result = build_comparison(
            folder,
            experiment=experiment,
            parent_run=parent_run,
            run_ids=ids,
            tracking_uri=uri,
            baseline=baseline,
            n_resamples=n_resamples,
            pareto_include_caveats=pareto_include_caveats,
        )
        compare_run = log_report_run(result, experiment=experiment, tracking_uri=uri) if log_run else None
    except UserError as exc:
        fail(str(exc))
    for warning in result.warnings:  # low batch-1 agreement: on stderr, stdout stays one JSON object
        click.echo(f"warning: {warning}", err=True)
    if result.power:  # the smallest Δ the sample could detect, beside the verdicts
        click.echo(result.power, err=True)
    click.echo(
        json.dumps(
            {
                "out_dir": str(result.out_dir),
                "compare_run_id": compare_run,
                "runs": result.run_ids,
                "files": sorted(str(p) for p in result.paths),
            },
            indent=2,
        )
    )


@main.group()
def score() -> None:
    """Score a run evaluated with score=later, or rescore predictions files (prints one JSON object)."""


@score.command("captions")
@click.option(
    "--predictions", required=True, type=click.Path(), help="COCO results file: [{image_id, caption}]."
)
@click.option(
    "--annotations", required=True, type=click.Path(), help="COCO captions file (captions_val2017.json)."
)
@click.option(
    "--instances", default=None, type=click.Path(),
    help="COCO instances file (instances_val2017.json): adds CHAIR (chair_i, chair_s, object_recall and "
    "their counts), computed as an evaluate run does, the captions file's references included.",
)
def score_captions_command(predictions: str, annotations: str, instances: str | None) -> None:
    """CIDEr, BLEU-1..4, METEOR, ROUGE-L (and SPICE when its jars are present) of the images in P."""
    from vlm_quant.tasks.caption_metrics import score_caption_files

    try:
        result = score_caption_files(predictions, annotations, instances)
    except UserError as exc:
        fail(str(exc))
    click.echo(json.dumps(result, indent=2))


@score.command("run")
@click.argument("run_id")
@click.option(
    "--data-dir",
    "--data_dir",
    "data_dir",
    default=None,
    help="The dataset folder on this machine [default: the run's data_dir]; it must give the run's ids.",
)
@click.option(
    "--force",
    type=click.BOOL,
    default=False,
    show_default=True,
    help="true: score again a run that was already scored (at evaluate time or by an earlier `score run`).",
)
@click.option(
    "--tracking-uri",
    default=None,
    help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db].",
)
def score_run_command(run_id: str, data_dir: str | None, force: bool, tracking_uri: str | None) -> None:
    """Score RUN_ID, evaluated with score=later, into the same run (captioning needs Java on PATH).

    Logs what score=now would have (quality metrics, scored predictions, tags, the task's artifacts),
    then tags vlm_quant.scoring=done with where and when.
    """
    from vlm_quant.run.score_later import score_logged_run

    try:
        result = score_logged_run(run_id, data_dir=data_dir or "", force=force, tracking_uri=tracking_uri)
    except UserError as exc:
        fail(str(exc))
    click.echo(json.dumps({"run_id": result.run_id, "n_scored": result.n_scored, "metrics": result.metrics},
                          indent=2))


@main.command("load")
@click.argument("run_id")
@click.option(
    "--tracking-uri",
    default=None,
    help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db].",
)
@click.option("--device", default=None, help="Load onto this device [default: the run's].")
@click.option(
    "--check",
    "n_check",
    default=4,
    show_default=True,
    help="Regenerate the run's first N images and compare with its predictions (0: skip).",
)
def load_command(run_id: str, tracking_uri: str | None, device: str | None, n_check: int) -> None:
    """Load RUN_ID's logged model at its logged precision per role, and check it predicts what the run did."""
    from vlm_quant.models.logged_model import load_logged_model
    from vlm_quant.run.reload_check import check_predictions

    try:
        loaded = load_logged_model(run_id, tracking_uri=tracking_uri, device=device)
        check = check_predictions(run_id, loaded, n_check, tracking_uri) if n_check else None
    except UserError as exc:
        fail(str(exc))
    roles = {
        k.removeprefix("realized_precision_"): v
        for k, v in loaded.precision_map.role_params().items()
        if k.startswith("realized_precision_")
    }
    click.echo(
        f"loaded {loaded.recipe['model']} ({loaded.recipe['quant']}) from run {run_id}: "
        f"{loaded.verified_tensors} tensors bit-identical to the logged checkpoint"
    )
    for role, precision in roles.items():
        click.echo(f"  {role:<10} {precision}")
    if check is not None:
        for sample_id, (logged, again) in check.pairs.items():
            click.echo(f"  {'same' if logged == again else 'DIFFERENT'}  {sample_id}: {again!r}")
        if not check.identical:
            fail("the loaded model does not reproduce the run's predictions")


score.add_command(score_vqa_command)
score.add_command(score_pope_command)
main.add_command(spotcheck)
main.add_command(setup)
main.add_command(paper)
main.add_command(slides)

if __name__ == "__main__":
    main()
