"""A whole study on a tiny model: sweep (child processes, skip on rerun), then compare from the store."""

from __future__ import annotations

import csv
import json

import mlflow
import pytest
from click.testing import CliRunner
from PIL import Image

from vlm_quant.cli.commands import main

pytestmark = pytest.mark.slow


def last_json(output: str) -> dict:
    """The sweep's JSON summary (child processes' progress and log lines surround it)."""
    start = output.rindex('{\n  "parent_run_id"')
    return json.JSONDecoder().raw_decode(output, start)[0]


def sweep_args(model_dir, coco_dir):
    return [
        "sweep",
        "--quants",
        "fp16,bf16",
        "--model",
        str(model_dir),
        "--data-dir",
        str(coco_dir),
        "--n-samples",
        "3",
        "--batch-size",
        "3",
        "--max-new-tokens",
        "4",
        "--seed",
        "5",
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
        "--experiment",
        "study",
    ]


def test_sweep_then_rerun_skips_then_compare_writes_the_paper(
    tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path
):
    runner = CliRunner()
    first = runner.invoke(main, sweep_args(tiny_vlm_dirs["llava"], coco_dir))
    assert first.exit_code == 0, first.output
    outcome = last_json(first.output)
    assert outcome["status"] == {"fp16": "finished", "bf16": "finished"}

    client = mlflow.MlflowClient(tracking_uri)
    parent = client.get_run(outcome["parent_run_id"])
    assert parent.data.tags["vlm_quant.kind"] == "sweep" and parent.data.metrics["n_finished"] == 2
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    assert len({c.data.params["ids_hash"] for c in children}) == 1  # the identical split
    assert {c.data.params["quant"] for c in children} == {"fp16", "bf16"}

    again = runner.invoke(main, sweep_args(tiny_vlm_dirs["llava"], coco_dir))
    assert again.exit_code == 0, again.output
    rerun = last_json(again.output)
    assert rerun["status"] == {"fp16": "skipped", "bf16": "skipped"}
    assert rerun["run_ids"] == outcome["run_ids"]

    out = tmp_path / "report"
    result = runner.invoke(
        main,
        ["compare", "--parent-run", outcome["parent_run_id"], "--out-dir", str(out), "--bootstrap", "200"],
    )
    assert result.exit_code == 0, result.output
    with open(out / "results.csv") as handle:
        table = list(csv.DictReader(handle))
    by_quant = {row.get("quant") or row.get("label"): row for row in table}
    for child in children:
        row = by_quant[child.data.params["quant"]]
        cider_column = next(k for k in row if k.lower().startswith("cider"))
        assert float(row[cider_column]) == pytest.approx(child.data.metrics["cider"], rel=1e-6)
    for name in ("results.md", "results_quality.tex", "results_cost.tex", "appendix.md", "report.html"):
        assert (out / name).is_file(), name
    for png in (out / "figures").glob("*.png"):
        Image.open(png).verify()
    compare_runs = client.search_runs(
        [parent.info.experiment_id], filter_string="tags.`vlm_quant.kind` = 'compare'"
    )
    assert len(compare_runs) == 1


def test_sweep_rejects_an_unknown_preset_before_running_anything(tiny_vlm_dirs, coco_dir, tracking_uri):
    args = sweep_args(tiny_vlm_dirs["llava"], coco_dir)
    args[args.index("fp16,bf16")] = "fp16,int4"
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "unknown quant preset 'int4'" in result.output
    client = mlflow.MlflowClient(tracking_uri)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])
