"""`vlm-quant score run RUN_ID`: score a run evaluated with score=later, into that same run.

A GPU node often has no Java, which the caption metrics need. score=later ends the run with its
predictions (``predictions/partial.jsonl``) and costs; this scores it afterwards on a machine with
Java. It reads what the run logged (its resolved config, the evaluated ids, the predictions), rebuilds
the task's data through the task's own ``prepare`` (``data_dir`` overridable: the scoring machine may
keep COCO elsewhere), checks that this gives the logged ids, and logs through `scoring.score_and_log`,
the function score=now uses, so the run ends up with what immediate scoring would have logged
(metrics, scored predictions JSONL and table, the task's tags and extra artifacts, the safety screen,
the description). Every refusal happens before the run is touched.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.run import batch_invariance, mlflow_views, scoring
from vlm_quant.run.partial_predictions import ARTIFACT_PATH, parse_rows, restore
from vlm_quant.run.resume import logged_config
from vlm_quant.tasks.base import TaskData
from vlm_quant.tasks.captioning_data import ids_hash
from vlm_quant.tasks.registry import make_task
from vlm_quant.tracking import run_schema
from vlm_quant.tracking.run_story import split_inputs
from vlm_quant.tracking.tracker import add_to_finished_run, clean_metrics, store_client, utc_now, with_retries


@dataclass(frozen=True)
class ScoredRun:
    """What `score run` prints: the run, its new quality metrics, how many predictions were scored."""

    run_id: str
    metrics: dict[str, float]
    n_scored: int


def score_logged_run(
    run_id: str, *, data_dir: str = "", force: bool = False, tracking_uri: str | None = None
) -> ScoredRun:
    """Score run ``run_id``'s logged predictions and log the scores into it (see the module docstring)."""
    client = store_client(tracking_uri)
    run = fetch_run(client, run_id)
    check_scorable(run, force)
    logged = logged_experiment(client, run)
    cfg = dataclasses.replace(logged, data_dir=data_dir) if data_dir else logged
    task = make_task(cfg.task, cfg.dataset)
    if scoring.java_missing(task):
        raise UserError(
            f"run {run_id} (task={cfg.task}) is scored with pycocoevalcap, whose PTB tokenizer and METEOR "
            f"are Java programs, and there is still no `java` on PATH here: {scoring.JAVA_INSTALL}, or run "
            f"`vlm-quant score run {run_id}` on a machine that has Java."
        )
    data = task.prepare(cfg)
    check_same_ids(artifact_json(client, run_id, run_schema.ARTIFACT_IDS), data, run_id, data_dir)
    params = run.data.params
    check_same_inputs(params, data, run_id, data_dir)
    predictions = logged_predictions(client, run_id, data)
    with add_to_finished_run(
        run_id, failure_tag=scoring.TAG_SCORING_FAILURE, tracking_uri=tracking_uri
    ) as tracker:
        metrics = clean_metrics(scoring.score_and_log(tracker, task, data, predictions))
        metrics.update(invariance_delta(client, run, task, data, tracker))
        # evaluate logs every metric once more, linked to the logged model and the split, once both exist
        as_evaluated = dataclasses.replace(data, data_dir=logged.data_dir) if data_dir else data
        if tracker.link_logged_model(split_inputs(logged, as_evaluated, ids_hash)[0]):
            tracker.log_metrics(metrics)
        mlflow_views.describe_values(
            tracker, cfg, data.dataset, params.get("dtype_note", ""),
            params.get("engine_resolved", cfg.engine), {**run.data.metrics, **metrics},
        )
        tracker.delete_tag(run_schema.TAG_SCORING_ABSENT)
        tracker.set_tags({
            run_schema.TAG_SCORING: scoring.DONE,
            scoring.TAG_SCORED_AT: utc_now(),
            scoring.TAG_SCORED_HOST: socket.gethostname(),
        })
    return ScoredRun(run_id, metrics, len(predictions))


def invariance_delta(client: Any, run: Any, task: Any, data: TaskData, tracker: Any) -> dict[str, float]:
    """The batch-invariance delta the run could not score when it ran (no Java then), from its logged
    subset; logged into the run (its absent-reason tag removed) and returned. Nothing when it had one."""
    if run_schema.TAG_BATCH_INVARIANCE_DELTA_ABSENT not in run.data.tags:
        return {}
    rows = artifact_text(client, run.info.run_id, run_schema.ARTIFACT_BATCH_INVARIANCE)
    delta, _ = batch_invariance.delta_from_rows(task, data, rows) if rows else (None, None)
    if delta is None:
        return {}
    key = run_schema.scoring_key(task.name, data.dataset)  # the dataset's own metric (docvqa: anls)
    metric = {run_schema.batch_invariance_delta_metric(key): delta}
    tracker.log_metrics(metric)
    tracker.delete_tag(run_schema.TAG_BATCH_INVARIANCE_DELTA_ABSENT)
    return metric


def fetch_run(client: Any, run_id: str) -> Any:
    try:
        return with_retries(client.get_run, run_id)
    except Exception as error:
        first = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise UserError(f"no run {run_id!r} in the tracking store {client.tracking_uri}: {first}") from error


