import numpy as np
import pytest
from scipy import stats

from vlm_quant.measure.stats import MIN_N_FOR_INTERVAL, Summary, percentile, summarize

SKEWED = [12.1, 11.8, 13.4, 12.0, 19.7, 12.2, 11.9, 12.5, 12.3, 14.0, 12.1, 11.7]


def test_point_statistics_match_numpy():
    summary = summarize(SKEWED)
    assert summary.n == len(SKEWED)
    assert summary.mean == pytest.approx(np.mean(SKEWED))
    assert summary.p50 == pytest.approx(np.percentile(SKEWED, 50))
    assert summary.p90 == pytest.approx(np.percentile(SKEWED, 90))


def test_interval_is_scipys_percentile_bootstrap_of_the_mean():
    summary = summarize(SKEWED, seed=7)
    reference = stats.bootstrap(
        (np.array(SKEWED),), np.mean, method="percentile", n_resamples=9_999, rng=np.random.default_rng(7)
    ).confidence_interval
    assert summary.ci95_low == pytest.approx(reference.low)
    assert summary.ci95_high == pytest.approx(reference.high)
    # The outlier (19.7) pulls the interval up, not symmetrically around the mean as a t interval would.
    assert summary.ci95_high - summary.mean > summary.mean - summary.ci95_low


def test_interval_is_reproducible_and_covers_the_mean():
    assert summarize(SKEWED) == summarize(SKEWED)
    summary = summarize(SKEWED)
    assert summary.ci95_low < summary.mean < summary.ci95_high


def test_interval_of_non_negative_skewed_values_never_goes_below_zero():
    # Latencies with one huge outlier: the t interval of these values starts far below 0.
    values = [5.0] * 9 + [5000.0]
    t_low = np.mean(values) - stats.t.ppf(0.975, len(values) - 1) * stats.sem(values)
    assert t_low < 0
    summary = summarize(values)
    assert 0 <= min(values) <= summary.ci95_low <= summary.ci95_high <= max(values)


def test_too_few_values_give_n_and_no_interval():
    summary = summarize([2870.0, 5300.0, 2900.0])
    assert summary.n == 3 and summary.ci95_low is None and summary.ci95_high is None
    metrics = summary.as_metrics("latency_ms")
    assert metrics["latency_ms_n"] == 3.0
    assert not any("ci95" in key for key in metrics)
    assert summarize([1.0] * (MIN_N_FOR_INTERVAL - 1)).ci95_low is None
    assert summarize([1.0] * MIN_N_FOR_INTERVAL).ci95_low == 1.0


@pytest.mark.parametrize("q", [0, 10, 25, 50, 90, 99, 100])
def test_percentile_is_numpy_linear_interpolation(q):
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0]
    assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_one_value_has_no_interval():
    assert summarize([42.0]) == Summary(n=1, mean=42.0, p50=42.0, p90=42.0, ci95_low=None, ci95_high=None)


def test_no_values_or_non_finite_values_are_refused():
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])


def test_identical_values_have_zero_width_interval():
    summary = summarize([3.0] * 12)
    assert (summary.ci95_low, summary.ci95_high) == (3.0, 3.0)


def test_as_metrics_prefixes_carry_the_unit():
    values = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
    metrics = summarize(values).as_metrics("latency_ms")
    assert set(metrics) == {
        "latency_ms_n",
        "latency_ms_mean",
        "latency_ms_p50",
        "latency_ms_p90",
        "latency_ms_ci95_low",
        "latency_ms_ci95_high",
    }
    assert metrics["latency_ms_mean"] == pytest.approx(55.0)
    assert metrics["latency_ms_p90"] == pytest.approx(np.percentile(values, 90))
    assert all(isinstance(value, float) for value in metrics.values())
