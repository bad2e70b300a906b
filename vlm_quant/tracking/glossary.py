"""What every metric, tag and artifact of a run means, with its unit: the one description of each.

`run_schema` holds the names the code writes and reads; this module holds what they mean, for people.
The reference pages under docs/reference/ are generated from it (`python tools/write_reference.py`), and
the suite fails when a name in `run_schema` has no entry here. A name may be a pattern: `<...>` stands
for a part that varies (a batch size, a split, a statistic).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    """One entry: the names it covers, their unit (tags: their values; artifacts: their format), meaning."""

    names: tuple[str, ...]
    unit: str
    meaning: str

    def covers(self, name: str) -> bool:
        return any(_pattern(n).fullmatch(name) for n in self.names)


def _pattern(name: str) -> re.Pattern[str]:
    parts = re.split(r"<[^>]*>", name)
    return re.compile("[A-Za-z0-9_]*".join(re.escape(p) for p in parts))


def documented(name: str, terms: tuple[Term, ...]) -> bool:
    """Whether some entry of ``terms`` covers the logged name ``name``."""
    return any(term.covers(name) for term in terms)


_STATS = "`_n`, `_mean`, `_p50`, `_p90`, `_ci95_low`, `_ci95_high`"

QUALITY_METRICS: tuple[Term, ...] = (
    Term(
        ("vqa_accuracy", "vqa_accuracy_<answer type>"),
        "0-1",
        "primary VQA metric: the official rule (mean over the 10 leave-one-out subsets of min(1, matches/3)) "
        "on normalised answers, the prediction and all ten human answers normalised (official vqaEval.py "
        "normalisation), unanimous ones too; never below `vqa_accuracy_official`; "
        "`vqa_accuracy_<answer type>` (`yes_no`, `number`, `other`): the same per answer type",
    ),
    Term(
        ("vqa_accuracy_official",),
        "0-1",
        "the official script's number on the raw predictions (unanimous humans compared exactly, as "
        "vqaEval.py does)",
    ),
    Term(
        ("cider",),
        "CIDEr-D, ~0-10",
        "primary caption metric (pycocoevalcap scale); IDF from the evaluated reference set, so only runs "
        "with the same `ids_hash` are comparable",
    ),
    Term(
        ("bleu_1", "bleu_2", "bleu_3", "bleu_4"),
        "0-1",
        "BLEU n-gram precision with brevity penalty (pycocoevalcap)",
    ),
    Term(("meteor",), "0-1", "METEOR 1.5 (pycocoevalcap, Java)"),
    Term(("rouge_l",), "0-1", "ROUGE-L F-measure"),
    Term(
        ("spice",),
        "0-1",
        "only when Stanford CoreNLP's jars are present (`vlm-quant setup spice` installs them); else the tag "
        "`vlm_quant.spice_skipped` says why",
    ),
    Term(
        ("cider_in_domain", "cider_near_domain", "cider_out_domain"),
        "CIDEr-D, ~0-10",
        "NoCaps: CIDEr of one domain's images, IDF from that domain's references; absent below 2 images "
        "(tag `vlm_quant.domain_cider_absent_reason`)",
    ),
    Term(("nocaps_n_<domain>",), "count", "NoCaps: images of each domain"),
    Term(
        ("anls",),
        "0-1",
        "DocVQA: Average Normalized Levenshtein Similarity (threshold 0.5), the official script's rules",
    ),
    Term(
        ("relaxed_accuracy", "relaxed_accuracy_human", "relaxed_accuracy_augmented"),
        "0-1",
        "ChartQA: pix2struct's relaxed correctness (5% on numbers, exact otherwise), all questions and per "
        "subset",
    ),
    Term(
        ("chair_i", "chair_s", "object_recall"),
        "0-1",
        "CHAIR object hallucination of captions (docs/hallucination.md)",
    ),
    Term(
        ("chair_n_images", "chair_n_unannotated", "chair_n_mentions", "chair_n_hallucinated"),
        "count",
        "CHAIR's counts: images scored, images without annotation, object mentions, hallucinated mentions",
    ),
    Term(
        ("chair_n_recalled", "chair_n_objects"),
        "count",
        "annotated objects the captions mention, and all annotated objects (`object_recall`'s terms)",
    ),
    Term(
        ("pope_accuracy",),
        "0-1",
        "POPE: accuracy over all rows of every split (the task's primary metric)",
    ),
    Term(
        ("pope_<split>_accuracy", "pope_<split>_precision", "pope_<split>_recall", "pope_<split>_f1"),
        "0-1",
        "POPE per split (random, popular, adversarial), answers read by POPE's evaluate.py rule",
    ),
    Term(("pope_<split>_yes_ratio",), "0-1", "POPE: share of the split's answers read as yes"),
    Term(
        ("pope_<split>_n", "pope_<split>_doubtful_n", "pope_doubtful_answers_n", "pope_n", "pope_distinct_n"),
        "count",
        "POPE: rows per split, answers neither clearly yes nor no, all rows, distinct generations",
    ),
    Term(
        ("pope_strict_<split>_accuracy", "pope_strict_<split>_f1", "pope_strict_accuracy"),
        "0-1",
        "POPE with the stricter reading of the answers",
    ),
    Term(
        ("safety_flagged_n", "safety_flagged_rate"),
        "count, 0-1",
        "predictions the output screen flagged (personal data or offensive words)",
    ),
    Term(
        ("safety_flagged_pii_n", "safety_flagged_offensive_n", "safety_flagged_<kind>_n"),
        "count",
        "predictions with at least one finding of personal data / offensive words / that kind (email, url, "
        "phone, ip_address, credit_card); a prediction counts once however many findings it holds",
    ),
    Term(
        ("n_samples_evaluated", "n_samples_skipped"),
        "count",
        "skipped = samples whose image could not be read (listed in `predictions/skipped_samples.json`)",
    ),
    Term(
        ("n_samples_resumed",),
        "count",
        "samples whose predictions were taken from an interrupted attempt of this run (`resume`)",
    ),
)

COST_METRICS: tuple[Term, ...] = (
    Term(
        ("latency_ms_<stat>",),
        "ms",
        "end-to-end latency per image-prompt at batch 1 (preprocessing + generation), fixed output length "
        f"`cost_new_tokens`; {_STATS}; `_n` = timed iterations, the interval only when n >= 10",
    ),
    Term(
        ("preprocess_ms_<stat>",),
        "ms",
        "chat template + image processor + copy to the device, per image-prompt",
    ),
    Term(
        ("ttft_ms_<stat>",),
        "ms",
        "time to first token of the model alone (vision encoding + prefill, inputs already prepared)",
    ),
    Term(
        ("decode_ms_per_token_<stat>",),
        "ms/token",
        "mean decode step of the same generate() call: (stamp of token N - stamp of token 1) / (N - 1)",
    ),
    Term(("generate_ms_<stat>",), "ms", "the whole generate() call (TTFT + decode + generate()'s own work)"),
    Term(
        ("throughput_images_per_s_bs<B>", "throughput_tokens_per_s_bs<B>"),
        "images/s, tokens/s",
        "the model alone at batch size B with the fixed output length (inputs prepared before the timing)",
    ),
    Term(
        ("throughput_images_per_s", "throughput_tokens_per_s"),
        "images/s, tokens/s",
        "the same at the evaluation `batch_size`",
    ),
    Term(
        ("cost_graphs_compiled_timed", "cost_graphs_compiled_timed_<measurement>"),
        "count",
        "torch.compile graphs compiled inside timed iterations (`_latency`, `_bs<B>`, unsuffixed: their sum; "
        "should be 0: the warm-up covers every batch)",
    ),
    Term(
        ("quality_pass_s", "quality_pass_samples_per_s"),
        "s, samples/s",
        "wall time of the quality pass (EOS allowed), and the samples it predicted per second; a resumed "
        "run: its last attempt only, like the energy (several processes: the slowest's)",
    ),
    Term(
        ("quality_pass_model_s", "quality_pass_wait_s"),
        "s",
        "of this attempt's quality pass: generate() alone (device-synchronised), and the model's wait for "
        "its next batch of inputs",
    ),
    Term(
        ("oom_retries", "quality_pass_final_batch_size"),
        "count",
        "the quality pass's out-of-memory back-off: how often it halved its batch, and the batch size it "
        "ended at (tag `vlm_quant.quality_pass_batch_sizes`: every size that produced predictions)",
    ),
    Term(
        ("harness_overhead_fraction",),
        "0-1",
        "1 - `quality_pass_model_s` / wall time of the attempt: share of the pass in which the model was not "
        "generating",
    ),
    Term(
        ("peak_vram_allocated_mib", "peak_vram_reserved_mib"),
        "MiB",
        "torch's peak CUDA memory (absent on CPU)",
    ),
    Term(
        ("cost_pass_peak_vram_allocated_mib", "cost_pass_peak_vram_reserved_mib", "cost_pass_peak_rss_mib"),
        "MiB",
        "the same peaks over the cost pass alone (the run's peaks also cover loading and the quality pass)",
    ),
    Term(
        ("rank<r>_<metric>",),
        "the metric's unit",
        "several processes (`processes` > 1): rank r's own value of a cost metric; the unprefixed name holds "
        "the total over the ranks (a sum, a max for peaks and times: docs/distributed.md)",
    ),
    Term(
        ("peak_nvml_memory_used_mib",),
        "MiB",
        "the GPU's memory used as NVML's side sampler saw it (all processes on the device)",
    ),
    Term(
        ("peak_rss_mib",),
        "MiB",
        "peak resident memory of the main process; the input-pipeline workers are not in it (they are "
        "forked: their RSS counts the main process's pages they share again, so a sum would overstate; what "
        "they add is their images and prepared batches; `num_workers=0` measures everything in one process)",
    ),
    Term(
        ("weights_footprint_mib",),
        "MiB",
        "bytes of parameters and buffers as loaded; an ONNX Runtime tower counts its ONNX initializers' "
        "bytes",
    ),
    Term(
        ("weights_mib_<role>",),
        "MiB",
        "bytes of each role's parameters (vision, projector, language, lm_head) as stored after loading",
    ),
    Term(("size_on_disk_mib",), "MiB", "weight files of the checkpoint saved at its precision"),
    Term(("load_time_s",), "s", "model + processor load"),
    Term(
        ("quantize_time_s",),
        "s",
        (
            "quantizing the loaded model's layers to the planned precision (AutoRound's calibrated roles are "
            "quantized before, not in this time)"
        ),
    ),
    Term(
        ("ort_graphs_exported",),
        "count",
        "ONNX Runtime vision role: graphs exported, one per input shape (the first at load, others at first "
        "use)",
    ),
)

ENERGY_METRICS: tuple[Term, ...] = (
    Term(
        ("energy_j_per_image", "energy_j_per_image_bs<B>"),
        "J/image",
        "GPU energy (NVML total-energy counter) per image of a cost-pass window at batch size B; unsuffixed: "
        "the evaluation batch size; absent (tag `vlm_quant.energy_absent_<window>`) for a window under 1 s "
        "or one whose counter went backwards, and on a machine without NVML",
    ),
    Term(
        ("energy_j_per_token", "energy_j_per_token_bs<B>"),
        "J/token",
        "the same window's GPU energy per generated token",
    ),
    Term(("images_per_kwh_bs<B>",), "images/kWh", "images per kilowatt-hour of GPU energy at batch size B"),
    Term(
        ("quality_pass_energy_kwh", "quality_pass_energy_j_per_image"),
        "kWh, J/image",
        "GPU energy of the quality pass, total and per image",
    ),
    Term(
        ("co2e_kg",),
        "kg CO2e",
        "facility energy (device energy x `pue`) x the carbon intensity of `country_iso_code` (codecarbon's "
        "bundled per-country data)",
    ),
    Term(("facility_energy_kwh",), "kWh", "device energy x `pue`"),
    Term(("carbon_intensity_g_per_kwh",), "g CO2e/kWh", "the grid's intensity for `country_iso_code`"),
    Term(
        (
            "codecarbon_energy_kwh",
            "codecarbon_cpu_energy_kwh",
            "codecarbon_ram_energy_kwh",
        ),
        "kWh",
        "codecarbon (offline mode) over the whole run: total, CPU and RAM shares, also without a GPU",
    ),
    Term(("codecarbon_co2e_kg",), "kg CO2e", "codecarbon's emissions estimate over the whole run"),
    Term(("codecarbon_duration_s",), "s", "the time codecarbon measured over"),
    Term(
        ("gpu_power_w",),
        "W",
        "metric history of the GPU's power sampled at `power_hz`; step = ms since the run started (a resumed "
        "run's attempts follow one another on that axis)",
    ),
)

FIDELITY_METRICS: tuple[Term, ...] = (
    Term(
        ("fidelity_vision_cosine_token_mean", "fidelity_projector_cosine_token_mean"),
        "-1..1",
        "quantized runs only: per image token (one row of the role's output reshaped to (tokens, hidden): a "
        "vision patch, a projected image token), cos = a·b / (‖a‖ ‖b‖) of the unquantized row a and the "
        "quantized row b (1 when both are zero, 0 when one is); the mean over every token of every fidelity "
        "image, pooled (each token weighs the same; 1 = unchanged). Not the cosine of the flattened tensor, "
        "which a few high-norm tokens dominate",
    ),
    Term(
        ("fidelity_vision_cosine_token_p5", "fidelity_projector_cosine_token_p5"),
        "-1..1",
        "the 5th percentile of the same pooled per-token cosines (`numpy.percentile`, linear interpolation): "
        "5% of the tokens moved at least this far",
    ),
    Term(
        ("fidelity_logits_kl_nats_token_mean",),
        "nats",
        "KL(p_16bit ‖ p_quant) = Σ_v p_16bit(v) (log p_16bit(v) − log p_quant(v)) over the whole vocabulary, "
        "at every position of the 16-bit model's own greedy continuation (up to `fidelity_new_tokens`, "
        "default 16, fewer where it emitted EOS), both models teacher-forced on the same prompt + "
        "continuation; the mean over every position of every fidelity image, pooled (0 = unchanged)",
    ),
    Term(
        ("fidelity_top1_agreement_token_mean",),
        "0-1",
        "share of those positions, pooled, at which the quantized model's argmax token is the 16-bit model's",
    ),
    Term(
        ("fidelity_n_images", "fidelity_n_positions"),
        "count",
        "fidelity images used (`fidelity_samples`, fewer when the evaluated samples show fewer distinct "
        "readable images) and continuation positions pooled by the two metrics above",
    ),
    Term(
        ("batch_invariance_agreement",),
        "0-1",
        "share of a seeded subset (`invariance_samples`, default 35, of the predicted samples) whose greedy "
        "prediction regenerated alone (batch 1, same engine, dtype and settings) is identical to its "
        "evaluated prediction at `batch_size`; absent (tag `vlm_quant.batch_invariance_absent_reason`: "
        "`evaluated at batch 1` or `disabled`) when nothing was compared, never 1",
    ),
    Term(
        ("batch_invariance_<primary>_delta",),
        "the primary metric's unit",
        "the task's primary metric on that subset scored with the batch-1 predictions minus with the batched "
        "ones (0 exactly when all are identical); absent, tag "
        "`vlm_quant.batch_invariance_delta_absent_reason`, when the subset could not be scored (e.g. no Java "
        "for captions)",
    ),
    Term(
        ("batch_invariance_s",),
        "s",
        "wall time of that check (reading the images, the batch-1 generations, scoring the subset); not part "
        "of `quality_pass_s`",
    ),
)

METRICS: tuple[Term, ...] = QUALITY_METRICS + COST_METRICS + ENERGY_METRICS + FIDELITY_METRICS

# Tags: `unit` holds the values a tag takes.
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
)

# Artifacts: `unit` holds the file's format.
ARTIFACTS: tuple[Term, ...] = (
    Term(("config/resolved_config.yaml",), "YAML", "the resolved ExperimentConfig (every parameter)"),
    Term(("split/ids.json",), "JSON", "the exact evaluated ids (their hash is the param `ids_hash`)"),
    Term(("split/cost_micro_set.json",), "JSON", "the fixed micro-set the cost pass timed"),
    Term(
        ("predictions/predictions.jsonl",),
        "JSON lines",
        "one row per sample: id, prompt, prediction, references, per-sample scores",
    ),
    Term(
        ("predictions/predictions_table.json",),
        "MLflow table",
        "the predictions as a table, visible and comparable in the MLflow UI",
    ),
    Term(
        ("predictions/partial.jsonl",),
        "JSON lines",
        "predictions streamed during the pass (resume reads them)",
    ),
    Term(("predictions/skipped_samples.json",), "JSON", "samples whose image could not be read"),
    Term(
        ("predictions/batch_invariance.jsonl",),
        "JSON lines",
        "the batch-1 check: sample id, batched prediction, batch-1 prediction, identical",
    ),
    Term(
        ("environment/environment.json",),
        "JSON",
        "CPU, RAM, GPUs, driver, CUDA, exact package versions; no environment variables",
    ),
    Term(
        ("precision/precision_map.json",),
        "JSON",
        "what each module really loaded as (the audit after loading), per role",
    ),
    Term(
        ("power/gpu_power.csv", "power/gpu_power.png"),
        "CSV, PNG",
        "GPU power, temperature, SM clock and memory used sampled at `power_hz` during the whole run",
    ),
    Term(
        ("fidelity/fidelity.json",),
        "JSON",
        "quantized runs: the fidelity ids, images, continuations and each image's own fidelity values",
    ),
    Term(
        ("safety/flagged.json",),
        "JSON",
        "the predictions the output screen flagged, with the finding kinds and reasons",
    ),
    Term(("logs/run.log",), "text", "the full log, library messages included"),
    Term(
        ("model",),
        "MLflow logged model",
        "the checkpoint as saved at its precision, with `quantization_manifest.json` and "
        "`vlm_quant_model.json` (what `vlm-quant load` rebuilds from); `log_model=false` turns it off",
    ),
)
