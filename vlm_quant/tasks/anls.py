"""DocVQA's ANLS (Average Normalized Levenshtein Similarity), as the official evaluation computes it.

Definition (Biten et al. 2019, "Scene Text Visual Question Answering", Eq. 1; DocVQA, Mathew et al.
2021): per question, the best over its answers of ``1 - NL`` where NL is the Levenshtein distance over
the longer string's length; a question whose best similarity is below the threshold (0.5) scores 0;
ANLS is the mean over questions (0-1).

Rules checked against the official RRC / docvqa.org evaluation script (the InfographicVQA/DocVQA
``evaluate.py`` downloadable from rrc.cvc.uab.es, ch=17; read as redistributed on GitHub):

* both strings are compared after ``strip``, ``lower`` and collapsing runs of whitespace to one space;
* the *denominator* is the longer of the two strings **as given** (not normalised): the script divides
  by ``max(len(answer), len(prediction))`` of the raw strings. Kept for comparability: "  Foo  " vs "foo"
  is distance 0 (similarity 1) and "A  B" vs "ab" is distance 1 over 4 (0.75), not 1 over 3;
* two empty strings have distance 0 (similarity 1);
* the threshold keeps a similarity of exactly 0.5 (``if score < 0.5: score = 0``), the paper's
  "NL < tau" read the other way round at the boundary; pix2struct's ``anls_metric`` agrees (NL <= 0.5).

Levenshtein distance: rapidfuzz's (unit costs for insertion, deletion, substitution).
"""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein

ANLS_THRESHOLD = 0.5
METRIC_DEFINITION = (  # one sentence for the paper's setup section
    "ANLS is, per question, the best over its accepted answers of one minus the Levenshtein distance over "
    "the longer string's length, after lower-casing and whitespace normalisation, set to 0 below 0.5, "
    "averaged over questions (the official DocVQA evaluation's rules)"
)


def normalize_for_anls(text: str) -> str:
    """Lower case, outer whitespace stripped, inner whitespace runs collapsed to one space."""
    return " ".join(text.strip().lower().split())


def answer_similarity(prediction: str, answer: str) -> float:
    """1 - normalised Levenshtein distance (0-1, before the threshold), the official script's way."""
    length = max(len(answer), len(prediction))
    if length == 0:
        return 1.0
    distance = Levenshtein.distance(normalize_for_anls(answer), normalize_for_anls(prediction))
    return 1.0 - distance / length


def anls_question(prediction: str, answers: Sequence[str], threshold: float = ANLS_THRESHOLD) -> float:
    """One question's ANLS (0-1): the best similarity over its answers, 0 when below ``threshold``."""
    if not answers:
        raise ValueError("ANLS needs at least one answer per question.")
    best = max(answer_similarity(prediction, answer) for answer in answers)
    return best if best >= threshold else 0.0


def anls(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> float:
    """Mean ANLS (0-1) over questions; ``answers[i]`` are question i's accepted answers."""
    if len(predictions) != len(answers) or not predictions:
        raise ValueError("ANLS needs one prediction per question and at least one question.")
    return sum(anls_question(p, a) for p, a in zip(predictions, answers, strict=True)) / len(predictions)
