"""What a run is called and what its page says: run names, the description, the dataset inputs.

Plain values only (no mlflow import): `tracker` turns them into MLflow calls. The UI shows the run
name in every list and chart legend, so it says what ran (`SmolVLM-256M-Instruct · int8`); the
description (the run page's "Description" box, tag ``mlflow.note.content``) says what came out, with
units, and the caveats that change how to read the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vlm_quant.tracking import run_schema

TAG_NOTE = "mlflow.note.content"  # MLflow's own tag for the run page's description box
TAG_RUN_NAME = "mlflow.runName"
SEPARATOR = " · "


def model_short_name(model: str) -> str:
    """``HuggingFaceTB/SmolVLM-256M-Instruct`` -> ``SmolVLM-256M-Instruct`` (a local path: its folder)."""
    return model.rstrip("/").split("/")[-1] or model


def run_display_name(model: str, quant: str, precision_override: str = "", ran: str = "") -> str:
    """``<model short name> · <preset>[+override][ (ran)]``, e.g. ``SmolVLM-256M-Instruct · int8+vision=fp16``
    (``ran``: what the 16-bit roles really computed in when it is not the preset's dtype:
    ``SmolVLM-256M-Instruct · fp16 (fp32 on cpu)``)."""
    preset = quant + (f"+{precision_override.replace(' ', '')}" if precision_override else "")
    return f"{model_short_name(model)}{SEPARATOR}{preset}" + (f" ({ran})" if ran else "")


def sweep_display_name(model: str, quants: Sequence[str], split: str = "") -> str:
    """A sweep parent named after its study: ``SmolVLM-256M-Instruct · sweep fp16/int8/nf4 · val2017``."""
    parts = [model_short_name(model), "sweep " + "/".join(quants)]
    return SEPARATOR.join(parts + ([split] if split else []))


def compare_display_name(names: Sequence[str], baseline: str = "") -> str:
    """A compare run says what it compared: ``compare int8, nf4 vs fp16 (SmolVLM-256M-Instruct)``."""
    models = sorted({n.split(SEPARATOR)[0] for n in names if SEPARATOR in n})
    presets = [n.split(SEPARATOR, 1)[1] for n in names if SEPARATOR in n] or list(names)
    against = f" vs {baseline}" if baseline else ""
    suffix = f" ({', '.join(models)})" if models else ""
    return f"compare {', '.join(p for p in presets if p != baseline)}{against}{suffix}"


# --- the description --------------------------------------------------------------------------

# (metric key, label, format, unit); the first key present of each group is shown.
COST_LINES: tuple[tuple[tuple[str, ...], str, str, str], ...] = (
    (("latency_ms_p50", "latency_ms_mean"), "latency (batch 1, p50)", "{:.1f}", "ms"),
    (("throughput_images_per_s",), "throughput", "{:.2f}", "images/s"),
    (("peak_vram_allocated_mib", "peak_rss_mib"), "peak memory", "{:.0f}", "MiB"),
    (("size_on_disk_mib",), "size on disk", "{:.1f}", "MiB"),
    (("energy_j_per_image", "quality_pass_energy_j_per_image"), "energy", "{:.2f}", "J/image"),
)


@dataclass(frozen=True)
class RunFacts:
    """What the description is written from (all from the run itself)."""

    name: str
    task: str
    metrics: Mapping[str, float]
    weights: str = "pretrained"
    n_samples: int | None = None
    dataset: str = ""
    caveats: list[str] = field(default_factory=list)
    quality_absent_reason: str = ""  # why the primary quality metric may be absent (e.g. scoring deferred)


def memory_label(metrics: Mapping[str, float]) -> str:
    return "peak VRAM" if "peak_vram_allocated_mib" in metrics else "peak RSS (CPU run)"


def describe_run(facts: RunFacts) -> str:
    """One paragraph: the primary quality metric, latency, peak memory, size, energy (units), caveats."""
    m = facts.metrics
    primary = run_schema.primary_metric(facts.task, facts.dataset) or ""
    on = f" on {facts.n_samples} {facts.dataset} samples" if facts.n_samples else ""
    parts = [f"**{facts.name}**{on}."]
    if primary in m:
        scale = " (pycocoevalcap scale)" if primary == "cider" else " (0-1)"
        parts.append(f"{primary.upper() if primary == 'cider' else primary} {m[primary]:.3f}{scale}.")
    else:
        why = f" ({facts.quality_absent_reason})" if facts.quality_absent_reason else ""
        parts.append(f"{primary or 'quality'}: not measured{why}.")
    domains = [(k[len("cider_") : -len("_domain")], m[k]) for k in run_schema.NOCAPS_METRICS if k in m]
    if domains:
        parts.append("CIDEr by NoCaps domain: " + ", ".join(f"{d} {v:.3f}" for d, v in domains) + ".")
    costs = []
    for keys, label, fmt, unit in COST_LINES:
        key = next((k for k in keys if k in m), None)
        if key is None:
            continue
        label = memory_label(m) if label == "peak memory" else label
        costs.append(f"{label} {fmt.format(m[key])} {unit}")
    missing = [label for keys, label, _, _ in COST_LINES if not any(k in m for k in keys)]
    if costs:
        parts.append("Cost: " + "; ".join(costs) + ".")
    if missing:
        parts.append("Not measured: " + ", ".join(missing) + " (see the run's *_absent_reason tags).")
    caveats = list(facts.caveats)
    if facts.weights == "random":
        caveats.insert(0, "RANDOM WEIGHTS: quality numbers are meaningless; only the cost numbers are real")
    if caveats:
        parts.append("Caveats: " + "; ".join(caveats) + ".")
    return " ".join(parts)


def run_caveats(
    *, resumed: int = 0, dtype_note: str = "", engine_requested: str = "", engine_resolved: str = "",
    engine_note: str = "", extra: Sequence[str] = (),
) -> list[str]:
    """The caveats worth a reader's attention: resumed attempts, 16-bit run as fp32, engine fallback."""
    out = []
    if resumed:
        out.append(f"resumed: {resumed} samples were generated by an earlier attempt of this run")
    if "float32" in dtype_note:
        out.append(dtype_note)
    if engine_requested and engine_resolved and engine_requested not in ("auto", engine_resolved):
        fell_back = f"engine fell back from {engine_requested} to {engine_resolved}"
        out.append(f"{fell_back}: {engine_note}" if engine_note else fell_back)
    out.extend(extra)
    return out


