"""load_runs: selectors, FINISHED evaluate runs only, tidy columns, artifact access."""

from __future__ import annotations

import pytest

from vlm_quant.errors import UserError
from vlm_quant.study.report.query import configuration_labels, load_runs

LABELS = {"fp16", "int8", "nf4", "int4", "fp16 (random)"}


def test_experiment_selects_finished_evaluate_runs_only(caption_store):
    run_set = load_runs(experiment=caption_store.experiment, tracking_uri=caption_store.uri)
    runs = run_set.runs
    assert set(runs["run_id"]) == {r.run_id for r in caption_store.runs.values()}  # no failed/sweep/compare
    assert set(runs["label"]) == LABELS
    assert runs["run_id"].is_unique
    fp16 = runs[runs["label"] == "fp16"].iloc[0]
    assert fp16["params.ids_hash"] == caption_store.runs["fp16"].params["ids_hash"]
    assert fp16["metrics.cider"] == pytest.approx(caption_store.runs["fp16"].metrics["cider"])
    assert fp16["tags.vlm_quant.kind"] == "evaluate"
    assert dict(zip(runs["label"], runs["weights"], strict=True))["fp16 (random)"] == "random"


def test_parent_run_and_run_ids_select_the_same_runs(caption_store):
    by_parent = load_runs(parent_run=caption_store.parent_run_id, tracking_uri=caption_store.uri)
    ids = [caption_store.runs["int8"].run_id, caption_store.runs["fp16"].run_id]
    by_ids = load_runs(run_ids=ids, tracking_uri=caption_store.uri)
    assert set(by_parent.runs["run_id"]) == {r.run_id for r in caption_store.runs.values()}
    assert set(by_ids.runs["run_id"]) == set(ids)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, "exactly one"),
        ({"experiment": "x", "run_ids": ["y"]}, "exactly one"),
        ({"experiment": "no-such-experiment"}, "'no-such-experiment' does not exist"),
        ({"experiment": "empty"}, "experiment 'empty' matched no FINISHED evaluate runs"),
    ],
)
def test_selector_errors_name_the_selector(mismatch_store, kwargs, expected):
    with pytest.raises(UserError, match=expected):
        load_runs(tracking_uri=mismatch_store.uri, **kwargs)


def test_named_run_that_is_not_a_finished_evaluate_run_is_refused(caption_store):
    failed = caption_store.extra_run_ids["failed"]
    with pytest.raises(UserError, match=f"{failed}.*FAILED"):
        load_runs(run_ids=[caption_store.runs["fp16"].run_id, failed], tracking_uri=caption_store.uri)
    with pytest.raises(UserError, match="not found"):
        load_runs(run_ids=["0" * 32], tracking_uri=caption_store.uri)


def test_artifacts_and_power_history_are_fetched(caption_store):
    run_set = load_runs(experiment=caption_store.experiment, tracking_uri=caption_store.uri)
    fp16, nf4 = caption_store.runs["fp16"], caption_store.runs["nf4"]
    assert run_set.predictions(fp16.run_id) == fp16.rows
    assert run_set.environment(fp16.run_id)["packages"]["torch"] == "2.6.0"
    power = run_set.power_history(fp16.run_id)
    assert power["t_s"].tolist() == [step / 1000 for step, _ in fp16.power]
    assert power["power_w"].tolist() == pytest.approx([w for _, w in fp16.power])
    assert run_set.power_history(nf4.run_id).empty
    assert run_set.predictions(caption_store.parent_run_id) is None  # no artifact -> None, not a crash
    assert run_set.environment(caption_store.parent_run_id) is None


def test_labels_are_unique_when_the_precision_repeats():
    import pandas as pd

    realized = ["int8", "int8", "fp16", "fp16"]
    frame = pd.DataFrame(
        {
            "params.quant": ["fp16"] * 4,  # the request: never the label when the audit says otherwise
            **{f"params.realized_precision_{role}": realized for role in ("vision", "language")},
            "run_name": ["a", "b", "c", "c"],
            "run_id": ["1" * 32, "2" * 32, "3" * 32, "4" * 32],
            "weights": ["pretrained"] * 4,
        }
    )
    labels = configuration_labels(frame)
    assert labels[:2] == ["int8 (a)", "int8 (b)"]
    assert len(set(labels)) == 4


def test_a_run_without_realized_precision_is_labelled_by_its_request():
    import pandas as pd

    frame = pd.DataFrame(
        {"params.quant": ["int8"], "run_name": ["a"], "run_id": ["1" * 32], "weights": ["random"]}
    )
    assert configuration_labels(frame) == ["int8 (requested) (random)"]


def test_a_multi_process_run_has_one_power_trace_per_rank_gpu():
    from types import SimpleNamespace

    import pandas as pd

    from vlm_quant.study.report.query import RunSet

    histories = {("a", "gpu_power_w"): [(0, 100.0)], ("b", "gpu_power_w"): [(0, 200.0), (100, 210.0)],
                 ("b", "rank1_gpu_power_w"): [(0, 300.0)]}
    client = SimpleNamespace(get_metric_history=lambda run_id, metric: [
        SimpleNamespace(step=step, value=value) for step, value in histories.get((run_id, metric), [])])
    runs = pd.DataFrame({"label": ["fp16", "int8"], "run_id": ["a", "b"],
                         "params.distributed_world_size": [None, "2"]})
    traces = RunSet(runs, client, "test").gpu_power_traces(runs)
    assert list(traces) == ["fp16", "int8, rank 0's GPU", "int8, rank 1's GPU"]  # whose GPU each line is
    assert traces["int8, rank 1's GPU"]["power_w"].tolist() == [300.0]
    assert traces["int8, rank 0's GPU"]["power_w"].tolist() == [200.0, 210.0]
