"""Configuration names from the precision each role really held (the audit), not from the request.

A run logs ``realized_precision_<role>`` for every role (vision, projector, language, lm_head): the
storage type of that role's linear weights as the precision audit found them after loading
(``fp16``, ``bf16``, ``fp32``, ``int8``, ``nf4``, ...; a mix such as ``int8 (22/24 linears) + fp32
(2/24 linears)``; ``none`` when the role owns no linear weight of its own, e.g. a tied lm_head).
The label is built from those values only, so ``quant=fp16`` with ``precision=language=int8`` is
called ``int8 (language)``, and a CPU run that computed in float32 is called ``fp32``.

Rule: roles are grouped by realized precision. One group: its name alone (``fp32``). Several: the
plain floating-point group holding the most roles is the unquantized remainder and is not named;
every other group is written ``<precision> (<roles>)``, language first (the bulk of the
parameters), joined by `` + ``: ``nf4 (language) + int8 (vision)``. A mixed role is named by its
types joined with ``+`` (``int8+fp32 (language)``); the appendix's precision table has the counts.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from vlm_quant.models.families import ROLES

PLAIN_FLOATS = ("fp16", "bf16", "fp32", "fp64")
NO_LINEARS = "none"
LABEL_ROLE_ORDER = ("language", "vision", "projector", "lm_head")  # reading order in a label
REALIZED_PARAM = "realized_precision_{role}"


def realized_precisions(row: Mapping | pd.Series) -> dict[str, str] | None:
    """Role -> realized precision read from a runs-frame row; None when the run logged none of them."""
    found = {}
    for role in ROLES:
        value = row.get(f"params.{REALIZED_PARAM.format(role=role)}")
        if isinstance(value, str) and value:
            found[role] = value
    return found or None


def short_precision(realized: str) -> str:
    """``int8 (22/24 linears) + fp32 (2/24 linears)`` -> ``int8+fp32``; a plain name is kept."""
    return "+".join(part.split(" (")[0].strip() for part in realized.split(" + "))


def precision_label(realized: Mapping[str, str]) -> str:
    """The short label of one run's realized precisions (module docstring's rule)."""
    groups = _groups(realized)
    if not groups:
        return "unknown precision"
    if len(groups) == 1:
        return next(iter(groups))
    remainder = _remainder(groups)
    return " + ".join(
        f"{name} ({', '.join(roles)})" for name, roles in groups.items() if name != remainder
    )


def _groups(realized: Mapping[str, str]) -> dict[str, list[str]]:
    """Short precision -> the roles holding it, in `LABEL_ROLE_ORDER`; roles without linears left out."""
    groups: dict[str, list[str]] = {}
    for role in LABEL_ROLE_ORDER:
        value = realized.get(role)
        if value is not None and value != NO_LINEARS:
            groups.setdefault(short_precision(value), []).append(role)
    return groups


def _remainder(groups: Mapping[str, list[str]]) -> str | None:
    floats = [name for name in groups if name in PLAIN_FLOATS]
    return max(floats, key=lambda name: len(groups[name])) if floats else None


def unnamed_remainder(realized: Mapping[str, str]) -> str | None:
    """The plain float the label leaves unnamed (``bf16`` of ``ar-w4 (language)`` whose other roles are
    bf16); None when the label names every group (``fp32``, ``int8``)."""
    groups = _groups(realized)
    return _remainder(groups) if len(groups) > 1 else None


def is_unquantized(realized: Mapping[str, str]) -> bool:
    """True when every role that owns linear weights holds one and the same plain float type."""
    names = {short_precision(v) for v in realized.values() if v != NO_LINEARS}
    return len(names) == 1 and next(iter(names)) in PLAIN_FLOATS


def run_precision(row: Mapping | pd.Series) -> str | None:
    """A run's precision label, or None when it logged no realized precision (a run before the audit)."""
    realized = realized_precisions(row)
    return precision_label(realized) if realized else None
