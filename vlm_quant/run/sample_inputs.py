"""One split sample as model inputs, exactly as the quality pass builds them (image, task prompt, processor).

Fidelity, AutoRound calibration and the ONNX export all feed the model single samples outside the
quality pass; they share this so their inputs cannot drift from what the evaluation feeds the model.
"""

from __future__ import annotations

from typing import Any

from vlm_quant.engines.generate import prepare_inputs
from vlm_quant.run.quality_pass import load_image


def sample_inputs(prepared: Any, loaded: Any, sample_id: Any) -> dict[str, Any] | None:
    """The processor outputs of ``sample_id`` on the model's device (None when its image cannot be read)."""
    data = prepared.data
    sample, image, _error = load_image(data, data.samples[sample_id], prepared.cfg.max_image_side)
    if image is None:
        return None
    request = prepared.task.request(data, sample, image)
    device = next(loaded.model.parameters()).device
    return prepare_inputs(
        loaded.processor, [request], device=device, dtype=prepared.dtype, settings=prepared.settings
    )
