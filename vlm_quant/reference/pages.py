"""Every generated reference page: its path under docs/ -> its Markdown."""

from __future__ import annotations

from vlm_quant.reference import parameters, presets, run_schema_pages


def render_pages() -> dict[str, str]:
    return {
        parameters.PAGE: parameters.render(),
        run_schema_pages.METRICS_PAGE: run_schema_pages.render_metrics(),
        run_schema_pages.TAGS_PAGE: run_schema_pages.render_tags_and_artifacts(),
        presets.PAGE: presets.render(),
    }
