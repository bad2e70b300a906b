"""The names a run is made of: params, tags, metrics and artifact paths.

One table shared by the writer (runner/tracking) and the readers (report/compare, sweep), so a
renamed metric cannot silently drop out of the paper's tables. Metric names carry their unit.
"""

from __future__ import annotations

# --- tags -----------------------------------------------------------------------------------
TAG_PREFIX = "vlm_quant."
TAG_WEIGHTS = "vlm_quant.weights"  # "pretrained" | "random"; random runs never enter quality tables
TAG_CONFIG_HASH = "vlm_quant.config_hash"  # hash of the resolved config (sweep skips finished twins)
TAG_TASK = "vlm_quant.task"  # "captioning" | "vqa" | "pope"
TAG_FAILURE = "vlm_quant.failure"  # exception type and message when a run failed
TAG_KIND = "vlm_quant.kind"  # "evaluate" | "sweep" | "compare"
TAG_COMPARED_RUNS = "vlm_quant.compared_runs"  # compare runs: comma-separated ids of the runs compared
TAG_BASELINE_RUN = "vlm_quant.baseline_run_id"  # compare runs: the run the deltas are taken against
# score=later: "deferred" until `vlm-quant score run` has scored the run, then "done" (absent: scored at once)
TAG_SCORING = "vlm_quant.scoring"
TAG_SCORING_ABSENT = "vlm_quant.scoring_absent_reason"  # why the quality metrics are absent (deferred)
TAG_IDLE_POWER_ABSENT = "vlm_quant.idle_power_absent_reason"  # why idle_power_w is absent (GPU runs)
# + <metric>: a multi-process total left out because some ranks lacked their value (names those ranks)
TAG_RANK_TOTAL_ABSENT = "vlm_quant.rank_total_absent_"

# --- params that must agree between runs before they may be compared --------------------------
COMPARABILITY_PARAMS = ("ids_hash", "seed", "prompt", "task", "dataset", "split", "shots", "pope_source")

# --- quality metrics per task (pycocoevalcap scale for captions; 0-1 for VQA accuracy) --------
CAPTION_METRICS = ("cider", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "spice")
VQA_METRICS = (
    "vqa_accuracy",
    "vqa_accuracy_official",
    "vqa_accuracy_yes_no",
    "vqa_accuracy_number",
    "vqa_accuracy_other",
)
POPE_SPLITS = ("random", "popular", "adversarial")
POPE_METRICS = ("pope_accuracy",)  # per split: pope_<split>_{accuracy,precision,recall,f1,yes_ratio}
HALLUCINATION_METRICS = ("chair_i", "chair_s", "object_recall", *(f"pope_{s}_f1" for s in POPE_SPLITS))
SAFETY_METRICS = ("safety_flagged_n", "safety_flagged_rate")
# Datasets whose task scores with another metric (0-1): DocVQA's ANLS, ChartQA's relaxed accuracy.
OCR_VQA_METRICS = ("anls", "relaxed_accuracy", "relaxed_accuracy_human", "relaxed_accuracy_augmented")
PRIMARY_METRIC_BY_DATASET = {"docvqa": "anls", "chartqa": "relaxed_accuracy"}
# Keyed by *scoring key* (`scoring_key`): the task, or the dataset where a task's dataset scores with its
# own metric (task=vqa dataset=docvqa -> "docvqa"). The report and the paper group runs by this key.
PRIMARY_QUALITY_METRIC = {
    "captioning": "cider",
    "vqa": "vqa_accuracy",
    "pope": "pope_accuracy",
    **PRIMARY_METRIC_BY_DATASET,
}
PER_SAMPLE_SCORE = {  # key in predictions.jsonl
    "captioning": "cider",
    "vqa": "accuracy",
    "pope": "correct",
    "docvqa": "accuracy",
    "chartqa": "accuracy",
}
# NoCaps: CIDEr of each domain's images scored alone (pycocoevalcap scale), beside the overall cider.
NOCAPS_METRICS = ("cider_in_domain", "cider_near_domain", "cider_out_domain")
TAG_IMAGE_SIDE_CAVEAT = "vlm_quant.image_side_caveat"  # max_image_side below what the dataset's inputs need
# Sweep children, logged by the sweep once a child ended: which launcher ran it, on which host, with which
# CUDA_VISIBLE_DEVICES (absent when the launcher set none), and the tag of a child whose machine-wide
# codecarbon CPU/RAM figures include other children that ran on the same host at the same time.
PARAM_LAUNCHER = "launcher"  # local | ray | slurm
PARAM_LAUNCH_HOST = "launch_host"
PARAM_LAUNCH_GPUS = "launch_cuda_visible_devices"
TAG_CODECARBON_SHARED = "vlm_quant.codecarbon_shared"  # e.g. "shared with int8 on node7"


