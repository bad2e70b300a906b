"""Bad input never leaves a half-written run and never touches other runs."""

from __future__ import annotations

import mlflow
from click.testing import CliRunner
from crash_helpers import build_vqa, evaluate_args

from vlm_quant.cli.commands import main


def snapshot(client, run_id: str) -> tuple:
    run = client.get_run(run_id)
    artifacts = sorted(f.path for f in client.list_artifacts(run_id))
    return (run.info.status, run.info.end_time, run.data.params, run.data.metrics, run.data.tags, artifacts)


def seed_other_runs(client) -> list[str]:
    """A finished and a failed evaluate run of another config, with params, metrics, tags, artifacts."""
    experiment_id = client.create_experiment("bad-input")
    ids = []
    for status in ("FINISHED", "FAILED"):
        run = client.create_run(
            experiment_id, tags={"vlm_quant.kind": "evaluate", "vlm_quant.config_hash": "other"}
        )
        client.log_param(run.info.run_id, "quant", "fp16")
        client.log_metric(run.info.run_id, "vqa_accuracy", 0.5)
        client.log_text(run.info.run_id, "seed: 0\n", "config/resolved_config.yaml")
        client.set_terminated(run.info.run_id, status)
        ids.append(run.info.run_id)
    return ids


def test_bad_config_missing_data_and_unreadable_images_leave_other_runs_unchanged(
    tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path
):
    client = mlflow.MlflowClient(tracking_uri)
    others = seed_other_runs(client)
    before = {run_id: snapshot(client, run_id) for run_id in others}
    data = build_vqa(tmp_path / "vqav2", coco_dir, n_images=2)
    corrupt = build_vqa(tmp_path / "corrupt", coco_dir, n_images=2)
    for image in (corrupt / "val2014").iterdir():
        image.unlink()
        image.write_bytes(b"\xff\xd8 not really a jpeg")
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("n_samples: [1, 2\nquant: fp16\n")
    unknown_key = tmp_path / "unknown.yaml"
    unknown_key.write_text("n_sample: 2\n")

    base = evaluate_args(tiny_vlm_dirs["llava"], data, experiment="bad-input", n_samples=2, batch_size=2)
    cases = {
        "malformed YAML": ([*base, "--config", str(malformed)], "is not valid YAML"),
        "unknown key": ([*base, "--config", str(unknown_key)], "unknown config key(s): n_sample"),
        "missing dataset": ([*base, "--data-dir", str(tmp_path / "nowhere")], "does not exist"),
        "finished run": ([*base, "--resume", others[0]], "is FINISHED"),
        "other config": (
            [*base, "--resume", others[1]],
            "differs from the run's in 1 key(s): seed (run: 0, now: 1)",
        ),
        "unreadable images": (
            [*base, "--data-dir", str(corrupt)],
            "none of the 2 selected images could be read",
        ),
    }
    for name, (args, message) in cases.items():
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (name, result.output[-2000:])
        assert message in result.output, (name, result.output[-2000:])

    assert {run_id: snapshot(client, run_id) for run_id in others} == before
    experiment = client.get_experiment_by_name("bad-input")
    new = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_id not in others]
    # only the unreadable-images case got as far as a run (its input is valid until the images are opened)
    assert len(new) == 1 and new[0].info.status == "FAILED"
    assert "could be read" in new[0].data.tags["vlm_quant.failure"]
    skipped = {f.path for f in client.list_artifacts(new[0].info.run_id, "predictions")}
    assert "predictions/skipped_samples.json" in skipped and "predictions/partial.jsonl" in skipped
