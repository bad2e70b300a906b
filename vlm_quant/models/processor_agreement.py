"""How far a checkpoint's torchvision image processor is from its PIL one, on the same images.

The two backends resize with different implementations (PIL's filters vs torchvision's tensor
kernels), so their ``pixel_values`` differ slightly. `pixel_agreement` measures by how much, in the
processor's normalised units (after rescale and mean/std normalisation: for SmolVLM's [-1, 1] range
one 8-bit grey level is 2/255 = 0.0078). docs/input_pipeline.md quotes what it measured on the COCO slice.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vlm_quant.models.config_source import bundled_config_dir
from vlm_quant.models.loading import load_processor
from vlm_quant.models.offline_processor import save_offline_processor


@dataclass(frozen=True)
class PixelAgreement:
    """PIL vs torchvision ``pixel_values`` over ``images`` images: how many had equal shapes (tiles,
    patches), and the mean (over images of each image's mean) and max absolute difference of those."""

    model: str
    images: int
    same_shape: int
    mean_abs_diff: float | None
    max_abs_diff: float | None


def bundled_processors(model_id: str) -> dict[str, object]:
    """The real processor of a bundled checkpoint with each image backend, "pil" and "torchvision"."""
    with tempfile.TemporaryDirectory() as folder:  # the real processor files, no weights
        save_offline_processor(bundled_config_dir(model_id), Path(folder))
        return {backend: load_processor(folder, image_backend=backend) for backend in ("pil", "torchvision")}


def pixel_agreement(model_id: str, images: list[Image.Image]) -> PixelAgreement:
    """`PixelAgreement` of a bundled checkpoint's processors, one image at a time (SmolVLM untiled)."""
    processors = bundled_processors(model_id)
    untiled = "Idefics3" in type(processors["pil"].image_processor).__name__
    options = {"do_image_splitting": False} if untiled else {}
    means: list[float] = []
    maxima: list[float] = []
    for image in images:
        pil, fast = (
            processors[b].image_processor(images=[image], return_tensors="pt", **options)["pixel_values"]
            for b in ("pil", "torchvision")
        )
        if pil.shape != fast.shape:
            continue
        difference = (pil.float() - fast.float()).abs()
        means.append(float(difference.mean()))
        maxima.append(float(difference.max()))
    return PixelAgreement(
        model_id,
        len(images),
        len(means),
        sum(means) / len(means) if means else None,
        max(maxima) if maxima else None,
    )
