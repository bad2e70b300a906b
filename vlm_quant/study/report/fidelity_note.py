"""The sentence under the cost table that says what its fidelity columns measure and over what."""

from __future__ import annotations

import pandas as pd

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