def check_scorable(run: Any, force: bool) -> None:
    """A FINISHED evaluate run whose scoring was deferred (or any scored one, with ``force``)."""
    run_id, tags = run.info.run_id, run.data.tags
    kind = tags.get(run_schema.TAG_KIND)
    if kind not in (None, "evaluate"):
        raise UserError(f"run {run_id} is a {kind} run; only evaluate runs have predictions to score.")
    if run.info.status != "FINISHED":
        raise UserError(
            f"run {run_id} is {run.info.status}, not FINISHED: finish it first "
            f"(`vlm-quant evaluate ... --resume {run_id}`), then score it."
        )
    state = tags.get(run_schema.TAG_SCORING)
    if state == scoring.DEFERRED or force:
        return
    if state == scoring.DONE:
        when = f" at {tags[scoring.TAG_SCORED_AT]}" if scoring.TAG_SCORED_AT in tags else ""
        raise UserError(f"run {run_id} was already scored by `score run`{when}; --force true scores again.")
    raise UserError(f"run {run_id} was scored when it ran (score=now); --force true scores again.")


def logged_experiment(client: Any, run: Any) -> ExperimentConfig:
    """The run's resolved config (artifact config/resolved_config.yaml), as an ExperimentConfig."""
    values = logged_config(client, run)
    if values is None:
        raise UserError(f"run {run.info.run_id} has no {run_schema.ARTIFACT_CONFIG}: its config is unknown.")
    return ExperimentConfig.from_mapping({**values, "resume": ""})


def artifact_text(client: Any, run_id: str, path: str) -> str | None:
    """A text artifact of the run, or None when the run has no such file."""
    folder = path.rpartition("/")[0]
    listed = with_retries(client.list_artifacts, run_id, folder or None)
    if not any(f.path == path for f in listed):
        return None
    with tempfile.TemporaryDirectory(prefix="vlmq-score-") as tmp:
        return Path(with_retries(client.download_artifacts, run_id, path, tmp)).read_text()


def artifact_json(client: Any, run_id: str, path: str) -> Any:
    text = artifact_text(client, run_id, path)
    if text is None:
        raise UserError(f"run {run_id} has no {path}: its evaluated ids are unknown, so it cannot be scored.")
    return json.loads(text)


def check_same_ids(logged: dict[str, Any], data: TaskData, run_id: str, data_dir: str) -> None:
    """The rebuilt split must give the run's evaluated ids, in order (CIDEr's IDF depends on the set)."""
    ids = list(logged.get("ids", []))
    if [str(i) for i in ids] == [str(i) for i in data.ids]:
        return
    where = f"--data-dir {data_dir}" if data_dir else "the run's data_dir"
    missing = len({str(i) for i in ids} - {str(i) for i in data.ids})
    raise UserError(
        f"run {run_id}: {where} gives another split than the run evaluated ({len(data.ids)} ids, hash "
        f"{ids_hash(data.ids)}; the run: {len(ids)} ids, hash {ids_hash(ids)}, {missing} not in this split). "
        "Point --data-dir to the same dataset files the run used."
    )


def check_same_inputs(params: dict[str, str], data: TaskData, run_id: str, data_dir: str) -> None:
    """The rebuilt data must have the scoring inputs the run had: no data param the run did not log, and
    every annotation file it logged (``*_file`` params of the data, e.g. CHAIR's ``chair_instances_file``),
    so that a folder without the instance annotations cannot silently drop CHAIR."""
    config_keys = {f.name for f in dataclasses.fields(ExperimentConfig)}
    new = sorted(k for k in data.params if k not in params)
    lost = sorted(k for k in params if k.endswith("_file") and k not in config_keys and k not in data.params)
    if not new and not lost:
        return
    where = f"--data-dir {data_dir}" if data_dir else "the run's data_dir"
    said = [f"the run had {k}={params[k]!r}, {where} has none" for k in lost]
    said += [f"{where} adds {k}={data.params[k]!r}, which the run did not have" for k in new]
    raise UserError(
        f"run {run_id}: scoring from {where} would not score what the run evaluated: {'; '.join(said)}. "
        "Point --data-dir to the same dataset files the run used."
    )


def logged_predictions(client: Any, run_id: str, data: TaskData) -> dict[Any, str]:
    """The run's predictions (predictions/partial.jsonl) by sample id, in evaluation order.

    Skipped samples (unreadable images) are left out, as the quality pass leaves them out of scoring.
    """
    text = artifact_text(client, run_id, ARTIFACT_PATH)
    restored = restore(parse_rows(text))
    if not restored.predictions:
        raise UserError(f"run {run_id} has no predictions ({ARTIFACT_PATH} missing or empty) to score.")
    done = {str(k) for k in restored.done}
    lacking = [i for i in data.ids if str(i) not in done]
    if lacking:
        raise UserError(
            f"run {run_id}: {ARTIFACT_PATH} lacks {len(lacking)} of the {len(data.ids)} evaluated samples "
            f"(first: {lacking[0]!r}); resume the run to predict them, then score it."
        )
    by_key = {str(k): v for k, v in restored.predictions.items()}
    return {i: by_key[str(i)] for i in data.ids if str(i) in by_key}
