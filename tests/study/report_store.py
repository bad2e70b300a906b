"""Build a real MLflow tracking store (sqlite + local artifacts) of evaluate runs, as `evaluate` logs them.

The per-sample scores are constructed so the expected report numbers are known in advance:
int8 repeats fp16 exactly (Δ 0), nf4 is fp16 shifted by a constant (Δ = SHIFT), int4 adds seeded
noise (Δ checked against numpy). nf4 ran without NVML: no energy, no CO2e, no power history.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from PIL import Image

from vlm_quant.tasks.captioning import chair_row
from vlm_quant.tasks.chair import score_chair
from vlm_quant.tracking import run_schema as rs

N_SAMPLES = 24
SHIFT = -0.1  # nf4's per-sample CIDEr = fp16's + SHIFT
IDS_HASH = "ab12cd34"
PROMPT = "Describe the image in one sentence."
ENERGY_ABSENT_TAG = "vlm_quant.energy_absent_reason"
NO_NVML_REASON = "NVML unavailable: NVMLError_LibraryNotFound"
ROLES = ("vision", "projector", "language", "lm_head")


@dataclass
class LoggedRun:
    run_id: str
    label: str
    weights: str
    params: dict
    metrics: dict
    rows: list[dict] = field(default_factory=list)
    power: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Store:
    uri: str
    root: Path
    experiment: str
    runs: dict[str, LoggedRun]  # by label
    parent_run_id: str
    data_dir: Path
    extra_run_ids: dict[str, str] = field(default_factory=dict)  # failed / running / other-kind runs


def _params(quant: str, weights: str, data_dir: Path, task: str = "captioning", **over: str) -> dict:
    params = {
        "model": "HuggingFaceTB/SmolVLM-256M-Instruct",
        "revision": "main",
        "weights": weights,
        "quant": quant,
        "precision_vision": "int8" if quant == "int8" else quant,
        "precision_projector": "fp16",
        "precision_language": quant,
        "precision_lm_head": "fp16",
        "task": task,
        "dataset": "coco" if task == "captioning" else "vqav2",
        "split": "val2017",
        "data_dir": str(data_dir),
        "n_samples": str(N_SAMPLES),
        "ids_hash": IDS_HASH,
        "seed": "0",
        "batch_size": "8",
        "max_new_tokens": "32",
        "prompt": PROMPT,
        "max_image_side": "512",
        "engine": "eager",
        "device": "cuda",
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "dtype": "float16",
        "engine_resolved": "eager",
        "cost_new_tokens": "32",
        "image_splitting": "processor default",
        # What the precision audit found, the source of every label (here each role as quant says).
        **{f"realized_precision_{role}": quant for role in ROLES},
    }
    params.update(over)
    return params


def environment(torch_version: str = "2.6.0", gpu: str = "NVIDIA H100 80GB HBM3") -> dict:
    return {
        "python": "3.11.2",
        "platform": "Linux-6.8-x86_64",
        "cpu": "AMD EPYC 9654",
        "cpu_count": 16,
        "ram_gib": 128.0,
        "gpus": [{"name": gpu, "memory_mib": 81559}],
        "driver": "550.54.15",
        "cuda": "12.4",
        "packages": {"torch": torch_version, "transformers": "5.0.0", "mlflow": "3.17.2"},
    }


def cost_metrics(scale: float, *, energy: bool = True) -> dict:
    """Plausible cost metrics; ``scale`` < 1 for cheaper configurations."""
    metrics = {
        "latency_ms_mean": 110.0 * scale,
        "latency_ms_p50": 100.0 * scale,
        "latency_ms_p90": 130.0 * scale,
        "ttft_ms_p50": 40.0 * scale,
        "decode_ms_per_token_p50": 5.5 * scale,
        "throughput_images_per_s": 10.0 / scale,
        "throughput_tokens_per_s": 180.0 / scale,
        "peak_vram_allocated_mib": 1500.0 * scale,
        "peak_vram_reserved_mib": 1700.0 * scale,
        "peak_rss_mib": 3000.0,
        "weights_footprint_mib": 500.0 * scale,
        "size_on_disk_mib": 520.0 * scale,
        "load_time_s": 2.0,
    }
    if energy:
        metrics.update(
            energy_j_per_image=30.0 * scale, energy_j_per_token=1.5 * scale, co2e_kg=4.2e-6 * scale
        )
    return metrics


def caption_rows(scores: np.ndarray, predictions: list[str]) -> list[dict]:
    rows = []
    for i, (score, prediction) in enumerate(zip(scores, predictions, strict=True)):
        image_id = 139 + i
        rows.append(
            {
                "sample_id": f"s{i:03d}",
                "image_id": image_id,
                "image_file": f"val2017/{image_id:012d}.jpg",
                "prompt": PROMPT,
                "prediction": prediction,
                "references": [f"a reference caption {i} {j}" for j in range(5)],
                "cider": float(score),
                "bleu_4": float(score) / 4,
                "meteor": 0.25,
                "rouge_l": 0.5,
            }
        )
    return rows


def vqa_rows(accuracies: list[float], predictions: list[str]) -> list[dict]:
    """Two questions per image (q000 and q001 ask about image 139, ...), as VQA asks several."""
    return [
        {
            "sample_id": f"q{i:03d}",
            "question_id": 1000 + i,
            "image_id": 139 + i // 2,
            "image_file": f"val2017/{139 + i // 2:012d}.jpg",
            "question": f"What colour is object {i}?",
            "prompt": "Answer briefly.",
            "prediction": prediction,
            "answers": ["red"] * 10,
            "accuracy": accuracy,
            "answer_type": "other",
            "question_type": "what color",
        }
        for i, (accuracy, prediction) in enumerate(zip(accuracies, predictions, strict=True))
    ]


class StoreWriter:
    """Logs runs with the client API, the way the evaluate entry point lays them out."""

    def __init__(self, root: Path, db_dir: Path | None = None) -> None:
        self.root = root
        self.uri = f"sqlite:///{(db_dir or root) / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri)
        self.start = int(time.time() * 1000) - 3_600_000
        self.count = 0

    def experiment(self, name: str) -> str:
        location = (self.root / "artifacts" / name).as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def run(
        self,
        exp_id: str,
        name: str,
        *,
        params: dict,
        metrics: dict,
        rows: list[dict] | None,
        env: dict | None,
        power: list[tuple[int, float]] = (),
        kind: str = "evaluate",
        status: str = "FINISHED",
        parent: str | None = None,
        tags: dict | None = None,
    ) -> str:
        self.count += 1
        tags = {
            rs.TAG_KIND: kind,
            rs.TAG_WEIGHTS: params.get("weights", "pretrained"),
            rs.TAG_TASK: params.get("task", ""),
            rs.TAG_CONFIG_HASH: f"cfg{self.count}",
            **(tags or {}),
        }
        if parent:
            tags["mlflow.parentRunId"] = parent
        run_id = self.client.create_run(
            exp_id, start_time=self.start + self.count * 1000, tags=tags, run_name=name
        ).info.run_id
        ts = self.start + self.count * 1000
        batch = [Metric(k, v, ts, 0) for k, v in metrics.items()]
        batch += [Metric(rs.METRIC_POWER_HISTORY, w, ts + step, step) for step, w in power]
        self.client.log_batch(run_id, metrics=batch, params=[Param(k, v) for k, v in params.items()])
        staging = self.root / "staging" / run_id
        if rows is not None:
            self._artifact(
                run_id, staging, rs.ARTIFACT_PREDICTIONS_JSONL, "".join(json.dumps(r) + "\n" for r in rows)
            )
            self._artifact(run_id, staging, rs.ARTIFACT_IDS, json.dumps([r["sample_id"] for r in rows]))
        if env is not None:
            self._artifact(run_id, staging, rs.ARTIFACT_ENVIRONMENT, json.dumps(env))
        if status != "RUNNING":
            self.client.set_terminated(run_id, status)
        return run_id

    def _artifact(self, run_id: str, staging: Path, artifact: str, text: str) -> None:
        path = staging / artifact
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.client.log_artifact(run_id, str(path), artifact_path=str(Path(artifact).parent))


def _power(level: float, seconds: float = 3.0) -> list[tuple[int, float]]:
    return [(ms, level + 5.0 * np.sin(ms / 300.0)) for ms in range(0, int(seconds * 1000), 100)]


def _images(data_dir: Path, n: int) -> None:
    for i in range(n):
        path = data_dir / f"val2017/{139 + i:012d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (10 * i % 255, 80, 160)).save(path)


def build_caption_store(writer: StoreWriter) -> Store:
    """Experiment 'caption-sweep': fp16, int8, nf4, int4 (pretrained), fp16 random weights, under one
    sweep parent; plus a FAILED run and a compare run that must never be loaded."""
    root = writer.root
    data_dir = root / "data"
    _images(data_dir, N_SAMPLES)
    exp = writer.experiment("caption-sweep")
    parent = writer.run(exp, "sweep", params={}, metrics={}, rows=None, env=None, kind="sweep")
    rng = np.random.default_rng(7)
    base = rng.uniform(0.3, 1.6, N_SAMPLES)
    words = [f"a dog on a bench number {i}" for i in range(N_SAMPLES)]
    int4 = base + rng.normal(-0.2, 0.15, N_SAMPLES)
    specs = {  # label -> (scores, predictions, cost scale, has energy+power, weights, torch)
        "fp16": (base, words, 1.0, True, "pretrained", "2.6.0"),
        "int8": (base, words, 1.3, True, "pretrained", "2.6.0"),
        "nf4": (
            base + SHIFT,
            [w if i % 4 else f"a cat {i}" for i, w in enumerate(words)],
            0.9,
            False,
            "pretrained",
            "2.6.0",
        ),
        "int4": (
            int4,
            [w if i % 2 else f"two birds {i}" for i, w in enumerate(words)],
            0.8,
            True,
            "pretrained",
            "2.7.0",
        ),
    }
    runs = {}
    for label, (scores, preds, scale, energy, weights, torch_version) in specs.items():
        runs[label] = _caption_run(
            writer, exp, label, scores, preds, scale, energy, weights, torch_version, data_dir, parent
        )
    noise = np.full(N_SAMPLES, 0.01)
    runs["fp16 (random)"] = _caption_run(
        writer,
        exp,
        "fp16",
        noise,
        ["zx qq"] * N_SAMPLES,
        1.0,
        True,
        "random",
        "2.6.0",
        data_dir,
        parent,
        name="fp16-random",
    )
    extra = {
        "failed": writer.run(
            exp,
            "int2-failed",
            params=_params("int2", "pretrained", data_dir),
            metrics={"cider": 9.0},
            rows=None,
            env=None,
            status="FAILED",
            parent=parent,
        ),
        "compare": writer.run(exp, "compare", params={}, metrics={}, rows=None, env=None, kind="compare"),
    }
    return Store(writer.uri, root, "caption-sweep", runs, parent, data_dir, extra)


def _caption_run(
    writer: StoreWriter,
    exp: str,
    quant: str,
    scores,
    preds,
    scale,
    energy,
    weights,
    torch_version,
    data_dir: Path,
    parent: str,
    name: str | None = None,
) -> LoggedRun:
    rows = caption_rows(np.asarray(scores), preds)
    # CHAIR as the caption task logs it: every image holds a dog and a bench ("a cat", "birds" hallucinate).
    objects = {r["sample_id"]: ("dog", "bench") for r in rows}
    chair = score_chair({r["sample_id"]: r["prediction"] for r in rows}, objects, {})
    for row in rows:
        row.update(chair_row(chair, row["sample_id"]))
    metrics = {
        "cider": float(np.mean(scores)),
        "bleu_1": 0.7 * scale,
        "bleu_2": 0.5,
        "bleu_3": 0.4,
        "bleu_4": float(np.mean(scores)) / 4,
        "meteor": 0.25,
        "rouge_l": 0.5,
    }
    metrics.update(cost_metrics(scale, energy=energy))
    power = _power(200.0 * scale) if energy else []
    params = _params(quant, weights, data_dir)
    run_id = writer.run(
        exp,
        name or quant,
        params=params,
        metrics={**metrics, **chair.metrics()},  # CHAIR is in the hallucination table, not results.csv
        rows=rows,
        env=environment(torch_version),
        power=power,
        parent=parent,
        tags=None if energy else {ENERGY_ABSENT_TAG: NO_NVML_REASON},
    )
    label = quant if weights == "pretrained" else f"{quant} (random)"
    return LoggedRun(run_id, label, weights, params, metrics, rows, power)


def build_vqa_store(writer: StoreWriter) -> Store:
    """Experiment 'vqa': fp16 and int8 on 10 questions, int8 wrong on two of them."""
    root = writer.root
    data_dir = root / "no-such-data-dir"
    exp = writer.experiment("vqa")
    acc_fp16 = [1.0, 1.0, 0.6, 1.0, 0.3, 1.0, 0.0, 1.0, 1.0, 0.9]
    acc_int8 = [1.0, 0.0, 0.6, 1.0, 0.3, 0.0, 0.0, 1.0, 1.0, 0.9]
    runs = {}
    for quant, acc in (("fp16", acc_fp16), ("int8", acc_int8)):
        preds = ["red" if a > 0 else "blue" for a in acc]
        params = _params(quant, "pretrained", data_dir, task="vqa", n_samples="10")
        metrics = {"vqa_accuracy": float(np.mean(acc)), "vqa_accuracy_other": float(np.mean(acc))}
        metrics.update(cost_metrics(1.0 if quant == "fp16" else 0.7))
        run_id = writer.run(
            exp,
            quant,
            params=params,
            metrics=metrics,
            rows=vqa_rows(acc, preds),
            env=environment(),
            power=_power(150.0),
        )
        runs[quant] = LoggedRun(run_id, quant, "pretrained", params, metrics, vqa_rows(acc, preds))
    return Store(writer.uri, root, "vqa", runs, "", data_dir)


def build_mismatch_store(writer: StoreWriter) -> Store:
    """Experiment 'mismatch': two runs whose ids_hash differ; experiment 'empty': one RUNNING run."""
    root = writer.root
    data_dir = root / "data"
    exp = writer.experiment("mismatch")
    rows = caption_rows(np.ones(3), ["a"] * 3)
    runs = {}
    for quant, ids_hash in (("fp16", IDS_HASH), ("int8", "ffff0000")):
        params = _params(quant, "pretrained", data_dir, ids_hash=ids_hash)
        run_id = writer.run(exp, quant, params=params, metrics={"cider": 1.0}, rows=rows, env=environment())
        runs[quant] = LoggedRun(run_id, quant, "pretrained", params, {"cider": 1.0}, rows)
    empty = writer.experiment("empty")
    running = writer.run(empty, "still-running", params={}, metrics={}, rows=None, env=None, status="RUNNING")
    return Store(writer.uri, root, "mismatch", runs, "", data_dir, {"running": running})


def build_cpu_store(writer: StoreWriter) -> Store:
    """Experiment 'cpu': three CPU runs as `evaluate` logs them on a machine without a GPU.

    The store holds no VRAM, no NVML energy (reason tag set), peak RSS and codecarbon's CPU/RAM
    energy (method "constant"). Labels must come from the realized precision:
    "fp32" asked quant=fp16 but computed in float32 (dtype=float32, every role fp32);
    "int8 (language)" asked quant=fp16 with precision=language=int8 (it must not be an fp16 run);
    "nf4 (language) + int8 (vision)" was resumed once (a caveat) and is the cheapest and best.
    """
    root = writer.root
    data_dir = root / "cpu-data"
    exp = writer.experiment("cpu")
    rng = np.random.default_rng(3)
    base = rng.uniform(0.3, 1.6, 6)
    # label -> (realized per role, cider shift, latency, rss MiB, cpu kWh, ram kWh, tags, extra metrics)
    specs = {
        "fp32": ({}, 0.0, 900.0, 2100.0, 2.0e-4, 5.0e-5, {}, {}),
        "int8 (language)": ({"language": "int8"}, -0.05, 1200.0, 1500.0, 2.5e-4, 6.0e-5, {}, {}),
        "nf4 (language) + int8 (vision)": (
            {"language": "nf4", "vision": "int8"}, 0.1, 700.0, 1200.0, 1.5e-4, 4.0e-5,
            {"vlm_quant.resume_count": "1"}, {"n_samples_resumed": 3.0},
        ),
    }
    runs = {}
    for label, (realized, shift, latency, rss, cpu_kwh, ram_kwh, tags, extra) in specs.items():
        scores = base + shift
        params = _params("fp16", "pretrained", data_dir, n_samples="6", device="cpu", dtype="float32")
        del params["gpu_name"]
        params.update({f"realized_precision_{role}": realized.get(role, "fp32") for role in ROLES})
        if realized:
            params["precision_" + next(iter(realized))] = next(iter(realized.values()))
        params["codecarbon_cpu_method"] = "constant"
        metrics = {
            "cider": float(np.mean(scores)),
            "latency_ms_p50": latency,
            "ttft_ms_p50": latency / 3,
            "peak_rss_mib": rss,
            "size_on_disk_mib": rss / 3,
            "codecarbon_cpu_energy_kwh": cpu_kwh,
            "codecarbon_ram_energy_kwh": ram_kwh,
            **extra,
        }
        rows = caption_rows(scores, [f"caption {i}" for i in range(6)])
        run_id = writer.run(
            exp, f"cpu-{len(runs)}", params=params, metrics=metrics, rows=rows, env=environment(gpu="none"),
            tags={ENERGY_ABSENT_TAG: "no NVIDIA GPU (device cpu)", **tags},
        )
        runs[label] = LoggedRun(run_id, label, "pretrained", params, metrics, rows)
    return Store(writer.uri, root, "cpu", runs, "", data_dir)


def build_other_gpu_store(writer: StoreWriter) -> Store:
    """Experiment 'two-gpus': fp16 on an H100 and int8 on an A100, otherwise identical: quality
    may be compared, cost may not."""
    root = writer.root
    data_dir = root / "data"
    exp = writer.experiment("two-gpus")
    runs = {}
    scores = np.linspace(0.5, 1.0, 4)
    for quant, gpu in (("fp16", "NVIDIA H100 80GB HBM3"), ("int8", "NVIDIA A100-SXM4-40GB")):
        params = _params(quant, "pretrained", data_dir, n_samples="4", gpu_name=gpu)
        metrics = {"cider": float(np.mean(scores)), **cost_metrics(1.0)}
        rows = caption_rows(scores, ["a"] * 4)
        run_id = writer.run(exp, quant, params=params, metrics=metrics, rows=rows, env=environment(gpu=gpu))
        runs[quant] = LoggedRun(run_id, quant, "pretrained", params, metrics, rows)
    return Store(writer.uri, root, "two-gpus", runs, "", data_dir)


def build_labels_store(writer: StoreWriter) -> Store:
    """Experiment 'labels': CPU runs whose presets' names say one thing and whose layers another.

    Every run asked for 16-bit roles (quant=<preset>, precision_* as the preset plans) and the compiled
    engine; on CPU nothing compiled (engine_resolved=static-cache) and the unquantized roles computed in
    float32, except AutoRound's, which computes in bfloat16. Labels (from the realized precision):
    "fp32" (quant=fp16), "int8wo (language)" (int8-ao), "w8a8 (language)" (w8a8-ao), "ort-int8 (vision)"
    (int8-vision-ort), "int8wo (language) + ort-int8 (vision)" (cpu-fast), "ar-w4 (language)" (ar-w4,
    other roles bf16). No bitsandbytes layer ran in any of them. Experiment 'labels-random': the same
    presets fp16 and int8-ao with random weights only (a cost-only study).
    """
    root = writer.root
    data_dir = root / "labels-data"
    n = 6
    rng = np.random.default_rng(11)
    base = rng.uniform(0.3, 1.6, n)
    # label -> (quant, realized per quantized role, compute dtype, remainder float, cider shift)
    specs = {
        "fp32": ("fp16", {}, "float32", "fp32", 0.0),
        "int8wo (language)": ("int8-ao", {"language": "int8wo"}, "float32", "fp32", -0.02),
        "w8a8 (language)": ("w8a8-ao", {"language": "w8a8"}, "float32", "fp32", -0.03),
        "ort-int8 (vision)": ("int8-vision-ort", {"vision": "ort-int8"}, "float32", "fp32", -0.01),
        "int8wo (language) + ort-int8 (vision)": (
            "cpu-fast", {"vision": "ort-int8", "language": "int8wo"}, "float32", "fp32", -0.04,
        ),
        "ar-w4 (language)": ("ar-w4", {"language": "ar-w4"}, "bfloat16", "bf16", -0.05),
    }
    runs = {}
    for experiment, weights, chosen in (
        ("labels", "pretrained", specs),
        ("labels-random", "random", {k: specs[k] for k in ("fp32", "int8wo (language)")}),
    ):
        exp = writer.experiment(experiment)
        for label, (quant, realized, dtype, remainder, shift) in chosen.items():
            params = _params(
                quant, weights, data_dir, n_samples=str(n), device="cpu", dtype=dtype,
                engine="compiled", engine_resolved="static-cache",
            )
            del params["gpu_name"]
            params.update({f"precision_{role}": realized.get(role, "fp16") for role in ROLES})  # the plan
            params.update({f"realized_precision_{role}": realized.get(role, remainder) for role in ROLES})
            scores = base + shift if weights == "pretrained" else np.full(n, 0.01)
            metrics = {"cider": float(np.mean(scores)), "latency_ms_p50": 900.0 + 10 * len(runs)}
            rows = caption_rows(scores, [f"caption {i}" for i in range(n)])
            run_id = writer.run(
                exp, f"{experiment}-{len(runs)}", params=params, metrics=metrics, rows=rows,
                env=environment(gpu="none"),
            )
            key = label if weights == "pretrained" else f"{label} (random)"
            runs[key] = LoggedRun(run_id, key, weights, params, metrics, rows)
    return Store(writer.uri, root, "labels", runs, "", data_dir)
