"""Issue 25: a full offline evaluate (2 COCO images, quant=fp16 then quant=int8) of a tiny random model of
each family people pick today, through its processor's chat template (PaliGemma: its plain prompt), into
a real MLflow store via the `evaluate` command."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from vlm_quant.cli.commands import main
from vlm_quant.models.logged_model import load_logged_model
from vlm_quant.run.reload_check import check_predictions
from vlm_quant.tracking import run_schema

# The cheapest complete run: 2 images in one batch of 2 (left padding and the collate run), 3 new
# tokens, a cost pass of one batch at batch 1 and at batch 2, one fidelity image, no batch-1
# regeneration, no idle window.
FAST = dict(
    n_samples=2,
    batch_size=2,
    max_new_tokens=3,
    cost_samples=2,
    cost_iterations=1,
    cost_warmup=0,
    cost_new_tokens=2,
    cost_batch_sizes=2,
    idle_seconds=0,
    fidelity_samples=1,
    fidelity_new_tokens=2,
    invariance_samples=0,
    num_workers=0,
)
FAMILIES = (
    "smolvlm",
    "gemma3",
    "qwen2_5_vl",
    "qwen3_vl",
    "internvl",
    "llava_onevision",
    "idefics2",
    "paligemma",
)


def evaluate(model: Path, coco_dir: Path, quant: str, experiment: str) -> None:
    args = ["evaluate", "--no-progress", "--model", str(model), "--data-dir", str(coco_dir), "--quant", quant]
    args += ["--experiment", experiment, "--log-model", "true" if quant == "int8" else "false"]
    for key, value in FAST.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output[-3000:]


@pytest.mark.parametrize("family", FAMILIES)
def test_family_evaluates_offline_in_fp16_and_int8(
    family, tiny_family_dirs, coco_dir, tracking_uri, tmp_path
):
    client = mlflow.MlflowClient(tracking_uri)
    for quant in ("fp16", "int8"):
        evaluate(tiny_family_dirs[family], coco_dir, quant, experiment=quant)
        (run,) = client.search_runs([client.get_experiment_by_name(quant).experiment_id])
        p, m, t = run.data.params, run.data.metrics, run.data.tags
        assert run.info.status == "FINISHED", t.get(run_schema.TAG_FAILURE)
        assert p["model_family"] == family and p["quant"] == quant
        assert p["prompt_format"] == (
            "plain prompt (the processor has no chat template)" if family == "paligemma" else "chat template"
        )
        # The audit reads what loaded: bitsandbytes int8 in the language model, the rest float32 on CPU.
        assert p["precision_language"] == quant
        assert p["realized_precision_language"].startswith("int8" if quant == "int8" else "fp32")
        assert p["realized_precision_vision"].startswith("fp32")
        assert m["n_samples_evaluated"] == 2 and 0 <= m["cider"] and 0 <= m["bleu_4"] <= 1
        artifacts = Path(client.download_artifacts(run.info.run_id, "predictions", str(tmp_path / quant)))
        rows = [json.loads(line) for line in (artifacts / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all(isinstance(r["prediction"], str) and "cider" in r for r in rows)
        if quant == "int8":  # the vision and projector roles hooked before and after quantization
            # Both stay in float32 upstream of the int8 language model: the same tokens come out; the
            # next-token distributions move.
            assert m["fidelity_vision_cosine_token_mean"] > 0.999
            assert m["fidelity_projector_cosine_token_mean"] > 0.999
            assert m["fidelity_logits_kl_nats_token_mean"] > 0 and m["fidelity_n_positions"] >= 1
            # The int8 checkpoint is the run's logged model; rebuilt from it, it predicts what the run did.
            reloaded = load_logged_model(run.info.run_id, tracking_uri=tracking_uri)
            realized = reloaded.precision_map.role_params()["realized_precision_language"]
            assert realized.startswith("int8") and reloaded.verified_tensors > 0
            check = check_predictions(run.info.run_id, reloaded, 2, tracking_uri)
            assert check.identical and len(check.pairs) == 2, check.pairs
