"""Sustainability metrics, tags and artifacts (issue 26): their (unit, meaning) pairs are kept beside the
names in `run_schema.SUSTAINABILITY_*`, where the run code and its tests read them; here they become
glossary entries like every other name."""

from __future__ import annotations

from vlm_quant.tracking import run_schema
from vlm_quant.tracking.glossary.term import Term


def _terms(table: dict[str, tuple[str, str]]) -> tuple[Term, ...]:
    return tuple(Term((name,), unit, meaning) for name, (unit, meaning) in table.items())


SUSTAINABILITY_METRICS = _terms(run_schema.SUSTAINABILITY_METRICS)
SUSTAINABILITY_TAGS = _terms(run_schema.SUSTAINABILITY_TAGS)
SUSTAINABILITY_ARTIFACTS = _terms(run_schema.SUSTAINABILITY_ARTIFACTS)