# --- dataset inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInput:
    """One MLflow dataset input: name, digest (our ids hash), where it came from, its profile."""

    name: str
    digest: str
    source: str  # a local folder or a `datasets` id
    source_type: str  # "local" | "hugging_face"
    context: str  # "evaluation" | "few_shot_pool" | "cost_micro_set"
    profile: dict[str, Any] = field(default_factory=dict)


def dataset_name(dataset: str, split: str) -> str:
    """``coco`` + ``val2017`` -> ``coco-val2017`` (the Dataset column of the runs list)."""
    return f"{dataset}-{split}" if split else dataset


def _input(
    cfg: Any, data: Any, context: str, ids: Sequence[Any], suffix: str, digest_of: Any
) -> DatasetInput:
    hub = getattr(cfg, "source", "local") == "hf"
    source = getattr(cfg, "hf_dataset", "") if hub else str(data.data_dir or getattr(cfg, "data_dir", ""))
    profile = {"num_samples": len(ids), "seed": getattr(cfg, "seed", None), "split": data.split}
    return DatasetInput(
        dataset_name(data.dataset, data.split) + suffix, digest_of(list(ids)), source,
        "hugging_face" if hub else "local", context, profile,
    )


def split_inputs(cfg: Any, data: Any, digest_of: Any) -> list[DatasetInput]:
    """The evaluated split (context ``evaluation``) and, with ``shots``, the few-shot pool.

    ``data`` is the run's TaskData; digest = ``digest_of(ids)`` (the run's ``ids_hash`` param), so two
    runs on the same ids share it; the source is the local folder or the `datasets` id.
    """
    inputs = [_input(cfg, data, "evaluation", data.ids, "", digest_of)]
    shot_ids = data.params.get("shot_ids") or ()
    if shot_ids:
        inputs.append(_input(cfg, data, "few_shot_pool", shot_ids, "-few-shot", digest_of))
    return inputs


def micro_set_input(cfg: Any, data: Any, micro_ids: Sequence[Any], digest_of: Any) -> DatasetInput:
    """The cost pass's fixed micro-set (context ``cost_micro_set``)."""
    return _input(cfg, data, "cost_micro_set", micro_ids, "-cost-micro-set", digest_of)
