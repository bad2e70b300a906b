"""benchmarks/gpu_check.py without a GPU: it says so, runs its reduced CPU form, writes its tables."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = script  # its dataclasses look their module up while being built
    spec.loader.exec_module(script)
    return script


@pytest.mark.slow
def test_reduced_cpu_form_runs_every_step_and_says_there_was_no_gpu(
    tiny_vlm_dirs, coco_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("OUT", str(tmp_path))
    argv = [
        "--force-reduced",
        "--models",
        str(tiny_vlm_dirs["idefics3"]),
        "--presets",
        "fp16",
        "int8",
        "--ptq-presets",  # none here: their reduced form is checked by test_ptq_steps_* (a run each is slow)
        "--data-dir",
        str(coco_dir),
        "--budget-s",
        "400",
    ]
    assert load_script().main(argv) == 0, (tmp_path / "gpu_check.md").read_text()
    assert "REDUCED CPU form" in capsys.readouterr().out
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["reduced"] is True
    assert [s["status"] for s in report["steps"]] == ["ok", "ok", "ok"]
    evaluation = report["evaluate"]
    assert evaluation["status"] == "FINISHED" and evaluation["params"]["device"] == "cpu"
    assert 0 <= evaluation["metrics"]["harness_overhead_fraction"] <= 1
    assert evaluation["sustainability"]["flops_per_image"] > 0  # counted on a CPU too
    assert evaluation["sustainability"]["flop_per_j"] is None  # no GPU energy: absent, the tag says why
    assert "GPU only" in evaluation["phase_energy_absent_reason"]
    assert set(report["engines"]) == {"engines-idefics3-fp16", "engines-idefics3-int8"}
    assert set(report["engines"]["engines-idefics3-fp16"]) == {"model-card", "eager", "compiled"}
    assert all("reduced CPU form" in verdict for _, verdict in report["targets"])  # no GPU verdict on a CPU
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "no GPU number below" in markdown and "| engines idefics3 int8 | ok |" in markdown


def test_steps_past_the_budget_are_listed_as_skipped(tmp_path):
    script = load_script()
    steps = [script.Step("first", ["true"]), script.Step("second", ["true"])]
    script.run_steps(steps, {}, tmp_path, budget_s=10)  # under the 20 s a step needs at least
    assert [s.status for s in steps] == ["skipped (budget of 10 s spent)"] * 2


def test_gpu_targets_are_judged_only_on_a_gpu():
    script = load_script()
    evaluation = {"metrics": {"harness_overhead_fraction": 0.05, "quality_pass_samples_per_s": 250.0}}
    engines = {
        "engines-SmolVLM-256M-Instruct-bf16": {
            "eager": {"images_per_s": 100.0, "latency_ms_p50": 400.0},
            "compiled": {"images_per_s": 350.0, "latency_ms_p50": 80.0},
        }
    }
    verdicts = [verdict for _, verdict in script.target_rows(evaluation, engines, reduced=False)]
    assert verdicts == ["PASS (0.05)", "FAIL (250)", "PASS (3.5)", "PASS (5)"]
    assert all(v.startswith("n/a") for _, v in script.target_rows(evaluation, engines, reduced=True))


def test_ptq_steps_evaluate_each_calibrated_preset_on_qwen2_vl_2b_with_random_weights(tmp_path):
    script = load_script()
    args = script.parse_args(["--data-dir", "/data/coco"])
    steps = script.plan_steps(args, reduced=False, out=tmp_path)
    ptq = [s for s in steps if s.name.startswith("ptq ")]
    assert [s.name for s in ptq] == [f"ptq Qwen2-VL-2B-Instruct {p}" for p in script.PTQ_PRESETS]
    assert script.PTQ_PRESETS == ("gptq-w4", "awq-w4", "gptq-w8", "w8a8-sq")
    for step, preset in zip(ptq, script.PTQ_PRESETS, strict=True):
        options = dict(
            zip(step.command[5::2], step.command[6::2], strict=True)
        )  # after "... evaluate --num-workers=-1"
        assert options["--quant"] == preset and options["--model"] == "Qwen/Qwen2-VL-2B-Instruct"
        assert options["--weights"] == "random" and options["--experiment"] == script.PTQ_EXPERIMENT


def test_ptq_table_says_what_a_run_did_not_measure():
    script = load_script()
    row = {"status": "FINISHED", "realized_language": "ct-w4a16-dense", "metrics": {"quantize_s": 12.5}}
    table = script.ptq_table({"gptq-w4": row})
    assert table[2].startswith("| gptq-w4 | FINISHED | ct-w4a16-dense | 12.5 | n/a |")
    assert len(table[0].split("|")) == len(table[2].split("|"))  # one cell per column
