"""Labels and the baseline come from the realized per-role precision, never from the request."""

from __future__ import annotations

import pandas as pd
import pytest

from vlm_quant.errors import UserError
from vlm_quant.study.report.bootstrap import select_baseline
from vlm_quant.study.report.precision_labels import is_unquantized, precision_label
from vlm_quant.study.report.query import configuration_labels

ROLES = ("vision", "projector", "language", "lm_head")


def _realized(base: str = "fp16", **roles: str) -> dict[str, str]:
    return {role: roles.get(role, base) for role in ROLES}


@pytest.mark.parametrize(
    ("realized", "label"),
    [
        (_realized("fp32"), "fp32"),  # a CPU run that computed in float32
        (_realized("bf16"), "bf16"),
        (_realized(language="int8"), "int8 (language)"),
        (_realized(language="nf4", vision="int8"), "nf4 (language) + int8 (vision)"),
        (_realized(language="int8", vision="int8"), "int8 (language, vision)"),
        (_realized("int8"), "int8"),  # every role quantized alike
        (_realized(lm_head="none"), "fp16"),  # a tied lm_head owns no linear weight
        (_realized("fp16", vision="fp32"), "fp32 (vision)"),  # a float role apart from the rest is named
        (
            _realized(language="int8 (22/24 linears) + fp32 (2/24 linears)"),
            "int8+fp32 (language)",
        ),
    ],
)
def test_label_is_built_from_the_realized_precision_of_each_role(realized, label):
    assert precision_label(realized) == label


def test_unquantized_means_one_plain_float_everywhere():
    assert is_unquantized(_realized("fp32")) and is_unquantized(_realized(lm_head="none"))
    assert not is_unquantized(_realized(language="int8"))
    assert not is_unquantized(_realized("fp16", vision="fp32"))


def _frame(specs: list[tuple[str, dict[str, str] | None]], weights: list[str] | None = None) -> pd.DataFrame:
    """One run per (quant param, realized precisions or None = not logged)."""
    rows = []
    for i, (quant, realized) in enumerate(specs):
        row = {"run_id": f"id{i}", "run_name": f"run{i}", "params.quant": quant}
        row.update({f"params.realized_precision_{r}": v for r, v in (realized or {}).items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["weights"] = weights or ["pretrained"] * len(rows)
    frame["label"] = configuration_labels(frame)
    return frame


def test_quant_fp16_with_an_int8_language_model_is_neither_called_nor_chosen_fp16():
    frame = _frame([("fp16", _realized(language="int8")), ("int8", _realized()), ("nf4", _realized("nf4"))])
    # The run that *asked* for int8 but holds fp16 everywhere is the fp16 run.
    assert frame["label"].tolist() == ["int8 (language)", "fp16", "nf4"]
    assert select_baseline(frame) == "id1"
    assert select_baseline(frame, "fp16") == "id1"  # an explicit "fp16" means the realized one too
    assert select_baseline(frame, "int8 (language)") == "id0"  # by label
    assert select_baseline(frame, "run0") == "id0"  # by run name


def test_no_realized_fp16_falls_back_to_bf16_then_fp32():
    bf16 = _frame([("int8", _realized(language="int8")), ("fp16", _realized("bf16"))])
    assert select_baseline(bf16) == "id1"
    cpu = _frame([("fp16", _realized("fp32", language="int8")), ("fp16", _realized("fp32"))])
    assert cpu["label"].tolist() == ["int8 (language)", "fp32"]
    assert select_baseline(cpu) == "id1"
    with pytest.raises(UserError, match="unquantized"):
        select_baseline(_frame([("fp16", _realized(language="int8"))]))


def test_runs_before_the_audit_fall_back_to_their_request_and_say_so():
    frame = _frame([("int8", None), ("fp16", None)])
    assert frame["label"].tolist() == ["int8 (requested)", "fp16 (requested)"]
    assert select_baseline(frame) == "id1"


def test_runs_realized_alike_are_told_apart_by_their_request():
    # On CPU quant=fp16 and quant=bf16 both compute in float32: both are fp32 runs.
    frame = _frame([("bf16", _realized("fp32")), ("fp16", _realized("fp32")), ("int8", _realized("int8"))])
    assert frame["label"].tolist() == ["fp32 (run0)", "fp32 (run1)", "int8"]
    assert select_baseline(frame) == "id1"
    with pytest.raises(UserError, match="matches 2 runs"):
        select_baseline(_frame([("fp16", _realized("fp32")), ("fp16", _realized("fp32"))]))
