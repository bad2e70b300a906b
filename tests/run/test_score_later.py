"""score=later + `vlm-quant score run`: the same run content as scoring at once; refusals; missing Java.

The key test evaluates one tiny VLM twice on the real COCO slice, into one temp store: score=now, and
score=later followed by `score run`. Java is on this machine's PATH, so both paths really score; a
machine without Java is simulated by hiding `java` from `shutil.which`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
import yaml
from click.testing import CliRunner

from vlm_quant.cli.commands import main
from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.run import scoring
from vlm_quant.run.score_later import logged_predictions
from vlm_quant.tasks.base import TaskData
from vlm_quant.tasks.registry import make_task
from vlm_quant.tasks.safety import ARTIFACT_FLAGGED
from vlm_quant.tracking import run_schema

REPO = Path(__file__).resolve().parents[2]
# Tags that say which process or when, or that only a deferred run has: everything else must be equal.
PROCESS_TAGS = {"vlm_quant.host", "vlm_quant.pid", "vlm_quant.heartbeat", "mlflow.note.content"}
DEFERRAL_TAGS = {run_schema.TAG_SCORING, scoring.TAG_SCORED_AT, scoring.TAG_SCORED_HOST}
# Artifacts whose content is the scoring's (the rest, e.g. logs and timings, differ by run).
SCORED_ARTIFACTS = (
    run_schema.ARTIFACT_PREDICTIONS_JSONL, run_schema.ARTIFACT_PREDICTIONS_TABLE, ARTIFACT_FLAGGED
)


def hide_java(monkeypatch) -> None:
    """`shutil.which("java")` finds nothing (as on a GPU node without Java); every other lookup works."""
    real = shutil.which

    def which(name, *args, **kwargs):
        return None if name == "java" else real(name, *args, **kwargs)

    monkeypatch.setattr(shutil, "which", which)


def evaluate_args(tiny_vlm_dirs, coco_dir, score: str) -> list[str]:
    options = dict(
        model=tiny_vlm_dirs["idefics3"], data_dir=coco_dir, n_samples=4, batch_size=2, max_new_tokens=6,
        seed=3, cost_samples=2, cost_iterations=1, cost_warmup=0, cost_new_tokens=2, idle_seconds=0,
        experiment="score-later", score=score,
    )
    return ["evaluate", "--no-progress", "--json", *(f"--{k}={v}" for k, v in options.items())]


def evaluate(tiny_vlm_dirs, coco_dir, score: str) -> str:
    result = CliRunner().invoke(main, evaluate_args(tiny_vlm_dirs, coco_dir, score))
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{\n") :])["run_id"]


def score_run(*args: str) -> object:
    return CliRunner().invoke(main, ["score", "run", *args])


def artifacts(client, run_id: str, dst: Path) -> dict[str, str]:
    """Every artifact of the run (path -> text), the logged model's files excepted."""
    root = Path(client.download_artifacts(run_id, "", str(dst)))
    return {
        p.relative_to(root).as_posix(): p.read_text(errors="replace") for p in root.rglob("*") if p.is_file()
    }


def quality_keys(metrics: dict[str, float]) -> set[str]:
    return {k for k in metrics if not k.startswith("system/")}


