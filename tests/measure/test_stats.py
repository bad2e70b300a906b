import math

import numpy as np
import pytest

from vlm_quant.measure.stats import Summary, percentile, summarize, t_quantile_975


def test_summary_matches_numpy_and_the_t_interval_by_hand():
    values = [1.0, 2.0, 3.0, 4.0]
    summary = summarize(values)
    # By definition: mean 2.5, s = sqrt(5/3), t(0.975, 3) = 3.182446, half width = t * s / sqrt(4).
    half_width = 3.182446 * math.sqrt(5 / 3) / 2
    assert summary.n == 4
    assert summary.mean == pytest.approx(2.5)
    assert summary.p50 == pytest.approx(np.percentile(values, 50))
    assert summary.p90 == pytest.approx(np.percentile(values, 90))
    assert summary.ci95_low == pytest.approx(2.5 - half_width)
    assert summary.ci95_high == pytest.approx(2.5 + half_width)


def test_interval_agrees_with_scipy_on_skewed_data():
    stats = pytest.importorskip("scipy.stats")
    values = [12.1, 11.8, 13.4, 12.0, 19.7, 12.2, 11.9, 12.5, 12.3, 14.0, 12.1, 11.7]
    summary = summarize(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert summary.ci95_low == pytest.approx(low, rel=1e-6)
    assert summary.ci95_high == pytest.approx(high, rel=1e-6)


def test_t_quantile_table_and_expansion_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in [*range(1, 40), 50, 100, 1000, 100_000]:
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-6)


@pytest.mark.parametrize("q", [0, 10, 25, 50, 90, 99, 100])
def test_percentile_is_numpy_linear_interpolation(q):
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0]
    assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_one_value_gives_a_degenerate_interval():
    summary = summarize([42.0])
    assert summary == Summary(n=1, mean=42.0, p50=42.0, p90=42.0, ci95_low=42.0, ci95_high=42.0)


def test_no_values_or_non_finite_values_are_refused():
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_identical_values_have_zero_width_interval():
    summary = summarize([3.0] * 10)
    assert (summary.ci95_low, summary.ci95_high) == (3.0, 3.0)


def test_as_metrics_prefixes_carry_the_unit():
    metrics = summarize([10.0, 20.0, 30.0]).as_metrics("latency_ms")
    assert set(metrics) == {
        "latency_ms_mean",
        "latency_ms_p50",
        "latency_ms_p90",
        "latency_ms_ci95_low",
        "latency_ms_ci95_high",
    }
    assert metrics["latency_ms_mean"] == pytest.approx(20.0)
    assert metrics["latency_ms_p50"] == pytest.approx(20.0)
    assert metrics["latency_ms_p90"] == pytest.approx(28.0)
    assert all(isinstance(value, float) for value in metrics.values())
