"""The calibration set of every calibrated quantizer (AutoRound, llm-compressor, ONNX Runtime static).

One seeded draw of split ids whose images are not among the evaluated ones (a VQA image with several
questions counts once, and an image that is evaluated under any question is never drawn), so no
evaluated image informs a quantizer, and the fidelity set (drawn from the evaluated images) stays unseen.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from vlm_quant.errors import UserError


def calibration_ids(samples: Mapping[Any, Any], evaluated: Sequence[Any], n: int, seed: int) -> list[Any]:
    """Up to ``n`` sample ids (seeded by ``seed``), one per image, none showing an evaluated image.

    Empty when every image of the split is evaluated (the callers say what to change).
    """
    seen = {getattr(samples[i], "image_file", i) for i in evaluated}
    pool = []
    for sample_id in sorted(samples):
        image = getattr(samples[sample_id], "image_file", sample_id)
        if image not in seen:
            seen.add(image)
            pool.append(sample_id)
    return random.Random(f"vlm-quant-calibration-{seed}").sample(pool, min(n, len(pool)))


def require_calibration_ids(
    samples: Mapping[Any, Any], evaluated: Sequence[Any], n: int, seed: int, quantizer: str
) -> list[Any]:
    """``calibration_ids``, or UserError when the split has no image left outside the evaluated ones:
    calibrating on evaluated images would leak the test set into the quantizer."""
    ids = calibration_ids(samples, evaluated, n, seed)
    if not ids:
        raise UserError(
            f"{quantizer} needs calibration images that are not evaluated, but all {len(samples)} samples "
            f"of the split are evaluated (or show an evaluated image); lower n_samples."
        )
    return ids
