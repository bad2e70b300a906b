"""POPE scoring as pure functions: the answer readings and the per-split metrics.

Two readings of a free-form answer:

- ``read_as_published`` (the headline metrics): POPE's ``evaluate.py`` (github.com/RUCAIBox/POPE): keep
  the text before the first ".", drop commas, split on single spaces; the answer is "no" when one of the
  words is exactly "No", "no" or "not", else "yes". So "NO", "Nope", "No!", "I cannot tell." and ""
  read as yes, and "There is a dog. There is no cat." as yes too. An answer that reading takes
  *doubtfully* (`is_doubtful`: it does not begin with yes or no, or begins with one and is read as the
  other, e.g. "NO") is counted apart (``pope_<split>_doubtful_n``, ``pope_doubtful_answers_n``).
- ``parse_yes_no`` (the ``pope_strict_*`` metrics): the first word when it is a yes/no word ("Yes.",
  "NO", "No, there isn't"), else a negation anywhere ("There is no dog", "I don't see one") means no,
  else an affirmation ("There is a dog", "I can see a cat") means yes; anything else ("A dog.", "",
  "maybe") is unparsed (counted, scored wrong).

Metrics (0-1), with "yes" the positive class: ``accuracy`` = correct / questions (an unparsed answer
is wrong); ``precision`` = TP / answers "yes"; ``recall`` = TP / questions labelled yes (an unparsed
answer to one is a miss); ``f1`` = 2PR / (P + R); ``yes_ratio`` = answers "yes" / questions (0.5 for a
balanced split answered without bias). A ratio with nothing to divide by is absent, and so is F1 when
P + R = 0 (no true positive; POPE's script fails on a division by zero in both cases).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

YES_WORDS = frozenset({"yes", "yeah", "yep", "yup", "yea", "correct", "true", "affirmative", "indeed"})
NO_WORDS = frozenset({"no", "nope", "nah", "false", "negative", "incorrect", "not"})
NEGATIONS = frozenset({"no", "not", "none", "nothing", "neither", "nor", "without", "cannot", "never"})
AFFIRMATIONS = (
    r"\bthere (?:is|are)\b", r"\bi (?:can )?see\b", r"\bit (?:is|has)\b", r"\bcontains?\b",
    r"\b(?:is|are) (?:visible|present)\b",
)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def parse_yes_no(answer: str) -> str | None:
    """"yes", "no", or None when the answer says neither."""
    words = _WORD.findall(answer.lower().replace("\u2019", "'"))
    if not words:
        return None
    if words[0] in YES_WORDS:
        return "yes"
    if words[0] in NO_WORDS:
        return "no"
    if any(w in NEGATIONS or w.endswith("n't") for w in words):
        return "no"
    text = " ".join(words)
    if any(re.search(pattern, text) for pattern in AFFIRMATIONS):
        return "yes"
    return None


_NEGATING_WORDS = frozenset({"No", "no", "not"})  # POPE's evaluate.py, case as written there
_LEADING_WORD = re.compile(r"[a-z]+")


def read_as_published(answer: str) -> str:
    """"yes" or "no", as POPE's evaluate.py reads ``answer``."""
    first_sentence = answer.split(".")[0]
    words = first_sentence.replace(",", "").split(" ")
    return "no" if _NEGATING_WORDS.intersection(words) else "yes"


def is_doubtful(answer: str) -> bool:
    """True unless the answer begins with yes or no (any case) and the published reading agrees."""
    lead = _LEADING_WORD.match(answer.strip().lower())
    word = lead.group() if lead else ""
    return word not in ("yes", "no") or read_as_published(answer) != word


@dataclass(frozen=True)
class PopeScores:
    """One split's counts; the ratios are properties (None: nothing to divide by)."""

    n: int
    tp: int
    fp: int
    tn: int
    fn: int  # includes unparsed answers to yes-questions
    n_unparsed: int

    @property
    def n_yes(self) -> int:
        return self.tp + self.fp

    @property
    def accuracy(self) -> float | None:
        return (self.tp + self.tn) / self.n if self.n else None

    @property
    def precision(self) -> float | None:
        return self.tp / self.n_yes if self.n_yes else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else None

    @property
    def yes_ratio(self) -> float | None:
        return self.n_yes / self.n if self.n else None

    def metrics(self, prefix: str, counts: tuple[str, ...] = ("n", "n_unparsed")) -> dict[str, float]:
        """``<prefix>_<ratio>`` for each defined ratio, and the ``counts`` asked for (``<prefix>_n``,
        ``<prefix>_unparsed_n``)."""
        names = {"n": "n", "n_unparsed": "unparsed_n"}
        out = {f"{prefix}_{names[c]}": float(getattr(self, c)) for c in counts}
        for name in ("accuracy", "precision", "recall", "f1", "yes_ratio"):
            value = getattr(self, name)
            if value is not None:
                out[f"{prefix}_{name}"] = value
        return out


def score_pope(pairs: Iterable[tuple[str, str | None]]) -> PopeScores:
    """Counts from (label, parsed answer) pairs; labels are "yes"/"no", answers "yes"/"no"/None."""
    tp = fp = tn = fn = unparsed = n = 0
    for label, answer in pairs:
        n += 1
        unparsed += answer is None
        if label == "yes":
            tp += answer == "yes"
            fn += answer != "yes"
        else:
            fp += answer == "yes"
            tn += answer == "no"
    return PopeScores(n, tp, fp, tn, fn, unparsed)


def f1_of(labels: list[str], answers: list[str | None]) -> float | None:
    """F1 of one set of questions (the report's bootstrap statistic)."""
    return score_pope(zip(labels, answers, strict=True)).f1
