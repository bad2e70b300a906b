import pytest

from vlm_quant.measure.timing import DeviceTimer, run_until


def test_span_synchronizes_before_and_after_and_reports_seconds(fake_clock):
    clock = fake_clock(start=100.0)
    events = []

    def synchronize():
        events.append("sync")

    timer = DeviceTimer("cuda:0", clock=clock, synchronize=synchronize)
    with timer.span() as span:
        events.append("work")
        assert span.elapsed_s is None  # still open
        clock.advance(0.25)
    assert events == ["sync", "work", "sync"]
    assert span.elapsed_s == pytest.approx(0.25)
    assert span.elapsed_ms == pytest.approx(250.0)


def test_span_records_time_even_when_the_block_raises(fake_clock):
    clock = fake_clock()
    timer = DeviceTimer("cpu", clock=clock)
    with pytest.raises(RuntimeError):
        with timer.span() as span:
            clock.advance(1.5)
            raise RuntimeError("boom")
    assert span.elapsed_s == pytest.approx(1.5)


def test_cpu_timer_needs_no_synchronize_and_measures_real_time():
    timer = DeviceTimer("cpu")
    with timer.span() as span:
        sum(range(1000))
    assert span.elapsed_s is not None and span.elapsed_s >= 0.0


def _ticking(clock, seconds_per_call):
    calls = []

    def fn():
        calls.append(clock.now)
        clock.advance(seconds_per_call)

    return fn, calls


def test_run_until_keeps_going_until_the_time_is_also_reached(fake_clock):
    clock = fake_clock()
    fn, calls = _ticking(clock, 0.25)
    durations = run_until(fn, min_iterations=2, min_seconds=1.0, warmup=3, clock=clock)
    assert durations == [0.25] * 4  # 2 iterations were not enough: 1 s needs 4
    assert len(calls) == 3 + 4  # warm-up calls are made but not timed


def test_run_until_keeps_going_until_the_count_is_also_reached(fake_clock):
    clock = fake_clock()
    fn, calls = _ticking(clock, 0.25)
    durations = run_until(fn, min_iterations=10, min_seconds=0.5, warmup=0, clock=clock)
    assert durations == [0.25] * 10  # 0.5 s was reached after 2, the count needs 10
    assert len(calls) == 10


def test_run_until_synchronizes_every_iteration(fake_clock):
    clock = fake_clock()
    fn, _ = _ticking(clock, 0.5)
    syncs = []
    run_until(
        fn, min_iterations=3, min_seconds=0.0, warmup=1, clock=clock, synchronize=lambda: syncs.append(1)
    )
    assert len(syncs) == 1 + 3  # once before the loop, then after each timed call


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_iterations": 0, "min_seconds": 1.0, "warmup": 0},
        {"min_iterations": 1, "min_seconds": -1.0, "warmup": 0},
        {"min_iterations": 1, "min_seconds": 1.0, "warmup": -1},
    ],
)
def test_run_until_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        run_until(lambda: None, **kwargs)
