"""Does a plan fit the model's structure? The checks that need the modules, not the weights.

Run twice: before any run opens, on the architecture built on the meta device from the config
(``models/meta_model.py``: no download, no memory), so a bad plan exits with status 2 and leaves no
run; and again by ``apply_plan`` / the calibration step on the loaded model, as a backstop for a
model whose loaded structure differs from its config's (a remote-code class, a published checkpoint).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from vlm_quant.errors import UserError
from vlm_quant.models.families import FamilySpec, linear_modules_by_role
from vlm_quant.quantize.calibrated import autoround_skipped_layers, resolve_group_size
from vlm_quant.quantize.presets import PRECISIONS, PrecisionPlan


def check_plan_fits(plan: PrecisionPlan, model: nn.Module, family: FamilySpec, *, ar_group_size: int) -> None:
    """UserError (naming the fix) when ``plan`` cannot apply to ``model``'s modules.

    In-place roles (bitsandbytes, torchao, ONNX Runtime): see ``check_in_place_roles``. Calibrated
    roles: for AutoRound, the group size divides every linear's input width, and no linear would be left
    at 16-bit by AutoRound (``autoround_group_size``); for llm-compressor, the auto group size
    (``ptq_group_size``). ``model`` may live on the meta device.
    """
    by_role = linear_modules_by_role(model, family)
    check_in_place_roles(plan, model, family, by_role)
    for role, precision in plan.calibrated_roles.items():
        if PRECISIONS[precision].backend == "auto-round":
            autoround_group_size(model, by_role[role], ar_group_size)
        else:
            ptq_group_size(model, by_role[role])


def check_in_place_roles(
    plan: PrecisionPlan, model: nn.Module, family: FamilySpec, by_role: dict[str, list[str]]
) -> None:
    """UserError for an ONNX Runtime role whose tower cannot be called by name (``check_ort_exportable``),
    a quantized role that owns no linear layer, or a quantized ``lm_head`` tied to the token embeddings.
    (Whether the tower then exports is the exporter's answer, a UserError when the run exports it:
    ``onnxruntime_backend.apply``; docs/onnx_vision_towers.md lists the results per family.)"""
    for role, precision in plan.in_place_roles.items():
        if PRECISIONS[precision].backend == "onnxruntime":
            check_ort_exportable(model, family.roles[role][0], f"{role}={precision}")
        if not by_role.get(role):
            raise UserError(
                f"role {role!r} of family {family.name!r} has no nn.Linear module, so {precision} "
                f"cannot apply to it; keep {role}={plan.half_dtype_name}."
            )
        if role == "lm_head":
            _refuse_tied_lm_head(model, by_role[role], precision, plan)


def autoround_group_size(model: nn.Module, names: Sequence[str], requested: int) -> int:
    """The AutoRound group size for the linears ``names`` of ``model`` (``resolve_group_size``), after
    refusing linears AutoRound would silently keep at 16-bit (``autoround_skipped_layers``)."""
    layers = {name: model.get_submodule(name) for name in names}
    shapes = {name: (layer.out_features, layer.in_features) for name, layer in layers.items()}
    skipped = autoround_skipped_layers(shapes)
    if skipped:
        raise UserError(
            f"AutoRound keeps a linear layer at 16-bit when its input or output width is not a multiple "
            f"of 32, and {len(skipped)} of this model's language linears are such "
            f"(e.g. {', '.join(skipped[:3])}); the plan would not quantize the whole language model. "
            f"Use language=int8wo or nf4 for this model."
        )
    return resolve_group_size(requested, [in_features for _, in_features in shapes.values()])


def ptq_group_size(model: nn.Module, names: Sequence[str]) -> int:
    """The group size of llm-compressor's W4/W8 weight-only presets for the linears ``names``: 128, or
    the largest power of two dividing every input width (as ``ar-w4`` with ``ar_group_size=-1``)."""
    return resolve_group_size(-1, [model.get_submodule(name).in_features for name in names])


def check_ort_exportable(model: nn.Module, vision_path: str, planned: str) -> None:
    """UserError before the run when the tower's inputs cannot become named graph inputs: the export
    binds each tensor the tower receives to a parameter name of its ``forward``, which ``*args`` lacks."""
    import inspect

    signature = inspect.signature(model.get_submodule(vision_path).forward)
    unnamed = [p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_POSITIONAL]
    if unnamed:
        raise UserError(
            f"{planned} is not possible for this model: its vision tower {vision_path} takes *{unnamed[0]}, "
            "so its inputs have no names an ONNX graph could take. Use vision=int8wo or int8."
        )
    grid = [name for name in signature.parameters if name.endswith("grid_thw")]
    if grid and planned.endswith("ort-int8-static"):
        raise UserError(
            f"{planned} is not possible for this model: its vision tower takes {grid[0]}, so its input size "
            "follows each image's and every image size is a graph of its own, which static quantization "
            "would have to calibrate on images of that very size. Use vision=ort-int8 (dynamic)."
        )


def _refuse_tied_lm_head(model: nn.Module, names: list[str], precision: str, plan: PrecisionPlan) -> None:
    """A tied lm_head shares its matrix with the token embeddings: quantizing the head would untie
    them and keep the matrix twice (once per precision), growing the model instead of shrinking it."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    embedding_weight = getattr(embeddings, "weight", None)
    for name in names:
        if embedding_weight is not None and model.get_submodule(name).weight is embedding_weight:
            raise UserError(
                f"lm_head={precision} is not possible for this model: its lm_head is tied to the token "
                f"embeddings (tie_word_embeddings), and quantizing it would untie them and store the "
                f"matrix twice. Keep lm_head={plan.half_dtype_name}."
            )