def scoring_key(task: str, dataset: str = "") -> str:
    """The task, or the dataset when the task scores that dataset with a metric of its own."""
    return dataset if task == "vqa" and dataset in PRIMARY_METRIC_BY_DATASET else task


def primary_metric(task: str, dataset: str = "") -> str | None:
    """The headline quality metric of a (task, dataset) run; None for an unknown task."""
    return PRIMARY_QUALITY_METRIC.get(scoring_key(task, dataset))


# --- cost metrics (units in the names) ---------------------------------------------------------
COST_METRICS = (
    "latency_ms_mean",
    "latency_ms_p50",
    "latency_ms_p90",
    "ttft_ms_p50",
    "decode_ms_per_token_p50",
    "throughput_images_per_s",
    "throughput_tokens_per_s",
    "peak_vram_allocated_mib",
    "peak_vram_reserved_mib",
    "peak_rss_mib",
    "weights_footprint_mib",
    "size_on_disk_mib",
    "load_time_s",
    "energy_j_per_image",
    "energy_j_per_token",
    "co2e_kg",
)
# Fidelity to the unquantized model on the fidelity set (quantized runs only; definitions and pooling in
# vlm_quant/quantize/fidelity.py), and the counts they were taken over.
FIDELITY_METRICS = (
    "fidelity_vision_cosine_token_mean",
    "fidelity_vision_cosine_token_p5",
    "fidelity_projector_cosine_token_mean",
    "fidelity_projector_cosine_token_p5",
    "fidelity_logits_kl_nats_token_mean",
    "fidelity_top1_agreement_token_mean",
    "fidelity_n_images",
    "fidelity_n_positions",
)

# --- remote code (models/remote_code.py): what a trust_remote_code run executed ----------------
# (`trust_remote_code` and the resolved `revision`, a commit hash for a Hub model, are params of every run)
PARAM_REMOTE_CODE_FILES = "remote_code_files"  # the Python files config.json's auto_map names, comma-joined
PARAM_REMOTE_CODE_SHA256 = "remote_code_sha256"  # SHA-256 of the *.py of a local directory or code snapshot
PARAM_REMOTE_CODE_REVISION = "remote_code_revision"  # weights=random: the commit the cached code came from

# --- artifact paths inside a run ------------------------------------------------------------
ARTIFACT_CONFIG = "config/resolved_config.yaml"
ARTIFACT_IDS = "split/ids.json"
ARTIFACT_PREDICTIONS_JSONL = "predictions/predictions.jsonl"
ARTIFACT_PREDICTIONS_TABLE = "predictions/predictions_table.json"
ARTIFACT_ENVIRONMENT = "environment/environment.json"
ARTIFACT_PRECISION_MAP = "precision/precision_map.json"
ARTIFACT_POWER_CSV = "power/gpu_power.csv"
ARTIFACT_POWER_PNG = "power/gpu_power.png"
ARTIFACT_MODEL_DIR = "model"
METRIC_POWER_HISTORY = "gpu_power_w"  # metric history, step = ms since run start

# ONNX Runtime vision role: graphs exported (one per input shape; the first at load, others at first use).
METRIC_ORT_GRAPHS = "ort_graphs_exported"

# --- batch invariance (vlm_quant/run/batch_invariance.py) ---------------------------------------
METRIC_BATCH_INVARIANCE_AGREEMENT = "batch_invariance_agreement"  # 0-1, share identical at batch 1
TAG_BATCH_INVARIANCE_ABSENT = "vlm_quant.batch_invariance_absent_reason"  # why no agreement was measured
TAG_BATCH_INVARIANCE_DELTA_ABSENT = "vlm_quant.batch_invariance_delta_absent_reason"
PARAM_BATCH_INVARIANCE_N = "batch_invariance_n_samples"  # samples regenerated at batch 1
PARAM_BATCH_INVARIANCE_BATCH_SIZE = "batch_invariance_batch_size"  # the evaluated batch size compared
# After an OOM back-off: every batch size the quality pass generated predictions at, "8,4" (run/oom.py).
TAG_QUALITY_PASS_BATCH_SIZES = "vlm_quant.quality_pass_batch_sizes"
ARTIFACT_BATCH_INVARIANCE = "predictions/batch_invariance.jsonl"


