"""Presets are per-role plans; overrides compose; bad plans fail before any model is loaded."""

import pytest

from vlm_quant.errors import UserError
from vlm_quant.quantize.presets import PRESETS, ROLES, resolve_plan


def test_required_presets_and_their_roles():
    assert resolve_plan("fp16").roles == dict.fromkeys(ROLES, "fp16")
    assert resolve_plan("bf16").half_dtype_name == "bf16"
    assert resolve_plan("int8").roles == {
        "vision": "fp16",
        "projector": "fp16",
        "language": "int8",
        "lm_head": "fp16",
    }
    assert resolve_plan("int8-vision").quantized_roles == {"vision": "int8"}
    assert resolve_plan("int8-all").quantized_roles == {"vision": "int8", "language": "int8"}
    assert resolve_plan("nf4").quantized_roles == {"language": "nf4"}
    assert resolve_plan("int8-ao").backends()["language"] == "torchao"
    assert resolve_plan("w8a8-ao").quantized_roles == {"language": "w8a8"}
    assert set(PRESETS) >= {"fp16", "bf16", "int8", "int8-vision", "int8-all", "nf4", "int8-ao", "w8a8-ao"}


def test_override_composes_on_top_of_preset():
    plan = resolve_plan("int8", "vision=int8,language=nf4,projector=fp16")
    assert plan.roles == {"vision": "int8", "projector": "fp16", "language": "nf4", "lm_head": "fp16"}
    assert plan.to_params()["precision_language"] == "nf4"
    assert plan.to_params()["backend_vision"] == "bitsandbytes"


@pytest.mark.parametrize(
    "quant, override, fragment",
    [
        ("int4", "", "unknown quant preset 'int4'; choose one of fp16, bf16"),
        ("fp16", "eyes=int8", "unknown role 'eyes'"),
        ("fp16", "vision=int3", "unknown precision 'int3' for role vision"),
        ("fp16", "vision", "must look like role=precision"),
        ("fp16", "vision=int8,vision=nf4", "given twice"),
        ("fp16", "vision=bf16", "mixes fp16 and bf16"),
    ],
)
def test_bad_plans_name_the_valid_choices(quant, override, fragment):
    with pytest.raises(UserError, match=fragment):
        resolve_plan(quant, override)
