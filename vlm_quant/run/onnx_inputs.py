"""The inputs an ONNX Runtime vision role is built from: the processor's real input and calibration images.

* Example: the first evaluated image that can be read, through the task's prompt and the processor,
  exactly as generation will see it (so the exported shape is the real one: 512x512 for SmolVLM
  without tiling).
* Calibration (``ort-int8-static``): ``ort_calibration_samples`` images of the split's shared calibration
  draw (``tasks/calibration_split.py``: seeded, one per image, no evaluated image), so no evaluated
  image informs the activation ranges. The ids are logged.
"""

from __future__ import annotations

from typing import Any

from vlm_quant.errors import UserError
from vlm_quant.quantize import onnx_export
from vlm_quant.quantize.onnxruntime_backend import OrtSettings
from vlm_quant.quantize.presets import PRECISIONS
from vlm_quant.run.sample_inputs import sample_inputs
from vlm_quant.tasks.calibration_split import calibration_ids


def check_calibration_pool(cfg: Any, data: Any) -> None:
    """UserError before the run when ``ort-int8-static`` would find no image outside the evaluated ones."""
    if cfg.ort_calibration_samples < 1:
        raise UserError("ort-int8-static needs calibration images (ort_calibration_samples >= 1).")
    if not calibration_ids(data.samples, data.ids, cfg.ort_calibration_samples, cfg.seed):
        raise UserError(no_calibration_images(cfg, data))


def no_calibration_images(cfg: Any, data: Any) -> str:
    return (
        "ort-int8-static needs calibration images outside the evaluated ids, and the split has "
        f"none left (n_samples={cfg.n_samples} of {len(data.samples)}); lower n_samples."
    )


def _vision_inputs(prepared: Any, loaded: Any, sample_id: Any) -> onnx_export.VisionInputs | None:
    inputs = sample_inputs(prepared, loaded, sample_id)
    if inputs is None:
        return None
    return onnx_export.capture_vision_inputs(loaded.model, loaded.family.roles["vision"][0], inputs)


def ort_settings(prepared: Any, loaded: Any) -> OrtSettings | None:
    """The OrtSettings of the plan's ONNX Runtime role; None when the plan has none."""
    ort_roles = [p for p in prepared.plan.quantized_roles.values() if PRECISIONS[p].backend == "onnxruntime"]
    if not ort_roles:
        return None
    cfg, data = prepared.cfg, prepared.data
    example = next(filter(None, (_vision_inputs(prepared, loaded, i) for i in data.ids)), None)
    if example is None:
        raise UserError("no evaluated image could be read, so the vision tower cannot be exported to ONNX.")
    calibration: list[onnx_export.VisionInputs] = []
    ids: list[Any] = []
    if "ort-int8-static" in ort_roles:
        for sample_id in calibration_ids(data.samples, data.ids, cfg.ort_calibration_samples, cfg.seed):
            inputs = _vision_inputs(prepared, loaded, sample_id)
            if inputs is not None:
                calibration.append(inputs)
                ids.append(sample_id)
        if not calibration:
            raise UserError(no_calibration_images(cfg, data))
    return OrtSettings(
        example=example,
        calibration=tuple(calibration),
        calibration_ids=tuple(ids),
        calibration_method=cfg.ort_calibration_method,
        provider=cfg.ort_provider,
        model_key={
            "model": cfg.model,
            "weights": cfg.weights,
            "seed": cfg.seed if cfg.weights == "random" else None,
            "revision": loaded.revision or cfg.revision,
            "source": loaded.source_dir,
            "files": _weights_signature(loaded.source_dir),
        },
    )


def _weights_signature(source_dir: str | None) -> list[tuple[str, int, int]]:
    """(name, bytes, mtime) of the weight files: a local checkpoint rewritten in place gets a new export."""
    from pathlib import Path

    if not source_dir or not Path(source_dir).is_dir():
        return []
    return [
        (p.name, p.stat().st_size, int(p.stat().st_mtime))
        for p in sorted(Path(source_dir).glob("*.safetensors"))
    ]


def copy_onnx_files(model: Any, out_dir: Any) -> float:
    """Copy the ONNX files the model runs (every graph, with its weights file) into ``out_dir/onnx/``
    (the checkpoint); their size in MiB."""
    import shutil
    from pathlib import Path

    from vlm_quant.quantize.onnx_export import graph_files
    from vlm_quant.quantize.onnxruntime_backend import ort_modules

    total = 0
    for name, module in ort_modules(model).items():
        for index, path in enumerate(module.onnx_paths):
            folder = Path(out_dir) / "onnx" / f"{name}.{index}"
            folder.mkdir(parents=True, exist_ok=True)
            for file in graph_files(path):
                shutil.copyfile(file, folder / file.name)
                total += (folder / file.name).stat().st_size
    return total / 2**20
