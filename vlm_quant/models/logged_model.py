"""Load a run's logged model back, at the precision it was evaluated at, per role.

Calibrated (AutoRound) and published (``quant=prequantized``) checkpoints carry their own
``quantization_config`` and load back through ``from_pretrained`` as they are; the audit must then find
the logged precision per role. For every other plan:

The checkpoint a run logs (`checkpoint.save_checkpoint`) holds the weights as they were in memory:
bitsandbytes int8/NF4 layers, torchao tensor subclasses, plain tensors. Its ``config.json`` carries no
``quantization_config`` (the plan was applied in place, per role, possibly mixing backends), so
``from_pretrained`` alone cannot read it back. The recipe beside it (``vlm_quant_model.json``) can:

1. rebuild the base model at its logged revision (or the same seeded random weights) in the logged dtype;
2. re-apply the logged plan with the same backend settings (threshold, double quantization);
3. audit every module and require the realized precision per role to equal the logged one;
4. adopt the logged 4-bit states: bitsandbytes' NF4 double quantization (the absmax of the absmax)
   differs in the last bits from one quantization to the next (a threaded float reduction), so each
   ``Linear4bit`` takes its packed weight and quantization state from the logged files through
   bitsandbytes' own loader (``Params4bit.from_prequantized``, what transformers uses for prequantized
   checkpoints); the packed 4-bit weights themselves must already agree;
5. check every tensor against the logged weight files (bit-exact), so what comes back *is* the logged
   checkpoint, not merely something built the same way.

Step 4 is what makes this a load rather than a re-run: a base revision that moved, a backend whose
quantization changed between versions, or a tampered file is an error naming the first differing tensor.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlm_quant.errors import UserError
from vlm_quant.models.checkpoint import RECIPE, WEIGHT_SUFFIXES, save_checkpoint

RECIPE_FORMAT = "vlm-quant-rebuild/1"


@dataclass(frozen=True)
class LoadedLoggedModel:
    """A logged model, loaded: ``model`` and ``processor`` at the logged precision per role."""

    model: Any
    processor: Any
    family: Any
    recipe: dict[str, Any]
    precision_map: Any  # quantize.audit.PrecisionMap of the loaded model
    verified_tensors: int  # tensors found bit-identical to the logged weight files (0: not checked)


def rebuild_recipe(
    cfg: Any,
    loaded: Any,
    plan: Any,
    dtype: torch.dtype,
    device: str,
    precision_map: Any,
    generation: dict[str, Any],
) -> dict[str, Any]:
    """What `load_logged_model` needs to rebuild this run's model (written beside its weights)."""
    return {
        "format": RECIPE_FORMAT,
        "model": cfg.model,
        "weights": cfg.weights,
        "seed": cfg.seed,
        "revision": loaded.revision if cfg.weights == "pretrained" else None,
        "trust_remote_code": cfg.trust_remote_code,
        "quant": cfg.quant,
        "precision": cfg.precision,
        "roles": dict(plan.roles),
        "int8_threshold": cfg.int8_threshold,
        "double_quant": cfg.double_quant,
        "dtype": str(dtype).removeprefix("torch."),
        "device": device,
        "realized": precision_map.role_params(),
        "generation": generation,
    }


def load_logged_model(
    run_id: str, *, tracking_uri: str | None = None, device: str | None = None, verify: bool = True
) -> LoadedLoggedModel:
    """The logged model of MLflow run ``run_id``: model + processor at the logged precision per role."""
    from vlm_quant.tracking.tracker import download_logged_model

    with tempfile.TemporaryDirectory(prefix="vlmq-load-") as tmp:
        folder = download_logged_model(run_id, tmp, tracking_uri)
        return load_checkpoint_dir(folder, device=device, verify=verify)


