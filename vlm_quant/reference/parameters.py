"""docs/reference/parameters.md: every ExperimentConfig field with its type, default, choices and help."""

from __future__ import annotations

from dataclasses import fields

from vlm_quant.config import ExperimentConfig
from vlm_quant.reference.markdown import code, generated_note, table

PAGE = "reference/parameters.md"


def render() -> str:
    rows = [
        (
            code(f.name),
            f.type,
            code(repr(f.default)),
            ", ".join(code(c) for c in f.metadata.get("choices") or ()),
            f.metadata["help"],
        )
        for f in fields(ExperimentConfig)
    ]
    return (
        "\n\n".join(
            (
                "# Parameters",
                generated_note("`ExperimentConfig` (vlm_quant/config.py)"),
                "`vlm-quant evaluate --help`, the MLproject's `evaluate` parameters and the YAML keys of "
                "`configs/*.yaml` are the same set. Explicit parameters override the YAML; unknown keys and "
                "bad values are errors that name the key. A boolean accepts true/false, 1/0, yes/no, on/off.",
                table(("parameter", "type", "default", "choices", "meaning"), rows),
            )
        )
        + "\n"
    )
