"""What every metric, tag and artifact of a run means, with its unit: the one description of each.

`run_schema` holds the names the code writes and reads; this module holds what they mean, for people.
The reference pages under docs/reference/ are generated from it (`python tools/write_reference.py`), and
the suite fails when a name in `run_schema` has no entry here. A name may be a pattern: `<...>` stands
for a part that varies (a batch size, a split, a statistic).
"""

from __future__ import annotations

from vlm_quant.tracking.glossary.artifacts import ARTIFACTS as _ARTIFACTS
from vlm_quant.tracking.glossary.cost import COST_METRICS, ENERGY_METRICS
from vlm_quant.tracking.glossary.fidelity import FIDELITY_METRICS
from vlm_quant.tracking.glossary.llama_cpp import LLAMA_CPP_ARTIFACTS, LLAMA_CPP_METRICS, LLAMA_CPP_TAGS
from vlm_quant.tracking.glossary.quality import QUALITY_METRICS
from vlm_quant.tracking.glossary.sustainability import (
    SUSTAINABILITY_ARTIFACTS,
    SUSTAINABILITY_METRICS,
    SUSTAINABILITY_TAGS,
)
from vlm_quant.tracking.glossary.tags import TAGS as _TAGS
from vlm_quant.tracking.glossary.term import Term, documented

METRICS: tuple[Term, ...] = (
    QUALITY_METRICS
    + COST_METRICS
    + ENERGY_METRICS
    + FIDELITY_METRICS
    + SUSTAINABILITY_METRICS
    + LLAMA_CPP_METRICS
)
TAGS: tuple[Term, ...] = _TAGS + SUSTAINABILITY_TAGS + LLAMA_CPP_TAGS
ARTIFACTS: tuple[Term, ...] = _ARTIFACTS + SUSTAINABILITY_ARTIFACTS + LLAMA_CPP_ARTIFACTS

__all__ = [
    "ARTIFACTS",
    "COST_METRICS",
    "ENERGY_METRICS",
    "FIDELITY_METRICS",
    "LLAMA_CPP_METRICS",
    "METRICS",
    "QUALITY_METRICS",
    "SUSTAINABILITY_METRICS",
    "TAGS",
    "Term",
    "documented",
]