def load_checkpoint_dir(folder: Path, *, device: str | None = None, verify: bool = True) -> LoadedLoggedModel:
    """Rebuild the checkpoint in ``folder`` from its recipe, audit it, and check it against its weights."""
    from vlm_quant.models.loading import load_vlm
    from vlm_quant.quantize.audit import audit_precision, verify_plan
    from vlm_quant.quantize.backends import apply_plan
    from vlm_quant.quantize.presets import resolve_plan

    recipe_file = Path(folder) / RECIPE
    if not recipe_file.is_file():
        raise UserError(f"{folder} has no {RECIPE}: logged by an older vlm-quant, it cannot be rebuilt")
    recipe = json.loads(recipe_file.read_text())
    plan = resolve_plan(recipe["quant"], recipe["precision"])
    if dict(plan.roles) != recipe["roles"]:
        raise UserError(f"preset {recipe['quant']!r} now means {plan.roles}, logged as {recipe['roles']}")
    dtype = getattr(torch, recipe["dtype"])
    device = device or recipe["device"]
    if plan.calibrated_roles or plan.prequantized:
        return _load_self_describing(folder, recipe, plan, dtype, device)
    loaded = load_vlm(
        recipe["model"],
        weights=recipe["weights"],
        revision=recipe["revision"],
        dtype=dtype,
        device=device,
        trust_remote_code=recipe["trust_remote_code"],
        seed=recipe["seed"],
    )
    apply_plan(
        loaded.model,
        loaded.family,
        plan,
        device=torch.device(device),
        compute_dtype=dtype,
        int8_threshold=recipe["int8_threshold"],
        double_quant=recipe["double_quant"],
    )
    precision_map = audit_precision(loaded.model, loaded.family, plan)
    verify_plan(plan, precision_map, dtype=dtype)
    if precision_map.role_params() != recipe["realized"]:
        raise UserError(
            f"rebuilt precision {precision_map.role_params()} differs from the logged {recipe['realized']}"
        )
    adopt_4bit_states(loaded.model, _weights(Path(folder)), device)
    checked = compare_weights(loaded.model, loaded.processor, Path(folder)) if verify else 0
    return LoadedLoggedModel(loaded.model, loaded.processor, loaded.family, recipe, precision_map, checked)


def _load_self_describing(folder: Path, recipe: dict[str, Any], plan: Any, dtype: torch.dtype, device: str):
    """AutoRound / llm-compressor exports and published checkpoints carry their ``quantization_config``: the
    library's own serialisation reads them back through ``from_pretrained``; the audit must find the
    logged precision."""
    from vlm_quant.models.loading import load_vlm
    from vlm_quant.quantize.audit import audit_precision, verify_plan
    from vlm_quant.quantize.llmcompressor_backend import decompress

    loaded = load_vlm(str(folder), dtype=dtype, device=device)
    if plan.calibrated_roles:  # llm-compressor exports run dense, as in the run (llmcompressor_backend.py)
        decompress(loaded.model)
    precision_map = audit_precision(loaded.model, loaded.family, plan)
    verify_plan(plan, precision_map, dtype=dtype)
    if precision_map.role_params() != recipe["realized"]:
        raise UserError(
            f"reloaded precision {precision_map.role_params()} differs from the logged {recipe['realized']}"
        )
    return LoadedLoggedModel(loaded.model, loaded.processor, loaded.family, recipe, precision_map, 0)


def adopt_4bit_states(model: Any, logged: dict[str, torch.Tensor], device: str) -> int:
    """Give every bitsandbytes ``Linear4bit`` its logged packed weight and quantization state.

    Raises UserError when a packed 4-bit weight disagrees (that is a different model, not rounding).
    Returns the number of modules adopted.
    """
    try:
        from bitsandbytes.nn import Linear4bit, Params4bit
    except ImportError:
        return 0
    adopted = 0
    for name, module in model.named_modules():
        if not isinstance(module, Linear4bit):
            continue
        key = f"{name}.weight"
        if key not in logged:
            raise UserError(f"the logged checkpoint has no {key}")
        if not torch.equal(module.weight.data.cpu(), logged[key]):
            raise UserError(f"rebuilt 4-bit weight {key} differs from the logged checkpoint's")
        stats = {k[len(key) + 1 :]: v for k, v in logged.items() if k.startswith(key + ".")}
        module.weight = Params4bit.from_prequantized(logged[key], stats, device=device, module=module)
        adopted += 1
    return adopted


def compare_weights(model: Any, processor: Any, logged: Path) -> int:
    """Number of tensors checked; UserError at the first tensor that differs from the logged files."""
    with tempfile.TemporaryDirectory(prefix="vlmq-verify-") as tmp:
        save_checkpoint(model, processor, Path(tmp))
        ours, theirs = _weights(Path(tmp)), _weights(logged)
        if set(ours) != set(theirs):
            missing, extra = sorted(set(theirs) - set(ours))[:3], sorted(set(ours) - set(theirs))[:3]
            raise UserError(
                f"rebuilt model's tensors differ from the logged ones: missing {missing}, extra {extra}"
            )
        for name, tensor in theirs.items():
            if tensor.dtype != ours[name].dtype or not torch.equal(tensor, ours[name]):
                raise UserError(f"rebuilt tensor {name} differs from the logged checkpoint's")
        return len(theirs)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the weight files in ``folder`` (safetensors, or a torch.save pickle)."""
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".safetensors":
            tensors.update(load_file(str(path)))
        elif path.suffix in WEIGHT_SUFFIXES:
            state = torch.load(path, map_location="cpu", weights_only=False)
            tensors.update({k: v.detach().cpu() for k, v in state.items()})
    return tensors
