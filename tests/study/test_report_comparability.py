"""Runs that differ in more than precision are refused, naming the parameter: all of the report
for a quality param, the cost part for a cost param."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Param

from vlm_quant.errors import UserError
from vlm_quant.study.report.build import compare
from vlm_quant.study.report.comparability import check_comparable, check_quality_comparable, cost_refusal
from vlm_quant.tracking import run_schema as rs


def _frame() -> pd.DataFrame:
    base = {
        "params.ids_hash": "ab12",
        "params.seed": "0",
        "params.prompt": "Describe.",
        "params.task": "captioning",
        "params.dataset": "coco",
        "params.split": "val2017",
    }
    return pd.DataFrame(
        [{"run_id": "a" * 32, "run_name": "fp16", **base}, {"run_id": "b" * 32, "run_name": "int8", **base}]
    )


def test_identical_params_pass():
    check_comparable(_frame())


@pytest.mark.parametrize("param", ["ids_hash", "seed", "prompt", "task", "dataset", "split"])
def test_a_differing_param_is_named_with_every_runs_value(param):
    frame = _frame()
    frame.loc[1, f"params.{param}"] = "other-value"
    with pytest.raises(UserError) as info:
        check_comparable(frame)
    message = str(info.value)
    assert f"'{param}'" in message
    assert f"fp16 ({'a' * 32})" in message and f"int8 ({'b' * 32})" in message
    assert "other-value" in message and repr(_frame().loc[0, f"params.{param}"]) in message


def test_a_param_one_run_did_not_log_is_a_difference():
    frame = _frame()
    frame.loc[1, "params.seed"] = None
    with pytest.raises(UserError, match=r"(?s)'seed'.*int8 \(b+\): <not logged>"):
        check_comparable(frame)


def test_compare_refuses_mismatched_ids_hash(mismatch_store, tmp_path):
    with pytest.raises(UserError) as info:
        compare(tmp_path, experiment=mismatch_store.experiment, tracking_uri=mismatch_store.uri)
    message = str(info.value)
    assert "'ids_hash'" in message
    assert all(run.run_id in message for run in mismatch_store.runs.values())
    assert not any(tmp_path.iterdir())  # nothing written for refused runs


# --- quality params: the whole comparison is refused --------------------------------------------

QUALITY_ONLY = {
    "model": "HuggingFaceTB/SmolVLM-256M-Instruct",
    "revision": "abc123",
    "max_new_tokens": "32",
    "max_image_side": "512",
    "image_splitting": "off",
    "batch_size": "8",
}
COST_ONLY = {
    "device": "cuda",
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "dtype": "float16",
    "engine_resolved": "eager",
    "cost_new_tokens": "32",
}


def _full_frame() -> pd.DataFrame:
    frame = _frame()
    for param, value in {**QUALITY_ONLY, **COST_ONLY}.items():
        frame[f"params.{param}"] = value
    frame["weights"] = "pretrained"
    return frame


@pytest.mark.parametrize("param", sorted(QUALITY_ONLY))
def test_quality_refuses_runs_that_differ_in_model_or_generation(param):
    frame = _full_frame()
    check_quality_comparable(frame)
    assert cost_refusal(frame) is None
    frame.loc[1, f"params.{param}"] = "other-value"
    with pytest.raises(UserError, match=f"runs are not comparable: parameter '{param}' differs"):
        check_quality_comparable(frame)


def test_a_random_weight_run_may_differ_in_revision_only():
    frame = _full_frame()
    frame.loc[1, "weights"] = "random"
    frame.loc[1, "params.revision"] = "random weights (bundled config)"
    check_quality_comparable(frame)  # no quality row for it: its revision does not matter there
    assert cost_refusal(frame) is None
    frame.loc[1, "params.max_new_tokens"] = "16"  # but its cost row sits next to the others
    assert "'max_new_tokens'" in cost_refusal(frame)


@pytest.mark.parametrize("param", sorted(COST_ONLY))
def test_cost_params_refuse_the_cost_part_only(param):
    frame = _full_frame()
    frame.loc[1, f"params.{param}"] = "other-value"
    check_quality_comparable(frame)  # quality may still be compared
    message = cost_refusal(frame)
    assert message.startswith(f"cost not compared: parameter '{param}' differs")
    assert "'other-value'" in message and f"int8 ({'b' * 32})" in message


def test_compare_refuses_a_quality_difference_and_writes_nothing(other_gpu_store, tmp_path):
    run = other_gpu_store.runs["int8"]
    client = MlflowClient(tracking_uri=other_gpu_store.uri)
    exp = client.create_experiment("odd-tokens")  # apart: the two-gpus experiment stays as built
    params = {**run.params, "max_new_tokens": "64"}
    odd = client.create_run(exp, run_name="int8-64-tokens", tags={rs.TAG_KIND: "evaluate"}).info.run_id
    client.log_batch(odd, params=[Param(k, v) for k, v in params.items()])
    client.set_terminated(odd)
    ids = [other_gpu_store.runs["fp16"].run_id, odd]
    with pytest.raises(UserError, match="'max_new_tokens'") as info:
        compare(tmp_path, run_ids=ids, tracking_uri=other_gpu_store.uri)
    assert odd in str(info.value)
    assert not any(tmp_path.iterdir())


def test_compare_on_two_gpus_writes_quality_and_says_why_there_is_no_cost(other_gpu_store, tmp_path):
    result = compare(tmp_path, experiment=other_gpu_store.experiment, tracking_uri=other_gpu_store.uri)
    assert result.tables.quality["Configuration"].tolist() == ["fp16", "int8"]
    assert result.tables.cost_refused.startswith("cost not compared: parameter 'gpu_name' differs")
    assert not (tmp_path / "results_cost.tex").exists()
    assert (tmp_path / "results_quality.tex").is_file()
    md = (tmp_path / "results.md").read_text()
    cost_section = md.split("## Cost")[1]
    assert "parameter 'gpu_name' differs" in cost_section and "NVIDIA A100-SXM4-40GB" in cost_section
    assert "Latency" not in cost_section  # no cost number at all
    assert "latency_ms_p50" not in (tmp_path / "results.csv").read_text().splitlines()[0]
    cost_plots = [p for p in result.plots if not p.name.startswith("hallucination")]  # no cost axis there
    assert cost_plots and all(p.skipped and "gpu_name" in p.skipped for p in cost_plots)
    assert not list((tmp_path / "figures").glob("cost_bars.*"))
    assert any("cost not compared" in note for note in result.notes)
    assert "cost not compared" in (tmp_path / "report.html").read_text()


def test_a_published_checkpoint_is_compared_as_its_base_model():
    """quant=prequantized with base_model: the checkpoint's own id and revision are not the base's."""
    frame = _full_frame()
    frame.loc[1, "params.model"] = "RedHatAI/SmolVLM-w4a16"
    frame.loc[1, "params.revision"] = "c0ffee"
    with pytest.raises(UserError, match="parameter 'model' differs"):
        check_quality_comparable(frame)
    frame.loc[1, "params.base_model"] = frame.loc[0, "params.model"]
    check_quality_comparable(frame)  # paired with the base model's baseline run
    frame.loc[1, "params.base_model"] = "some/other-model"
    with pytest.raises(UserError, match="parameter 'model' differs"):
        check_quality_comparable(frame)


def test_a_gguf_run_sits_beside_torch_runs_its_engine_and_preprocessing_being_its_configuration():
    from vlm_quant.study.report.caveats import ENGINE_FALLBACK, LLAMA_CPP_INPUTS, run_caveats

    frame = _full_frame()
    frame["params.engine"] = "eager"
    frame["params.engine_resolved"] = "eager"
    frame.loc[1, "params.engine_resolved"] = "llama.cpp"  # quant=gguf-q8_0: llama.cpp runs it
    frame.loc[1, "params.image_processor_backend"] = None  # libmtmd preprocesses; nothing logged
    check_quality_comparable(frame)
    assert cost_refusal(frame) is None
    assert run_caveats(frame.iloc[1]) == (LLAMA_CPP_INPUTS,)  # marked, and not called a fallback
    assert ENGINE_FALLBACK not in run_caveats(frame.iloc[1]) and run_caveats(frame.iloc[0]) == ()
    frame.loc[0, "params.engine_resolved"] = "compiled"  # two torch runs still agree on their engine
    frame = pd.concat([frame, frame.iloc[[0]].assign(run_id="c" * 32, **{"params.engine_resolved": "eager"})])
    assert "'engine_resolved'" in cost_refusal(frame.reset_index(drop=True))
