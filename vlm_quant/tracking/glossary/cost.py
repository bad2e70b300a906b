"""Cost metrics: time, throughput, memory, size; energy, power and CO2e. Units in the names."""

from __future__ import annotations

from vlm_quant.tracking.glossary.term import Term

_STATS = "`_n`, `_mean`, `_p50`, `_p90`, `_ci95_low`, `_ci95_high`"

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
    Term(
        ("quantize_s", "quantize_peak_<memory>"),
        "s, MiB",
        "calibrated quantization (AutoRound, llm-compressor GPTQ/AWQ/SmoothQuant): wall time of the "
        "library's calibration + export, and its peak VRAM allocated/reserved and process RSS",
    ),
    Term(
        ("reload_time_s", "decompress_s"),
        "s",
        "a calibrated export loaded back through transformers (never the in-memory model); llm-compressor "
        "checkpoints: then unpacked to dense floats (what transformers does on the first forward)",
    ),
    Term(("ptq_export_mib",), "MiB", "the llm-compressor export (packed compressed-tensors) on disk"),
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
