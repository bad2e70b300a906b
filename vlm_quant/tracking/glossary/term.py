"""One glossary entry: the names it covers (a name may be a pattern), their unit, their meaning."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    """One entry: the names it covers, their unit (tags: their values; artifacts: their format), meaning."""

    names: tuple[str, ...]
    unit: str
    meaning: str

    def covers(self, name: str) -> bool:
        return any(_pattern(n).fullmatch(name) for n in self.names)


def _pattern(name: str) -> re.Pattern[str]:
    parts = re.split(r"<[^>]*>", name)
    return re.compile("[A-Za-z0-9_]*".join(re.escape(p) for p in parts))


def documented(name: str, terms: tuple[Term, ...]) -> bool:
    """Whether some entry of ``terms`` covers the logged name ``name``."""
    return any(term.covers(name) for term in terms)
