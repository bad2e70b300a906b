"""docs/reference/presets.md: every preset of `PRESETS` (its precision per role) and every precision."""

from __future__ import annotations

from vlm_quant.quantize.presets import PRECISIONS, PRESETS, ROLES
from vlm_quant.reference.markdown import code, generated_note, table

PAGE = "reference/presets.md"


def preset_rows() -> list[tuple[str, ...]]:
    return [(code(p.name), *(p.roles[role] for role in ROLES), p.description) for p in PRESETS.values()]


def render() -> str:
    precisions = [
        (code(p.name), p.backend, p.bits, ", ".join(p.roles), "yes" if p.calibrated else "no", p.description)
        for p in PRECISIONS.values()
    ]
    return (
        "\n\n".join(
            (
                "# Presets and precisions",
                generated_note("`PRESETS` and `PRECISIONS` (vlm_quant/quantize/presets.py)"),
                "A preset (`quant=`) gives each role of the model one precision; `precision=` overrides "
                "roles of it, e.g. `vision=int8,language=nf4`. "
                "More: [Precision configurations](../precision.md).",
                "## Presets",
                table(("preset", *ROLES, "what it is"), preset_rows()),
                "## Precisions",
                table(("precision", "backend", "bits", "roles", "calibrated", "what it is"), precisions),
            )
        )
        + "\n"
    )
