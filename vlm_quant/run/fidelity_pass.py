"""The run's fidelity pass: the unquantized model's outputs on the fidelity set, kept before the plan is
applied, compared with the quantized model's afterwards (see ``vlm_quant/quantize/fidelity.py``).

The fidelity set is its own: ``fidelity_samples`` distinct images (one evaluated sample each, the first
in evaluation order, so for POPE one question per image), a seeded draw from the evaluated samples'
images, skipping unreadable ones. Every calibration set (AutoRound, ONNX Runtime static) is drawn from
outside the evaluated images, so the fidelity set never shows the quantizer an image it calibrated on; and
the draw depends on the evaluated ids and ``seed`` only, so every configuration of a sweep measures
fidelity on the same images. Each is continued greedily by the 16-bit model for up to
``fidelity_new_tokens`` tokens; the ids, images and continuations are logged with the per-input values.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vlm_quant.quantize import fidelity
from vlm_quant.run.sample_inputs import sample_inputs
from vlm_quant.run.stages import stage

ARTIFACT = "fidelity/fidelity.json"
POOLING = (
    "every image token (cosines) and every continuation position (KL, top-1) of every fidelity image "
    "pooled, each with the same weight; p5: numpy.percentile(..., 5), linear interpolation"
)


def image_of(sample: Any) -> Any:
    """The image a sample shows (its ``image_file``; the sample id where a sample type has none)."""
    return getattr(sample, "image_file", getattr(sample, "sample_id", id(sample)))


def fidelity_candidates(samples: Mapping[Any, Any], evaluated: Sequence[Any], seed: int) -> list[Any]:
    """Evaluated sample ids, one per distinct image (its first in evaluation order), in a seeded order:
    the fidelity set is the first ``fidelity_samples`` of them whose image can be read."""
    first_of_image: dict[Any, Any] = {}
    for sample_id in evaluated:
        first_of_image.setdefault(image_of(samples[sample_id]), sample_id)
    images = sorted(first_of_image, key=str)
    random.Random(f"vlm-quant-fidelity-{seed}").shuffle(images)
    return [first_of_image[image] for image in images]


@dataclass
class FidelityPass:
    """The teacher-forced sequences of the fidelity set and the unquantized model's outputs on them."""

    ids: list[Any]
    images: list[Any]
    sequences: list[fidelity.TeacherForced]
    reference: list[fidelity.Outputs]

    @classmethod
    def before_quantizing(cls, prepared: Any, loaded: Any) -> FidelityPass | None:
        """The fidelity set through the model as loaded; None for an unquantized plan (nothing to compare)."""
        if not prepared.plan.quantized_roles:
            return None
        cfg, data = prepared.cfg, prepared.data
        ids, images, sequences = [], [], []
        with stage("fidelity (unquantized reference)") as info:
            for sample_id in fidelity_candidates(data.samples, data.ids, cfg.seed):
                if len(ids) == cfg.fidelity_samples:
                    break
                model_inputs = sample_inputs(prepared, loaded, sample_id)
                if model_inputs is None:  # unreadable image: the next image in the seeded order replaces it
                    continue
                continued = fidelity.continue_greedily(
                    loaded.model, loaded.processor, model_inputs, cfg.fidelity_new_tokens
                )
                sequences.append(continued)
                ids.append(sample_id)
                images.append(image_of(data.samples[sample_id]))
            reference = [fidelity.capture(loaded.model, loaded.family, s) for s in sequences]
            info["note"] = f"{len(ids)} images, {sum(s.positions for s in sequences)} positions"
        return cls(ids, images, sequences, reference) if sequences else None

    def after_quantizing(self, loaded: Any, tracker: Any) -> dict[str, float | None]:
        """The fidelity metrics of the quantized model; per-input values logged as an artifact."""
        with stage("fidelity (quantized)"):
            outputs = [fidelity.capture(loaded.model, loaded.family, sequence) for sequence in self.sequences]
        return self.log_comparison(outputs, tracker, logits_only=False)

    def log_comparison(
        self, outputs: Sequence[fidelity.Outputs], tracker: Any, *, logits_only: bool
    ) -> dict[str, float | None]:
        """The fidelity metrics of ``outputs`` (one per sequence, in order) against the reference; the
        per-input values logged as an artifact. ``logits_only``: an engine that exposes no role outputs
        (llama.cpp) is compared on its log-probabilities alone, so the role cosines are absent; otherwise
        a role missing from ``outputs`` is an error (a hook that was not reached)."""
        measured = []
        for reference, output in zip(self.reference, outputs):
            if logits_only:
                reference = fidelity.Outputs({}, reference.log_probs)
            measured.append(fidelity.compare_sample(reference, output))
        rows = [
            {"id": i, "image": image, "continuation_ids": s.continuation, **fidelity.sample_row(m)}
            for i, image, s, m in zip(self.ids, self.images, self.sequences, measured)
        ]
        tracker.log_json({"ids": self.ids, "pooling": POOLING, "rows": rows}, ARTIFACT)
        return fidelity.summarize(measured)
