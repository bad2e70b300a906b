"""What every engine's passes end with: the quality pass's metrics and scores logged, and the cost pass's
micro-set chosen and logged (the torch passes in `run.runner`, the llama.cpp ones in `run.llama_cpp_run`)."""

from __future__ import annotations

from typing import Any

from vlm_quant.errors import UserError
from vlm_quant.measure.carbon import estimate_co2e
from vlm_quant.measure.energy import derive_energy_metrics
from vlm_quant.measure.memory import MemoryTracker
from vlm_quant.run import distributed, mlflow_views, scoring
from vlm_quant.run.quality_pass import load_image
from vlm_quant.tracking import run_schema

# Quality-pass counts that are the same on every rank (computed from the merged pass).
QUALITY_COUNTS = ("n_samples_evaluated", "n_samples_skipped", "n_samples_resumed")


def finish_quality_pass(
    prepared: Any,
    quality: Any,
    window: Any,
    memory: MemoryTracker,
    instruments: Any,
    tracker: Any,
) -> dict[str, float | None]:
    """Every engine's quality pass ends here: skipped samples, counts, time split, energy per image,
    CO2e and memory of the pass, logged at once (a crash later keeps them), then the task's scores
    (score=later: the tags saying they are deferred)."""
    cfg, task, data = prepared.cfg, prepared.task, prepared.data
    metrics: dict[str, float | None] = {}
    if window.absent_reason and instruments.gpu.available:
        tracker.set_tags({"vlm_quant.energy_absent_quality_pass": window.absent_reason})
    if quality.skipped:
        tracker.log_json(quality.skipped, "predictions/skipped_samples.json")
    if not quality.predictions:
        raise UserError(
            f"none of the {len(data.ids)} selected images could be read (see skipped_samples.json)."
        )
    metrics.update(
        {
            "n_samples_evaluated": len(quality.predictions),
            "n_samples_skipped": len(quality.skipped),
            **quality.pass_metrics(),  # this attempt's, like its energy
            "n_samples_resumed": quality.n_resumed,  # taken from an interrupted attempt of this run
            **quality.oom_metrics(),
            **quality.time_split_metrics(),  # this attempt: the model's share, its wait for inputs
        }
    )
    if quality.oom_retries:  # predictions were made at several batch sizes: the final one alone would hide it
        tracker.set_tags({run_schema.TAG_QUALITY_PASS_BATCH_SIZES: ",".join(map(str, quality.batch_sizes))})
    # Per-image energy of this attempt's generation only: a resumed run's earlier attempts were not metered.
    images, tokens = quality.this_attempt()
    energy = derive_energy_metrics(window, images, tokens) if images else {}
    metrics.update({f"quality_pass_{key}": value for key, value in energy.items()})
    if "energy_kwh" in energy:
        carbon = estimate_co2e(energy["energy_kwh"], country_iso_code=cfg.country_iso_code, pue=cfg.pue)
        metrics.update(carbon.as_metrics())
    metrics.update(memory.read().as_metrics())

    # Logged now, not with the cost metrics: a crash in the cost pass keeps them. With several processes
    # only what no rank combination changes (scores, counts of the merged pass).
    alone = not distributed.rank_info().distributed
    tracker.log_metrics(metrics if alone else {k: metrics[k] for k in QUALITY_COUNTS})
    if cfg.score == "later":  # the predictions are in predictions/partial.jsonl for `vlm-quant score run`
        tracker.set_tags(scoring.deferred_tags())
    else:
        metrics.update(scoring.score_and_log(tracker, task, data, quality.predictions))
    return metrics


def micro_set(prepared: Any, quality: Any, tracker: Any) -> list[Any]:
    """The cost pass's requests: the first ``cost_samples`` evaluated samples with a prediction (their
    ids logged, and as the run's second dataset input)."""
    cfg, task, data = prepared.cfg, prepared.task, prepared.data
    micro_ids = [i for i in data.ids if i in quality.predictions][: cfg.cost_samples]
    tracker.log_json({"ids": micro_ids}, "split/cost_micro_set.json")
    mlflow_views.log_micro_set(tracker, cfg, data, micro_ids)
    return [
        task.request(data, data.samples[i], load_image(data, data.samples[i], cfg.max_image_side)[1])
        for i in micro_ids
    ]