@pytest.mark.slow  # two tiny evaluates and five `score run`s in-process: ~40 s on 2 cores
def test_score_later_then_score_run_logs_what_scoring_at_once_logs(tiny_vlm_dirs, coco_dir, tracking_uri,
                                                                    tmp_path, monkeypatch):
    client = mlflow.MlflowClient(tracking_uri)
    now_id = evaluate(tiny_vlm_dirs, coco_dir, "now")
    later_id = evaluate(tiny_vlm_dirs, coco_dir, "later")

    # Deferred: predictions and costs, no quality metric, tagged so; no scored predictions file yet.
    deferred = client.get_run(later_id)
    now = client.get_run(now_id)
    assert deferred.info.status == "FINISHED"
    assert deferred.data.tags[run_schema.TAG_SCORING] == "deferred"
    assert deferred.data.tags[run_schema.TAG_SCORING_ABSENT] == "scoring deferred (score=later)"
    scored_only = quality_keys(now.data.metrics) - quality_keys(deferred.data.metrics)
    assert {"cider", "bleu_4", "meteor", "rouge_l", "safety_flagged_n"} <= scored_only
    assert {"latency_ms_p50", "n_samples_evaluated", "size_on_disk_mib"} <= set(deferred.data.metrics)
    assert "cider: not measured (scoring deferred (score=later))" in deferred.data.tags["mlflow.note.content"]
    before = artifacts(client, later_id, tmp_path / "deferred")
    assert "predictions/partial.jsonl" in before and run_schema.ARTIFACT_PREDICTIONS_JSONL not in before
    reloaded = CliRunner().invoke(main, ["load", later_id, "--check", "2"])  # reads partial.jsonl then
    assert reloaded.exit_code == 0 and reloaded.output.count("  same  ") == 2, reloaded.output

    # Refusals, each before the run is touched.
    refused = score_run(now_id)
    assert refused.exit_code == 2 and "was scored when it ran (score=now)" in refused.output
    with monkeypatch.context() as patch:
        hide_java(patch)
        refused = score_run(later_id)
    assert refused.exit_code == 2 and "still no `java` on PATH" in refused.output
    assert "default-jre-headless" in refused.output
    other = tmp_path / "other-coco"
    (other / "annotations").mkdir(parents=True)
    shutil.copy(coco_dir / "annotations/captions_val2017.json", other / "annotations")
    (other / "val2017").symlink_to(coco_dir / "val2017")
    refused = score_run(later_id, "--data-dir", str(other))  # the same ids, but CHAIR would vanish
    assert refused.exit_code == 2 and "the run had chair_instances_file=" in refused.output
    captions = json.loads((coco_dir / "annotations/captions_val2017.json").read_text())
    kept = {im["id"] for im in captions["images"][:20]}
    captions = {"images": captions["images"][:20],
                "annotations": [a for a in captions["annotations"] if a["image_id"] in kept]}
    (other / "annotations/captions_val2017.json").write_text(json.dumps(captions))
    shutil.copy(coco_dir / "annotations/instances_val2017.json", other / "annotations")
    refused = score_run(later_id, "--data-dir", str(other))  # 20 of the 159 images: other ids
    assert refused.exit_code == 2 and "gives another split than the run evaluated" in refused.output
    assert client.get_run(later_id).data.tags[run_schema.TAG_SCORING] == "deferred"

    # Scored later: the same quality metrics, rows, tags and scored artifacts as scoring at once.
    result = score_run(later_id)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{") :])["n_scored"] == 4
    scored = client.get_run(later_id)
    assert scored.info.status == "FINISHED"
    assert scored.info.end_time == deferred.info.end_time  # the run's duration stays the evaluation's
    assert quality_keys(scored.data.metrics) == quality_keys(now.data.metrics)
    for key in scored_only:
        assert scored.data.metrics[key] == now.data.metrics[key], key
    assert scored.data.tags[run_schema.TAG_SCORING] == "done" and scored.data.tags[scoring.TAG_SCORED_AT]
    assert run_schema.TAG_SCORING_ABSENT not in scored.data.tags
    same_tags = set(now.data.tags) - PROCESS_TAGS
    assert {k: scored.data.tags.get(k) for k in same_tags} == {k: now.data.tags[k] for k in same_tags}
    assert set(scored.data.tags) - set(now.data.tags) == DEFERRAL_TAGS
    # The description names the same quality (its cost sentence holds each run's own timings).
    quality_sentence = scored.data.tags["mlflow.note.content"].split(" Cost: ")[0]
    assert quality_sentence == now.data.tags["mlflow.note.content"].split(" Cost: ")[0]
    assert f"CIDER {now.data.metrics['cider']:.3f}" in quality_sentence
    mine = artifacts(client, later_id, tmp_path / "scored")
    theirs = artifacts(client, now_id, tmp_path / "now")
    assert set(mine) == set(theirs)
    for path in SCORED_ARTIFACTS:
        assert mine[path] == theirs[path], path
    def untimed(text: str) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in text.splitlines()]

    assert untimed(mine["predictions/partial.jsonl"]) == untimed(theirs["predictions/partial.jsonl"])
    rows = [json.loads(line) for line in mine[run_schema.ARTIFACT_PREDICTIONS_JSONL].splitlines()]
    assert len(rows) == 4 and all("cider" in r and "meteor" in r for r in rows)
    assert yaml.safe_load(mine[run_schema.ARTIFACT_CONFIG])["score"] == "later"
    # The logged model's page lists the scores too, as for a run scored at once.
    [model] = client.search_logged_models(
        [scored.info.experiment_id], filter_string=f"source_run_id = '{later_id}'"
    )
    assert {m.key for m in model.metrics} >= {"cider", "meteor"}

    again = score_run(later_id)
    assert again.exit_code == 2 and "already scored" in again.output and "--force true" in again.output


