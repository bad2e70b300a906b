"""The fidelity columns of the cost table: their cells, and the sentence that says what they measure."""

from __future__ import annotations

import pandas as pd

from vlm_quant.models.families import ROLES
from vlm_quant.study.report.precision_labels import is_unquantized
from vlm_quant.study.report.render import NA, fmt_number, is_missing

UNQUANTIZED = f"{NA} (unquantized)"  # nothing to compare with: the fidelity pass runs for quantized runs

COUNTS = ("fidelity_n_images", "fidelity_n_positions")


def _over(numbers: pd.DataFrame) -> str:
    """'16 images, 241 positions' when every run measured the same counts; else where to find them."""
    counts = [numbers[c].dropna().unique() if c in numbers else [] for c in COUNTS]
    if all(len(values) == 1 for values in counts):
        images, positions = (int(values[0]) for values in counts)
        return f"{images} images, {positions} positions"
    return "images and positions per run: fidelity_n_images, fidelity_n_positions in results.csv"


def legend(numbers: pd.DataFrame) -> list[str]:
    """One line when some run logged fidelity (quantized runs), none otherwise."""
    if "fidelity_n_images" not in numbers or numbers["fidelity_n_images"].isna().all():
        return []
    return [
        "Fidelity (quantized runs, against the unquantized model on the same inputs): vision cos = cosine "
        "of each image token's vision features, mean and 5th percentile over every token of the fidelity "
        "images; KL (nats) and top-1 agreement at every position of the 16-bit model's own greedy "
        f"continuation, both models teacher-forced, mean over all positions ({_over(numbers)})."
    ]


def cells(numbers: pd.DataFrame, metric: str, fmt: str, not_logged: str) -> list[str]:
    """One fidelity column: the value, ``n/a (unquantized)`` for a run whose roles all held one plain
    float type (the pass compares a quantized model with its unquantized self), else ``not_logged``."""
    out = []
    for _, row in numbers.iterrows():
        value = row.get(metric)
        if not is_missing(value):
            out.append(fmt_number(value, fmt))
            continue
        realized = {r: row.get(f"realized_precision_{r}") for r in ROLES}
        realized = {r: v for r, v in realized.items() if isinstance(v, str) and v}
        out.append(UNQUANTIZED if realized and is_unquantized(realized) else not_logged)
    return out
