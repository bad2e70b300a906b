"""The run's vlm_quant.* tags (and `preset`): `unit` holds the values a tag takes."""

from __future__ import annotations

from vlm_quant.tracking.glossary.term import Term

TAGS: tuple[Term, ...] = (
    Term(
        ("vlm_quant.weights",),
        "pretrained, random",
        "random runs are cost-only: they never enter quality tables",
    ),
    Term(("preset",), "a preset name", "the `quant` preset the run was made with"),
    Term(
        ("vlm_quant.config_hash",),
        "12 hex digits",
        "hash of the resolved config (not experiment, run_name, log_model, register, score): sweep skips "
        "configurations that already have a FINISHED run with the same hash; `resume=auto` looks for it",
    ),
    Term(("vlm_quant.task",), "captioning, vqa, pope", "the run's task"),
    Term(("vlm_quant.kind",), "evaluate, sweep, compare", "what kind of run this is"),
    Term(("vlm_quant.failure",), "text", "exception type and message, when a run failed"),
    Term(("vlm_quant.signal",), "signal name", "a KILLED run: the signal that stopped it"),
    Term(
        ("vlm_quant.compared_runs",),
        "run ids, comma-separated",
        "compare runs: the runs compared",
    ),
    Term(("vlm_quant.baseline_run_id",), "run id", "compare runs: the run the deltas are taken against"),
    Term(("vlm_quant.compared_in",), "run id", "an evaluate run: the compare run that used it"),
    Term(
        ("vlm_quant.scoring",),
        "deferred, done",
        "`score=later` runs: deferred until `vlm-quant score run` has scored the run, then done (absent: "
        "scored at once)",
    ),
    Term(
        ("vlm_quant.scoring_absent_reason",),
        "text",
        "why the quality metrics are absent, e.g. `scoring deferred (score=later)`",
    ),
    Term(("vlm_quant.scoring_failure",), "text", "`score run` failed: the reason (the run stays FINISHED)"),
    Term(
        ("vlm_quant.scored_at", "vlm_quant.scored_host"),
        "time, host name",
        "when and where `score run` scored a deferred run",
    ),
    Term(("vlm_quant.spice_skipped",), "text", "why SPICE is absent (e.g. no CoreNLP jars)"),
    Term(
        ("vlm_quant.domain_cider_absent_reason",),
        "text",
        "NoCaps: why a domain's CIDEr is absent (fewer than 2 images of it)",
    ),
    Term(
        ("vlm_quant.chair_absent_reason",), "text", "why CHAIR is absent (no instances file, NoCaps images)"
    ),
    Term(
        ("vlm_quant.idle_power_absent_reason",),
        "text",
        "GPU runs: why `idle_power_w` is absent (the idle window gave no energy reading)",
    ),
    Term(
        ("vlm_quant.energy_absent_reason", "vlm_quant.energy_absent_<window>"),
        "text",
        "why GPU energy metrics are absent: for the whole run (no NVML), or for one window (e.g. "
        "`..._throughput_bs1`, `..._quality_pass`: shorter than 1 s, or the counter went backwards)",
    ),
    Term(("vlm_quant.codecarbon_absent_reason",), "text", "why codecarbon's metrics are absent"),
    Term(
        ("vlm_quant.gpu_shared",),
        "text",
        "another process was on the GPU during the run (its numbers are suspect)",
    ),
    Term(
        ("vlm_quant.cost_oom_bs<B>", "vlm_quant.cost_oom_latency"),
        "text",
        "the cost pass ran out of memory at batch size B (or in the latency measurement): those metrics are "
        "absent",
    ),
    Term(("vlm_quant.size_on_disk_skipped",), "text", "why `size_on_disk_mib` is absent"),
    Term(
        ("vlm_quant.rank_total_absent_<metric>",),
        "rank list",
        "several processes: a total of <metric> left out because some ranks lacked their value (names them)",
    ),
    Term(
        ("vlm_quant.image_side_caveat",),
        "text",
        "`max_image_side` is below what the dataset's inputs need (e.g. small text in DocVQA)",
    ),
    Term(
        ("vlm_quant.batch_invariance_absent_reason",),
        "evaluated at batch 1, disabled",
        "why `batch_invariance_agreement` is absent",
    ),
    Term(
        ("vlm_quant.batch_invariance_delta_absent_reason",),
        "text",
        "why the batch-invariance delta is absent (the subset could not be scored, e.g. no Java)",
    ),
    Term(
        ("vlm_quant.quality_pass_batch_sizes",),
        "batch sizes, e.g. 8,4",
        "after an OOM back-off: every batch size the quality pass generated predictions at",
    ),
    Term(
        ("vlm_quant.pid", "vlm_quant.host", "vlm_quant.heartbeat"),
        "pid, host name, time",
        "who runs a RUNNING run and when it last showed life: `resume=auto` takes over a run only when its "
        "process is gone (same host) or silent for 10 min (another host)",
    ),
    Term(
        ("vlm_quant.resume_count", "vlm_quant.previous_failure", "vlm_quant.resumed_run_id"),
        "count, text, run id",
        "a resumed run: its attempts, the failure it resumed from; the `mlflow run` launcher's own empty run "
        "points to the run it resumed",
    ),
    Term(
        ("vlm_quant.codecarbon_shared",),
        "text",
        "a sweep child whose host ran other children at the same time (e.g. `shared with int8 on node7`): "
        "codecarbon's machine-wide CPU/RAM energy includes theirs; compare marks it with a caveat",
    ),
)
