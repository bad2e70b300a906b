"""End to end on the real slice with a tiny VLM: a caption run logs CHAIR and the screen, POPE runs log
their three splits, and compare reports both."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from vlm_quant.cli.commands import main
from vlm_quant.tasks.coco_instances import read_instances
from vlm_quant.tasks.safety import KINDS

pytestmark = pytest.mark.slow

FAST = [
    "--cost-samples",
    "2",
    "--cost-iterations",
    "1",
    "--cost-warmup",
    "0",
    "--cost-new-tokens",
    "2",
    "--idle-seconds",
    "0",
    "--log-model",
    "false",
    "--no-progress",
    "--batch-size",
    "4",
]


def evaluate(model_dir: Path, coco_dir: Path, experiment: str, *extra: str) -> None:
    args = [
        "evaluate",
        "--model",
        str(model_dir),
        "--data-dir",
        str(coco_dir),
        "--experiment",
        experiment,
        "--max-new-tokens",
        "6",
        *FAST,
        *extra,
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


def only_run(client, experiment: str):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return {r.data.params["quant"]: r for r in runs if r.data.tags.get("vlm_quant.kind") == "evaluate"}


def artifact_json(client, run, path: str, tmp_path: Path):
    return json.loads(Path(client.download_artifacts(run.info.run_id, path, str(tmp_path))).read_text())


def test_caption_run_logs_chair_and_the_screen(tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path):
    evaluate(tiny_vlm_dirs["llava"], coco_dir, "chair", "--n-samples", "10", "--seed", "1")
    client = mlflow.MlflowClient(tracking_uri)
    run = only_run(client, "chair")["fp16"]
    m = run.data.metrics
    ids = artifact_json(client, run, "split/ids.json", tmp_path)["ids"]
    annotated = read_instances(coco_dir / "annotations" / "instances_val2017.json").objects
    n_annotated = sum(i in annotated for i in ids)
    assert 0 < n_annotated < len(ids)  # the seed draws both kinds of image
    assert m["chair_n_images"] == n_annotated and m["chair_n_unannotated"] == len(ids) - n_annotated
    assert "chair_s" in m and 0 <= m["chair_s"] <= 1 and "safety_flagged_n" in m
    assert m["safety_flagged_rate"] == m["safety_flagged_n"] / len(ids)
    assert "chair_i" in m or m["chair_n_mentions"] == 0  # random-ish captions may name no object
    rows = [
        json.loads(line)
        for line in Path(
            client.download_artifacts(run.info.run_id, "predictions/predictions.jsonl", str(tmp_path))
        )
        .read_text()
        .splitlines()
    ]
    assert {r["image_id"] for r in rows if r["chair_annotated"]} == {i for i in ids if i in annotated}
    assert all(r["chair_hallucinated"] is None for r in rows if not r["chair_annotated"])
    flagged = artifact_json(client, run, "safety/flagged.json", tmp_path)
    assert flagged["columns"] == ["sample_id", "prediction", "reason", "matches", *KINDS]
    assert len(flagged["data"]) == m["safety_flagged_n"]
    assert run.data.params["chair_instances_file"].endswith("instances_val2017.json")


def test_pope_runs_then_compare(tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path):
    for quant in ("fp16", "bf16"):
        evaluate(
            tiny_vlm_dirs["llava"],
            coco_dir,
            "pope",
            "--task",
            "pope",
            "--n-samples",
            "2",
            "--quant",
            quant,
            "--max-new-tokens",
            "3",
        )
    client = mlflow.MlflowClient(tracking_uri)
    runs = only_run(client, "pope")
    m = runs["fp16"].data.metrics
    for split in ("random", "popular", "adversarial"):
        assert m[f"pope_{split}_n"] == 2 * 6 and m[f"pope_{split}_doubtful_n"] <= m[f"pope_{split}_n"]
        assert 0 <= m[f"pope_{split}_accuracy"] <= 1 and 0 <= m[f"pope_{split}_yes_ratio"] <= 1
    # each distinct question generated once: the 6 positives once, not in each of the 3 splits
    assert m["pope_n"] == 36 and m["n_samples_evaluated"] == m["pope_distinct_n"] <= 36 - 2 * 6
    construction = artifact_json(client, runs["fp16"], "pope/construction.json", tmp_path)
    assert construction["n_images"] == 2 and construction["objects_per_image"] == 3
    questions = artifact_json(client, runs["fp16"], "pope/questions.json", tmp_path)
    assert sorted(questions) == ["adversarial", "popular", "random"]
    for items in questions.values():
        assert sum(q["label"] == "yes" for q in items) == sum(q["label"] == "no" for q in items)

    out = tmp_path / "report"
    result = CliRunner().invoke(
        main, ["compare", "--experiment", "pope", "--out-dir", str(out), "--bootstrap", "100", "--no-log"]
    )
    assert result.exit_code == 0, result.output
    text = (out / "results_hallucination.md").read_text()
    assert all(f"POPE F1 {split}" in text for split in ("random", "popular", "adversarial"))
    assert "Output safety screen" in (out / "results_safety.md").read_text()
    assert (out / "figures" / "hallucination_vs_quality.png").is_file() or "hallucination_vs_quality" in (
        out / "notes.md"
    ).read_text()