def batch_invariance_delta_metric(task: str) -> str:
    """The task's primary metric on the subset, batch-1 predictions minus batched ones (metric's unit)."""
    return f"batch_invariance_{PRIMARY_QUALITY_METRIC[task]}_delta"

# --- sustainability (vlm_quant/measure/{phases,flops,water,place,scale}.py, run/sustainability.py) ----------
# name -> (unit, description). GPU-only ones are absent on a CPU run (vlm_quant.sustainability_absent_reason).
SUSTAINABILITY_METRICS: dict[str, tuple[str, str]] = {
    "prefill_energy_j_per_image": (
        "J/image",
        "GPU energy of a batch-1 call generating ONE new token (preprocessing + vision + prefill), NVML "
        "windows "
        ">= 2 s, pooled over the kept prefill windows",
    ),
    "bs1_energy_j_per_image": (
        "J/image",
        "GPU energy of a batch-1 call at the cost pass's output length (preprocessing + prefill + decode), "
        "NVML windows >= 2 s; _mean/_p50/_p90/_ci95_* over the windows",
    ),
    "decode_energy_j_per_token": (
        "J/token",
        "(full-window J/image - prefill-window J/image) / (cost_new_tokens - 1): the DIFFERENCE of two "
        "kinds of "
        "windows of the same calls; absent when it is <= 0 (noise)",
    ),
    "decode_energy_share": ("fraction 0-1", "decode energy / full-call energy of one image at batch 1"),
    "phase_prefill_windows_n": ("count", "prefill windows kept (>= 2 s with an energy reading)"),
    "phase_full_windows_n": ("count", "full-length windows kept (>= 2 s with an energy reading)"),
    "phase_prefill_windows_dropped_n": ("count", "prefill windows dropped (shorter than 2 s, or no energy)"),
    "phase_full_windows_dropped_n": ("count", "full-length windows dropped (shorter than 2 s, or no energy)"),
    "phase_prefill_calls_n": ("count", "batch-1 calls (images) in the kept prefill windows"),
    "phase_full_calls_n": ("count", "batch-1 calls (images) in the kept full-length windows"),
    "energy_wh_per_1k_images_bs1": (
        "Wh/1k images",
        "AI Energy Score convention: GPU energy per 1,000 images at batch 1 (from bs1_energy_j_per_image); "
        "_ci95_low/_ci95_high from the window repeats",
    ),
    "energy_optimal_batch_size": ("images/batch", "cost-pass batch size of least energy_j_per_image_bs{B}"),
    "energy_j_per_image_optimal": ("J/image", "energy_j_per_image at energy_optimal_batch_size (ML.ENERGY)"),
    "flops_per_image": (
        "FLOP/image",
        "FLOPs of one batch-1 generation (prefill + decode at cost_new_tokens), torch.utils.flop_counter on "
        "the UNQUANTIZED model (the same work at every precision)",
    ),
    "flops_vision_per_image": ("FLOP/image", "the vision tower's share of flops_per_image"),
    "flops_prefill_per_image": ("FLOP/image", "the first forward pass (vision + prompt) of flops_per_image"),
    "flops_decode_per_image": ("FLOP/image", "the one-token decode steps of flops_per_image"),
    "flops_decode_per_token": ("FLOP/token", "flops_decode_per_image / (cost_new_tokens - 1)"),
    "achieved_flop_per_s": ("FLOP/s", "flops_per_image x throughput_images_per_s_bs1"),
    "flop_per_j": ("FLOP/J", "flops_per_image / energy_j_per_image_bs1 (GPU only)"),
    "mfu": ("fraction 0-1", "achieved_flop_per_s / the board's dense 16-bit peak (flops.BOARD_PEAKS)"),
    "energy_j_per_image_from_flops": (
        "J/image",
        "the lecture's estimate FLOPs / efficiency, efficiency = the board's peak FLOP/s / board power",
    ),
    "water_l_per_1k_images": (
        "L/1k images",
        "e x wue_l_per_kwh + e x pue x grid water intensity (Li et al. 2023), e = GPU kWh per 1,000 images "
        "at "
        "batch 1; absent without a sourced intensity for country_iso_code",
    ),
    "co2e_place_highest_to_lowest_ratio": (
        "ratio >= 1",
        "CO2e of the same energy in the dirtiest / cleanest country of measure.place.PLACES",
    ),
    "scale_energy_kwh_per_1m_images": ("kWh", "facility energy (x pue) of 1 million images at batch 1"),
    "scale_energy_kwh_per_1b_images": ("kWh", "facility energy (x pue) of 1 billion images at batch 1"),
    "scale_co2e_t_per_1m_images": ("t CO2e", "CO2e of 1 million images in country_iso_code"),
    "scale_co2e_t_per_1b_images": ("t CO2e", "CO2e of 1 billion images in country_iso_code"),
    "scale_water_m3_per_1m_images": ("m3", "water of 1 million images (see water_l_per_1k_images)"),
    "scale_water_m3_per_1b_images": ("m3", "water of 1 billion images (see water_l_per_1k_images)"),
    "bs1_energy_j_per_image_<stat>": ("J/image", "_n (windows), _mean, _p50, _p90, _ci95_low/_high"),
    "energy_wh_per_1k_images_bs1_ci95_<bound>": ("Wh/1k images", "95% interval from the full-window repeats"),
    "co2e_g_per_1k_images_<iso3>": (
        "g CO2e/1k images",
        "facility energy of 1,000 images at batch 1 x the carbon intensity of the country (lower-case ISO-3 "
        "of measure.place.PLACES; codecarbon's data); GPU runs",
    ),
}
TAG_PHASE_ENERGY_ABSENT = "vlm_quant.phase_energy_absent_reason"  # why the phase windows gave nothing
TAG_SUSTAINABILITY_ABSENT = "vlm_quant.sustainability_absent_reason"  # why the GPU-only quantities are absent
TAG_FLOPS_ABSENT = "vlm_quant.flops_absent_reason"
TAG_WATER_ABSENT = "vlm_quant.water_absent_reason"
TAG_CO2E_BY_PLACE_BASIS = "vlm_quant.co2e_by_place_basis"  # the place artifact's energy: GPU, or an estimate
ARTIFACT_PHASE_WINDOWS = "sustainability/phase_windows.json"  # every phase window: kind, calls, s, J
ARTIFACT_CO2E_BY_PLACE = "sustainability/co2e_by_place.json"  # rows per country + the ratio + the basis
# What each sustainability tag and artifact holds (same shape as the metrics: name -> (values, meaning)).
SUSTAINABILITY_TAGS: dict[str, tuple[str, str]] = {
    TAG_PHASE_ENERGY_ABSENT: ("text", "why the batch-1 phase windows gave no energy (CPU run, < 2 s, OOM)"),
    TAG_SUSTAINABILITY_ABSENT: ("text", "why Wh/1k images, water, CO2e by place, scale are absent (GPU)"),
    TAG_FLOPS_ABSENT: ("text", "why flops_* are absent (published quantized checkpoint, generate() failed)"),
    TAG_WATER_ABSENT: ("text", "why water is absent: no sourced grid water intensity for country_iso_code"),
    "vlm_quant.water_source": ("text", "source of the grid water intensity (Li et al. 2023, or the user)"),
    "vlm_quant.mfu_absent_reason": ("text", "the GPU has no entry in measure.flops.BOARD_PEAKS"),
    TAG_CO2E_BY_PLACE_BASIS: ("text", "the place artifact's energy: GPU per 1k images, or an ESTIMATE"),
}
SUSTAINABILITY_ARTIFACTS: dict[str, tuple[str, str]] = {
    ARTIFACT_PHASE_WINDOWS: (
        "JSON list",
        "every phase window: kind (prefill/full), repeat, calls, duration_s, energy_j, absent_reason",
    ),
    ARTIFACT_CO2E_BY_PLACE: (
        "JSON",
        "basis, facility_energy_kwh, highest_to_lowest_ratio, rows per country (country_iso_code, "
        "carbon_intensity_g_per_kwh, co2e_g, source)",
    ),
}
