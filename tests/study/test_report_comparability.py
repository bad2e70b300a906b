"""Runs measured on different samples, seeds or prompts are refused, naming the parameter."""

from __future__ import annotations

import pandas as pd
import pytest

from vlm_quant.errors import UserError
from vlm_quant.study.report.build import compare
from vlm_quant.study.report.comparability import check_comparable


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
