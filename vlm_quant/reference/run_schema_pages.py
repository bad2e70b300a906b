"""docs/reference/metrics.md and docs/reference/tags_and_artifacts.md from the run schema's glossary."""

from __future__ import annotations

from vlm_quant.reference.markdown import code, generated_note, table
from vlm_quant.tracking import glossary
from vlm_quant.tracking.glossary import Term

METRICS_PAGE = "reference/metrics.md"
TAGS_PAGE = "reference/tags_and_artifacts.md"
_SOURCE = "vlm_quant/tracking/glossary/ (the names: vlm_quant/tracking/run_schema.py)"


def _rows(terms: tuple[Term, ...]) -> list[tuple[str, str, str]]:
    return [(", ".join(code(n) for n in t.names), t.unit, t.meaning) for t in terms]


def render_metrics() -> str:
    sections = (
        ("Quality", glossary.QUALITY_METRICS),
        ("Cost", glossary.COST_METRICS),
        ("Energy and CO2e", glossary.ENERGY_METRICS),
        ("Fidelity and batch invariance", glossary.FIDELITY_METRICS),
        ("Sustainability", glossary.SUSTAINABILITY_METRICS),
        ("llama.cpp engine (gguf-* presets)", glossary.LLAMA_CPP_METRICS),
    )
    parts = [
        "# Metrics",
        generated_note(_SOURCE),
        "Metric names carry their unit. A metric that was not measured is **absent**, never zero, and a tag "
        "(see [Tags and artifacts](tags_and_artifacts.md)) says why. `<...>` stands for a part of the name "
        "that varies; `<stat>` is one of `n`, `mean`, `p50`, `p90`, `ci95_low`, `ci95_high`. How the cost "
        "pass measures: [How the cost pass measures](../cost_pass.md).",
    ]
    for title, terms in sections:
        parts += [f"## {title}", table(("metric", "unit", "meaning"), _rows(terms))]
    return "\n\n".join(parts) + "\n"


def render_tags_and_artifacts() -> str:
    return (
        "\n\n".join(
            (
                "# Tags and artifacts",
                generated_note(_SOURCE),
                "## Tags",
                "Every run also carries MLflow's own tags (`mlflow.note.content`: the run's description).",
                table(("tag", "values", "meaning"), _rows(glossary.TAGS)),
                "## Artifacts",
                "Paths inside a run's artifact folder.",
                table(("artifact", "format", "content"), _rows(glossary.ARTIFACTS)),
            )
        )
        + "\n"
    )
