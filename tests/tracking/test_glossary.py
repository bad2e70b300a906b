"""Every name of the run schema has a description with a unit; a name pattern covers what it should."""

from __future__ import annotations

import pytest

from vlm_quant.tracking import glossary, run_schema
from vlm_quant.tracking.glossary import Term


def _schema_values(marker: str) -> set[str]:
    """Every string the run schema holds under a module name containing ``marker`` (tuples, dicts too)."""
    names: set[str] = set()
    for attribute, value in vars(run_schema).items():
        if marker not in attribute or attribute.startswith("_"):
            continue
        if isinstance(value, str):
            names.add(value)
        elif isinstance(value, tuple):
            names.update(v for v in value if isinstance(v, str))
        elif isinstance(value, dict):
            names.update(v for v in value.values() if isinstance(v, str))
    return names


def test_every_metric_of_the_run_schema_has_a_description():
    metrics = _schema_values("METRIC") | {
        f"pope_{split}_{stat}" for split in run_schema.POPE_SPLITS for stat in ("accuracy", "f1", "yes_ratio")
    }
    metrics |= {run_schema.batch_invariance_delta_metric(task) for task in run_schema.PRIMARY_QUALITY_METRIC}
    assert {"cider", "latency_ms_p50", "fidelity_n_positions", "gpu_power_w", "anls"} <= metrics
    assert [m for m in sorted(metrics) if not glossary.documented(m, glossary.METRICS)] == []


def test_every_tag_and_artifact_of_the_run_schema_has_a_description():
    tags = _schema_values("TAG_") - {run_schema.TAG_PREFIX}
    artifacts = _schema_values("ARTIFACT_")
    assert len(tags) >= 15 and len(artifacts) >= 9
    assert [t for t in sorted(tags) if not glossary.documented(t, glossary.TAGS)] == []
    assert [a for a in sorted(artifacts) if not glossary.documented(a, glossary.ARTIFACTS)] == []


@pytest.mark.parametrize("terms", [glossary.METRICS, glossary.TAGS, glossary.ARTIFACTS])
def test_every_entry_says_its_unit_and_meaning(terms):
    assert all(term.names and term.unit.strip() and len(term.meaning) >= 10 for term in terms)
    names = [name for term in terms for name in term.names]
    assert len(names) == len(set(names)), "a name described twice"


def test_a_pattern_covers_the_varying_part_and_nothing_else():
    term = Term(("throughput_images_per_s_bs<B>", "latency_ms_<stat>"), "images/s", "for the test")
    assert term.covers("throughput_images_per_s_bs32") and term.covers("latency_ms_ci95_low")
    assert not term.covers("throughput_images_per_s_bs8_extra.x")
    assert not term.covers("latency_s_p50")  # another unit is another metric
    assert not glossary.documented("made_up_metric_ms", glossary.METRICS)
    assert glossary.documented("pope_adversarial_f1", glossary.METRICS)
    assert glossary.documented("vlm_quant.energy_absent_throughput_bs1", glossary.TAGS)
