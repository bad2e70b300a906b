"""Score a run's predictions and log what scoring produces: one function for both moments it can happen.

score=now: at the end of the quality pass (runner). score=later: the run ends with its predictions
(``predictions/partial.jsonl``) and costs, the quality metrics absent with a reason tag, and
`vlm-quant score run RUN_ID` (run/score_later.py) scores it afterwards, into the same run, on a
machine with Java. Both call `score_and_log`, so the two cannot log different things.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from vlm_quant.errors import UserError
from vlm_quant.tasks.base import Task, TaskData
from vlm_quant.tasks.safety import screen_and_log
from vlm_quant.tracking import run_schema

DEFERRED = "deferred"
DONE = "done"
DEFERRED_REASON = "scoring deferred (score=later)"
TAG_SCORED_AT = "vlm_quant.scored_at"  # UTC ISO time `score run` scored a deferred run
TAG_SCORED_HOST = "vlm_quant.scored_host"  # the machine that did
TAG_SCORING_FAILURE = "vlm_quant.scoring_failure"  # why a `score run` attempt failed (the run stays FINISHED)
JAVA_INSTALL = (
    "install Java (`apt-get install default-jre-headless`, or `conda install -c conda-forge openjdk`; "
    "the environment `mlflow run` builds from conda.yaml has it)"
)


def java_missing(task: Task) -> bool:
    """True when ``task``'s scoring runs a Java program and there is no `java` on PATH."""
    return task.scoring_needs_java and shutil.which("java") is None


def require_scorer(task: Task, score: str) -> None:
    """score=now on a machine that cannot score ``task``: a UserError naming both ways out, before any run."""
    if score != "now" or not java_missing(task):
        return
    raise UserError(
        f"task={task.name} is scored with pycocoevalcap, whose PTB tokenizer and METEOR are Java programs, "
        f"and there is no `java` on PATH. Either {JAVA_INSTALL}, or run with score=later (`-P score=later`, "
        "`--score later`): the run then ends with its predictions and costs but without scores, and "
        "`vlm-quant score run RUN_ID` scores it into the same run on a machine with Java."
    )


def deferred_tags() -> dict[str, str]:
    """The tags of a run whose scoring was deferred (compare shows its quality cells as absent, with why)."""
    return {run_schema.TAG_SCORING: DEFERRED, run_schema.TAG_SCORING_ABSENT: DEFERRED_REASON}


def score_and_log(
    tracker: Any, task: Task, data: TaskData, predictions: dict[Any, str]
) -> dict[str, float | None]:
    """Score ``predictions`` (by sample id, evaluation order) and log everything scoring produces.

    Logs the corpus metrics and the task's tags, ``predictions/predictions.jsonl`` (one row per sample
    with its scores), the predictions table, the task's extra artifacts and the output safety screen
    (which reads the rows). Returns the metrics logged (corpus scores + safety counts).
    """
    scores = task.score(data, predictions)  # first: a scorer that fails leaves nothing half-logged
    tracker.set_tags(scores.tags)
    tracker.log_metrics(scores.corpus)
    log_predictions(tracker, task, scores.rows)
    task.log_extras(tracker, data, scores)
    safety = screen_and_log(tracker, generated_rows(scores.rows))  # reads the predictions, changes nothing
    tracker.log_metrics(safety)
    return {**scores.corpus, **safety}


def generated_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per generation: POPE scores one answer in several rows (``distinct_question_id``)."""
    return [r for r in rows if r.get("distinct_question_id", r["sample_id"]) == r["sample_id"]]


def log_predictions(tracker: Any, task: Task, rows: list[dict[str, Any]]) -> None:
    """Predictions as JSONL (one row per sample, with per-sample scores) and as an MLflow table."""
    tracker.log_text("".join(json.dumps(r) + "\n" for r in rows), run_schema.ARTIFACT_PREDICTIONS_JSONL)

    def cell(value: Any) -> Any:
        return " | ".join(map(str, value)) if isinstance(value, list) else value

    tracker.log_table(
        {c: [cell(r.get(c)) for r in rows] for c in task.table_columns}, run_schema.ARTIFACT_PREDICTIONS_TABLE
    )
