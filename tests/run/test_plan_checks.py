"""A plan that cannot fit the model is refused before any run opens, from the config alone.

The model's structure comes from its config built on the meta device, so these use the bundled real
configs (Qwen2-VL-2B, SmolVLM-256M) at no memory cost; the weights loader must never be reached.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from click.testing import CliRunner
from crash_helpers import build_vqa, evaluate_args

from vlm_quant.cli.commands import main
from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.models import loading
from vlm_quant.run import runner

QWEN = "Qwen/Qwen2-VL-2B-Instruct"
SMOLVLM = "HuggingFaceTB/SmolVLM-256M-Instruct"


@pytest.fixture()
def no_loading(monkeypatch):
    """Fail the test if anything starts loading or materializing weights."""

    def forbidden(*args, **kwargs):
        raise AssertionError(f"weights were loaded for a plan that should have been refused: {args}")

    monkeypatch.setattr(runner, "load_vlm", forbidden)
    monkeypatch.setattr(loading, "materialize_random_checkpoint", forbidden)


def run_count(tracking_uri: str) -> int:
    with sqlite3.connect(tracking_uri.removeprefix("sqlite:///")) as store:
        return store.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"quant": "ar-w4", "ar_group_size": "100"},
            "ar_group_size=100 does not divide the input width of the language model's linears (1536, 8960)",
            id="autoround-group-size",
        ),
        pytest.param(
            {"precision": "lm_head=int8wo"},
            "lm_head=int8wo is not possible for this model: its lm_head is tied to the token embeddings",
            id="tied-lm-head",
        ),
    ],
)
def test_a_bad_plan_exits_2_before_any_run_or_load(
    options, message, no_loading, coco_dir, tracking_uri, tmp_path
):
    pytest.importorskip({"quant": "auto_round"}.get(next(iter(options)), "onnxruntime"))
    data = build_vqa(tmp_path / "vqav2", coco_dir, n_images=4)
    args = evaluate_args(QWEN, data, experiment="bad-plan", n_samples=2, weights="random", **options)
    started = time.perf_counter()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output[-2000:]
    assert message in result.output
    assert run_count(tracking_uri) == 0  # not even a FAILED run
    assert time.perf_counter() - started < 60  # loading a 2B model is not what took the time


def test_good_plans_pass_the_check_on_the_meta_model(no_loading, coco_dir, tmp_path):
    pytest.importorskip("auto_round")
    pytest.importorskip("onnxruntime")
    data = build_vqa(tmp_path / "vqav2", coco_dir, n_images=4)
    good = [
        (QWEN, {"quant": "ar-w4"}),  # auto group size: 128 divides 1536 and 8960
        (QWEN, {"quant": "ar-w4", "ar_group_size": 32}),
        (SMOLVLM, {"quant": "cpu-fast"}),  # ONNX Runtime vision tower
        (QWEN, {"precision": "vision=ort-int8"}),  # hidden_states + grid_thw: exportable (TorchScript)
        (SMOLVLM, {"precision": "lm_head=int8wo"}),  # SmolVLM-256M's lm_head is not tied
    ]
    for model, options in good:
        cfg = ExperimentConfig.from_mapping(
            dict(model=model, weights="random", task="vqa", data_dir=str(data), n_samples=2, **options)
        )
        prepared = runner.prepare_experiment(cfg)
        assert prepared.plan.quantized_roles, (model, options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"quant": "ar-w4"}, "AutoRound needs calibration images that are not evaluated"),
        ({"quant": "gptq-w4"}, "llm-compressor gptq-w4 needs calibration images that are not evaluated"),
        ({"quant": "int8-vision-ort-static"}, "ort-int8-static needs calibration images outside"),
    ],
)
def test_a_calibrated_plan_without_images_left_to_calibrate_on_is_refused_before_loading(
    options, message, no_loading, coco_dir, tmp_path
):
    library = {"ar-w4": "auto_round", "gptq-w4": "llmcompressor"}.get(options["quant"], "onnxruntime")
    pytest.importorskip(library)
    data = build_vqa(tmp_path / "vqav2", coco_dir, n_images=2)
    cfg = ExperimentConfig.from_mapping(
        dict(model=SMOLVLM, weights="random", task="vqa", data_dir=str(data), n_samples=2, **options)
    )
    with pytest.raises(UserError, match=message):
        runner.prepare_experiment(cfg)
