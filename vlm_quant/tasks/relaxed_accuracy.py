"""ChartQA's relaxed accuracy, as its public implementation defines it.

Paper (Masry et al. 2022, ChartQA, Sec. 5.1, following Methani et al. 2020): a numeric answer is
correct within 5% of the gold answer; a non-numeric one needs an exact match. The public
implementation is google-research/pix2struct ``pix2struct/metrics.py`` (``relaxed_correctness``,
used for ChartQA by pix2struct, MatCha, DePlot and by lmms-eval's chartqa task). Its rules, kept
as they are so numbers compare with published ones:

* a string "parses as a number" when Python's ``float()`` accepts it as given (outer whitespace
  allowed; "1,000", "$5", "5 kg" do not parse, so they need an exact match);
* a trailing "%" is removed and the number divided by 100 ("45%" is 0.45, and "45" is 45: so
  "45%" against the target "45" is a miss);
* the tolerance test runs only when both sides parse *and* the target is non-zero
  (``target_float`` truthy): a zero target falls back to the string comparison ("0" vs "0.0" is a miss);
* the relative change is ``|prediction - target| / |target|`` and must be ``<= 0.05``;
* otherwise: equal after lower-casing (no stripping, no punctuation removal);
* years are numbers too ("2019" vs "2020" is within 5%: correct), a known quirk of the metric;
* several targets: the best over them (pix2struct's ``aggregate_metrics``); ChartQA has one label.

Relaxed accuracy of a set is the mean of the per-question 0/1 (reported 0-1; the papers print x100).
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_RELATIVE_CHANGE = 0.05
METRIC_DEFINITION = (  # one sentence for the paper's setup section
    "Relaxed accuracy counts an answer correct when both it and the label parse as numbers within 5% of "
    "the label, and otherwise when it equals the label after lower-casing (ChartQA's public "
    "implementation, pix2struct's relaxed_correctness, quirks kept); human and augmented questions apart"
)


def parse_number(text: str) -> float | None:
    """The number ``float()`` reads from ``text`` (a trailing "%" divides by 100), else None."""
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correct(prediction: str, target: str, max_relative_change: float = MAX_RELATIVE_CHANGE) -> bool:
    """Whether ``prediction`` matches ``target`` under ChartQA's relaxed rule (see the module docstring)."""
    predicted = parse_number(prediction)
    expected = parse_number(target)
    if predicted is not None and expected:  # a zero target is compared as text, as the reference does
        return abs(predicted - expected) / abs(expected) <= max_relative_change
    return prediction.lower() == target.lower()


def relaxed_question(prediction: str, targets: Sequence[str]) -> float:
    """1.0 when the prediction is relaxed-correct against any target, else 0.0."""
    if not targets:
        raise ValueError("relaxed accuracy needs at least one target per question.")
    return float(any(relaxed_correct(prediction, t) for t in targets))
