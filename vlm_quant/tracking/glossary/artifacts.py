"""The run's artifact paths: `unit` holds the file's format."""

from __future__ import annotations

from vlm_quant.tracking.glossary.term import Term

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