def test_missing_java_with_score_now_fails_before_any_run_or_model(tiny_vlm_dirs, coco_dir, tracking_uri,
                                                                    monkeypatch):
    hide_java(monkeypatch)

    def no_load(*args, **kwargs):
        raise AssertionError("the model loader must not be called")

    monkeypatch.setattr("vlm_quant.run.runner.load_vlm", no_load)
    result = CliRunner().invoke(main, evaluate_args(tiny_vlm_dirs, coco_dir, "now"))
    assert result.exit_code == 2, result.output
    for way_out in ("apt-get install default-jre-headless", "openjdk", "-P score=later", "--score later",
                    "vlm-quant score run RUN_ID"):
        assert way_out in result.output, way_out
    client = mlflow.MlflowClient(tracking_uri)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_only_captioning_scoring_needs_java(monkeypatch):
    hide_java(monkeypatch)
    for task in ("vqa", "pope"):  # pure-Python metrics: score=now runs without Java
        scoring.require_scorer(make_task(task), "now")
    scoring.require_scorer(make_task("captioning"), "later")
    with pytest.raises(UserError, match="no `java` on PATH"):
        scoring.require_scorer(make_task("captioning"), "now")


def test_score_is_now_or_later_and_does_not_change_the_config_hash():
    with pytest.raises(UserError, match="score='soon' is not valid; choose one of now, later"):
        ExperimentConfig.from_mapping({"data_dir": "x", "score": "soon"})
    now = ExperimentConfig.from_mapping({"data_dir": "x"})
    later = ExperimentConfig.from_mapping({"data_dir": "x", "score": "later"})
    assert now.score == "now" and now.config_hash() == later.config_hash()  # a twin, for sweep and resume


def test_score_run_refuses_an_unknown_run_as_mlproject_passes_it(tracking_uri):
    project = yaml.safe_load((REPO / "MLproject").read_text())
    command = project["entry_points"]["score_run"]["command"]
    assert command == "python entrypoints/score.py run {run_id} --data-dir {data_dir} --force {force}"
    result = score_run("0123456789abcdef", "--data-dir", "", "--force", "false")  # MLproject's defaults
    assert result.exit_code == 2 and "no run '0123456789abcdef'" in result.output


class FakeClient:
    """An MlflowClient with one artifact (predictions/partial.jsonl) or none."""

    def __init__(self, text: str | None):
        self.text = text

    def list_artifacts(self, run_id, folder=None):
        return [type("F", (), {"path": "predictions/partial.jsonl"})()] if self.text is not None else []

    def download_artifacts(self, run_id, path, dst):
        (Path(dst) / "p.jsonl").write_text(self.text)
        return str(Path(dst) / "p.jsonl")


def test_score_run_refuses_a_run_without_all_its_predictions():
    data = TaskData("coco", "val2017", {1: None, 2: None, 3: None}, [1, 2, 3], lambda s: None)
    with pytest.raises(UserError, match="has no predictions"):
        logged_predictions(FakeClient(None), "r1", data)
    two = '{"sample_id": 2, "prediction": "b"}\n{"sample_id": 1, "prediction": "a"}\n'
    with pytest.raises(UserError, match="lacks 1 of the 3 evaluated samples"):
        logged_predictions(FakeClient(two), "r1", data)
    skipped = two + '{"sample_id": 3, "image_file": "x.jpg", "skipped": "OSError"}\n'
    assert list(logged_predictions(FakeClient(skipped), "r1", data).items()) == [(1, "a"), (2, "b")]


def test_score_run_fills_in_the_batch_invariance_delta_left_absent_without_java(
    tiny_vlm_dirs, coco_dir, tracking_uri, monkeypatch
):
    """On a GPU node without Java the batch-1 subset of a caption run cannot be scored: its delta is absent
    with a reason; `score run` scores the logged subset and logs the delta into the same run."""
    from vlm_quant.run import batch_invariance

    delta_metric = run_schema.batch_invariance_delta_metric("captioning")
    with monkeypatch.context() as patch:  # the subset's scorer fails as it does without Java
        patch.setattr(batch_invariance, "subset_delta", lambda *a: (None, "the subset could not be scored"))
        run_id = evaluate(tiny_vlm_dirs, coco_dir, "later")
    client = mlflow.MlflowClient(tracking_uri)
    before = client.get_run(run_id).data
    assert delta_metric not in before.metrics and "batch_invariance_agreement" in before.metrics
    assert before.tags[run_schema.TAG_BATCH_INVARIANCE_DELTA_ABSENT] == "the subset could not be scored"

    assert score_run(run_id).exit_code == 0
    after = client.get_run(run_id).data
    rows = [json.loads(line) for line in artifact_lines(client, run_id, run_schema.ARTIFACT_BATCH_INVARIANCE)]
    pairs = [(r["batched_prediction"], r["batch_1_prediction"]) for r in rows]
    if all(a == b for a, b in pairs):  # identical predictions score identically: exactly 0
        assert after.metrics[delta_metric] == 0.0
    else:
        assert delta_metric in after.metrics
    assert run_schema.TAG_BATCH_INVARIANCE_DELTA_ABSENT not in after.tags


def artifact_lines(client, run_id: str, path: str) -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, path, tmp)).read_text().splitlines()
