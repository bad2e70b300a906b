"""docs/reference/parameters.md: every ExperimentConfig field with its type, default, choices and help,
in the sections the class itself is written in (its `# --- section ---` comments)."""

from __future__ import annotations

import inspect
import re
from dataclasses import Field, fields

from vlm_quant.config import ExperimentConfig
from vlm_quant.reference.markdown import code, generated_note, table

PAGE = "reference/parameters.md"
_SECTION = re.compile(r"^\s*# --- (.+?) -+$")
_FIELD = re.compile(r"^\s{4}(\w+): ")


def sections() -> list[tuple[str, list[Field]]]:
    """(section title, its fields) in source order; every field lands in exactly one section."""
    by_name = {f.name: f for f in fields(ExperimentConfig)}
    found: list[tuple[str, list[Field]]] = [("other", [])]
    for line in inspect.getsource(ExperimentConfig).splitlines():
        if title := _SECTION.match(line):
            found.append((title.group(1), []))
        elif (name := _FIELD.match(line)) and name.group(1) in by_name:
            found[-1][1].append(by_name[name.group(1)])
    return [(title, members) for title, members in found if members]


def _meaning(f: Field) -> str:
    choices = f.metadata.get("choices")
    return f.metadata["help"] + (f" One of: {', '.join(code(c) for c in choices)}." if choices else "")


def render() -> str:
    parts = [
        "# Parameters",
        generated_note("`ExperimentConfig` (vlm_quant/config.py)"),
        "`vlm-quant evaluate --help`, the MLproject's `evaluate` parameters and the YAML keys of "
        "`configs/*.yaml` are the same set. Explicit parameters override the YAML; unknown keys and "
        "bad values are errors that name the key. A boolean accepts true/false, 1/0, yes/no, on/off.",
    ]
    for title, members in sections():
        rows = [(code(f.name), f.type, code(repr(f.default)), _meaning(f)) for f in members]
        parts += [
            f"## {title[0].upper()}{title[1:]}",
            table(("parameter", "type", "default", "meaning"), rows),
        ]
    return "\n\n".join(parts) + "\n"
