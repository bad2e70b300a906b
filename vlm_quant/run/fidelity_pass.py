"""The run's fidelity pass: the unquantized model's outputs on the micro-set, kept before the plan is
applied, compared with the quantized model's afterwards (see ``vlm_quant/quantize/fidelity.py``).

The inputs are the cost pass's micro-set as far as it is known before the quality pass: the first
``cost_samples`` selected ids whose image can be read (the cost pass keeps the ids that also got a
prediction, which is the same list unless generation failed for one of them). They are logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlm_quant.quantize import fidelity
from vlm_quant.run.sample_inputs import sample_inputs

ARTIFACT = "fidelity/fidelity.json"


@dataclass
class FidelityPass:
    """The reference outputs of the unquantized model and the inputs that produced them."""

    ids: list[Any]
    inputs: list[dict[str, Any]]
    reference: list[fidelity.Outputs]

    @classmethod
    def before_quantizing(cls, prepared: Any, loaded: Any) -> FidelityPass | None:
        """The micro-set through the model as loaded; None for an unquantized plan (nothing to compare)."""
        if not prepared.plan.quantized_roles:
            return None
        cfg, data = prepared.cfg, prepared.data
        ids, inputs = [], []
        for sample_id in data.ids:
            if len(ids) == cfg.cost_samples:
                break
            model_inputs = sample_inputs(prepared, loaded, sample_id)
            if model_inputs is None:
                continue
            inputs.append(model_inputs)
            ids.append(sample_id)
        if not inputs:
            return None
        return cls(ids, inputs, fidelity.capture(loaded.model, loaded.family, inputs))

    def after_quantizing(self, loaded: Any, tracker: Any) -> dict[str, float | None]:
        """The fidelity metrics of the quantized model; per-input values logged as an artifact."""
        outputs = fidelity.capture(loaded.model, loaded.family, self.inputs)
        rows = [{"id": i, **row} for i, row in zip(self.ids, fidelity.per_input(self.reference, outputs))]
        tracker.log_json({"ids": self.ids, "rows": rows}, ARTIFACT)
        return fidelity.compare(self.reference, outputs)
