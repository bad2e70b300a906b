"""Every GPU measurement of the engines, the input pipeline and the cost pass, in one script, within a budget.

    python benchmarks/gpu_check.py --data-dir DIR [--wheels .whl] [--budget-s 450]

On one H100/H200 (random weights of the real architectures, nothing downloaded), each step in its own
process (a failure is a row with its log, not the end), in this order, until ``--budget-s`` runs out
(later steps are then listed as skipped, never silently dropped):

1. one full evaluate of SmolVLM-256M (bf16, compiled engine, batch 64, the input pipeline, power
   sampling, ``score=later`` since GPU nodes often lack Java): its quality-pass images/s,
   ``harness_overhead_fraction``, the wait for inputs, energy per image and peak VRAM, read back from
   the run;
2. `benchmarks/engines.py` (model-card loop, eager, compiled) for SmolVLM-256M and Qwen2-VL-2B at bf16,
   then int8, nf4, int8-ao and w8a8-ao (eager and compiled);
   the same run measures the sustainability quantities: batch-1 energy by phase (3 pairs of prefill-only
   and full-length NVML windows of >= 2 s: prefill J/image, decode J/token, decode share, GPU Wh per 1,000
   images), J/image at batch sizes 1, 8 and 64 and the energy-optimal one, FLOPs per image (counted on the
   unquantized model), FLOP/s, FLOP/J and MFU against the board's datasheet peak;
3. the calibrated PTQ presets (``--ptq-presets``: gptq-w4, awq-w4, gptq-w8, w8a8-sq through llm-compressor)
   on Qwen2-VL-2B, each one evaluate run (quantize on the GPU, reload the export, quality and cost pass,
   ``score=later``): its ``quantize_s``, latency, J/image, peak VRAM, size on disk and fidelity, read back
   from the run (``engines.py`` applies in-place plans only, so these go through ``evaluate``);
4. the targets, each PASS / FAIL / n/a: harness_overhead_fraction < 0.10 and >= 300 images/s at batch 64
   (32-token captions), compiled >= 3x eager images/s at batch 64 and >= 4x lower batch-1 latency.

Everything goes under $OUT (default ./out): gpu_check.md (the tables), gpu_check.json, logs/.

Without a CUDA GPU it says so and runs a **reduced form** on the CPU (a few images and tokens, the
models given with ``--models``, e.g. a tiny checkpoint): the same steps and tables, so the script is
tested where there is no GPU; no number of it describes a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GPU_MODELS = ("HuggingFaceTB/SmolVLM-256M-Instruct", "Qwen/Qwen2-VL-2B-Instruct")
PRESETS = ("bf16", "int8", "nf4", "int8-ao", "w8a8-ao")
PTQ_PRESETS = ("gptq-w4", "awq-w4", "gptq-w8", "w8a8-sq")
PTQ_EXPERIMENT = "gpu-check-ptq"
PTQ_KEEP = (
    "quantize_s", "quantize_peak_vram_allocated_mib", "reload_time_s", "decompress_s", "latency_ms_p50",
    "throughput_images_per_s", "energy_j_per_image", "peak_vram_allocated_mib", "size_on_disk_mib",
    "fidelity_logits_kl_nats_token_mean", "fidelity_top1_agreement_token_mean",
)
TARGETS = {
    "harness_overhead_fraction < 0.10 (SmolVLM-256M, batch 64, compiled)": ("overhead", 0.10),
    ">= 300 images/s for 32-token captions (quality pass, batch 64)": ("images_per_s", 300.0),
    "compiled >= 3x eager images/s at batch 64 (SmolVLM-256M, bf16)": ("speedup", 3.0),
    "compiled >= 4x lower batch-1 latency (SmolVLM-256M, bf16)": ("latency", 4.0),
}


SUSTAINABILITY_KEYS = (  # read back from the evaluate run (vlm_quant/tracking/run_schema.py)
    "prefill_energy_j_per_image",
    "bs1_energy_j_per_image",
    "decode_energy_j_per_token",
    "decode_energy_share",
    "energy_wh_per_1k_images_bs1",
    "phase_prefill_windows_n",
    "phase_full_windows_n",
    "energy_j_per_image_bs1",
    "energy_j_per_image_bs8",
    "energy_j_per_image_bs64",
    "energy_optimal_batch_size",
    "energy_j_per_image_optimal",
    "flops_per_image",
    "flops_vision_per_image",
    "achieved_flop_per_s",
    "flop_per_j",
    "mfu",
    "energy_j_per_image_from_flops",
)


@dataclass
class Step:
    """One step: its command, and what came of it (``status``: ok, failed (rc), timeout, skipped)."""

    name: str
    command: list[str]
    status: str = "pending"
    seconds: float = 0.0
    log: str = ""
    results: dict = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", default="../shared/coco_val2017_mini", help="COCO folder (official layout)."
    )
    parser.add_argument("--wheels", default="", help="Folder of wheels to install first (the device wheels).")
    parser.add_argument("--budget-s", type=float, default=450.0, help="Wall-clock budget of all steps (s).")
    parser.add_argument(
        "--models", nargs="*", default=None, help="Models (default: SmolVLM-256M, Qwen2-VL-2B)."
    )
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), help="Presets of the engines step.")
    parser.add_argument(
        "--ptq-presets", nargs="*", default=list(PTQ_PRESETS), help="Calibrated presets, one evaluate each."
    )
    parser.add_argument("--force-reduced", action="store_true", help="The reduced CPU form even with a GPU.")
    return parser.parse_args(argv)


def has_cuda(env: dict) -> bool:
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0


def install_wheels(wheels: str, env: dict) -> str:
    """Install ``wheels`` into /tmp/site (no index, no dependencies: the device wheels' README) and put
    it on PYTHONPATH; returns what pip said."""
    site = "/tmp/site"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--upgrade",
        "--target",
        site,
        *map(str, sorted(Path(wheels).glob("*.whl"))),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH", "")) if p)
    return (done.stdout + done.stderr).strip() or f"installed {wheels} into {site}"


def flags(**options: object) -> list[str]:
    """``--key value`` pairs of a command line, ``key_name`` spelled ``--key-name``."""
    return [item for key, value in options.items() for item in (f"--{key.replace('_', '-')}", str(value))]


def plan_steps(args: argparse.Namespace, reduced: bool, out: Path) -> list[Step]:
    """The evaluate step, then the engines steps (bf16 of every model first, then the other presets)."""
    models = args.models or ([] if reduced else list(GPU_MODELS))
    if not models:
        raise SystemExit("the reduced CPU form needs --models (e.g. a tiny checkpoint directory)")
    size = (
        {"n": 4, "batch": 2, "tokens": 2, "latency": 2}
        if reduced
        else {"n": 128, "batch": 64, "tokens": 32, "latency": 10}
    )
    evaluate = [sys.executable, "-m", "vlm_quant", "evaluate", "--num-workers=-1"] + flags(
        model=models[0], weights="pretrained" if Path(models[0]).is_dir() else "random",
        quant="fp16" if reduced else "bf16", engine="compiled", data_dir=args.data_dir, n_samples=size["n"],
        batch_size=size["batch"], max_new_tokens=size["tokens"], cost_new_tokens=size["tokens"],
        cost_batch_sizes=f"1,{size['batch']}" if reduced else f"1,8,{size['batch']}",
        cost_phase_repeats=0 if reduced else 3, score="later", experiment="gpu-check",
        run_name="gpu-check evaluate", log_model="false",
        **({"cost_iterations": 1, "cost_warmup": 0, "idle_seconds": 0} if reduced else {}),
    )
    steps = [Step("evaluate", evaluate)]
    first, *others = args.presets
    order = [(m, first) for m in models] + [(m, p) for p in others for m in models]
    for model, preset in order:
        command = [sys.executable, str(REPO / "benchmarks" / "engines.py")] + flags(
            model=model, weights="pretrained" if Path(model).is_dir() else "random", quant=preset,
            data_dir=args.data_dir, n_images=size["batch"] * 2, batch_size=size["batch"],
            new_tokens=size["tokens"], latency_iterations=size["latency"], warmup=1,
            engines="model-card,eager,compiled" if preset == first else "eager,compiled",
            **({"device": "cpu"} if reduced else {}),
        )
        steps.append(Step(f"engines {Path(model).name} {preset}", command))
    return steps + ptq_steps(args, models[-1], reduced)


def ptq_steps(args: argparse.Namespace, model: str, reduced: bool) -> list[Step]:
    """One evaluate run per calibrated PTQ preset on ``model`` (Qwen2-VL-2B on a GPU), random weights."""
    size = (
        {"n": 4, "batch": 2, "tokens": 2, "calibration": 1}
        if reduced
        else {"n": 64, "batch": 16, "tokens": 32, "calibration": 16}
    )
    steps = []
    for preset in args.ptq_presets:
        command = [sys.executable, "-m", "vlm_quant", "evaluate", "--num-workers=-1"] + flags(
            model=model, weights="pretrained" if Path(model).is_dir() else "random", quant=preset,
            data_dir=args.data_dir, n_samples=size["n"], batch_size=size["batch"],
            max_new_tokens=size["tokens"], cost_new_tokens=size["tokens"],
            cost_batch_sizes=f"1,{size['batch']}", ptq_calibration_samples=size["calibration"],
            score="later", experiment=PTQ_EXPERIMENT, run_name=f"gpu-check {preset}", log_model="false",
            **({"cost_iterations": 1, "cost_warmup": 0, "idle_seconds": 0} if reduced else {}),
        )
        steps.append(Step(f"ptq {Path(model).name} {preset}", command))
    return steps


def run_steps(steps: list[Step], env: dict, out: Path, budget_s: float) -> None:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + budget_s
    for index, step in enumerate(steps):
        left = deadline - time.monotonic()
        if left < 20:  # not enough left to load a model: say so rather than start and be cut off
            step.status = f"skipped (budget of {budget_s:.0f} s spent)"
            continue
        step.log = str(logs / f"{index:02d}-{step.name.replace(' ', '_')}.log")
        started = time.monotonic()
        with open(step.log, "w") as handle:
            try:
                done = subprocess.run(
                    step.command, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=left, cwd=REPO
                )
                step.status = "ok" if done.returncode == 0 else f"failed (rc {done.returncode})"
            except subprocess.TimeoutExpired:
                step.status = f"timeout (the budget's last {left:.0f} s)"
        step.seconds = time.monotonic() - started
        print(f"[gpu_check] {step.name}: {step.status} in {step.seconds:.0f} s", flush=True)


def evaluate_results(tracking_uri: str) -> dict:
    """The gpu-check evaluate run's metrics and params (latest run of the experiment)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("gpu-check")
    runs = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"]) if experiment else []
    if not runs:
        return {}
    run = runs[0]
    keep = (
        "quality_pass_samples_per_s",
        "harness_overhead_fraction",
        "quality_pass_model_s",
        "quality_pass_wait_s",
        "quality_pass_s",
        "energy_j_per_image",
        "quality_pass_energy_j_per_image",
        "peak_vram_allocated_mib",
        "throughput_images_per_s",
        "latency_ms_p50",
        "batch_invariance_agreement",
    )
    return {
        "run_id": run.info.run_id,
        "status": run.info.status,
        "metrics": {k: run.data.metrics.get(k) for k in keep},
        "sustainability": {k: run.data.metrics.get(k) for k in SUSTAINABILITY_KEYS},
        "params": {
            k: run.data.params.get(k)
            for k in (
                "engine_resolved",
                "image_processor_backend",
                "image_processor_device",
                "num_workers_resolved",
                "device",
            )
        },
        "energy_absent_reason": run.data.tags.get("vlm_quant.energy_absent_reason"),
        "phase_energy_absent_reason": run.data.tags.get("vlm_quant.phase_energy_absent_reason"),
    }


def ptq_results(tracking_uri: str) -> dict[str, dict]:
    """Per PTQ preset (latest run of each): status, realized language precision and the PTQ_KEEP metrics."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(PTQ_EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], order_by=["start_time ASC"]) if experiment else []
    return {
        run.data.params.get("quant", "?"): {
            "status": run.info.status,
            "realized_language": run.data.params.get("realized_precision_language"),
            "metrics": {k: run.data.metrics.get(k) for k in PTQ_KEEP},
            "energy_absent_reason": run.data.tags.get("vlm_quant.energy_absent_reason"),
        }
        for run in runs
    }


def ptq_table(ptq: dict[str, dict]) -> list[str]:
    """The PTQ presets' markdown table; a metric a run did not measure is "n/a"."""
    lines = [
        "| preset | status | language | " + " | ".join(PTQ_KEEP) + " |",
        "|---|---|---|" + "---|" * len(PTQ_KEEP),
    ]
    for preset, row in ptq.items():
        values = ["n/a" if row["metrics"].get(k) is None else f"{row['metrics'][k]:.4g}" for k in PTQ_KEEP]
        cells = [preset, row["status"], str(row["realized_language"]), *values]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def engines_results(out: Path) -> dict[str, dict]:
    """Every engines.py result under ``out`` (its JSON files), by file stem."""
    return {path.stem: json.loads(path.read_text())["results"] for path in sorted(out.glob("engines-*.json"))}


def target_rows(evaluation: dict, engines: dict[str, dict], reduced: bool) -> list[tuple[str, str]]:
    """(target, PASS / FAIL / n/a with the measured value) for each of TARGETS."""
    metrics = evaluation.get("metrics", {})
    smol = next((r for stem, r in engines.items() if "SmolVLM-256M" in stem and stem.endswith("bf16")), {})
    eager, compiled = smol.get("eager"), smol.get("compiled")
    measured = {
        "overhead": metrics.get("harness_overhead_fraction"),
        "images_per_s": metrics.get("quality_pass_samples_per_s"),
        "speedup": compiled["images_per_s"] / eager["images_per_s"] if eager and compiled else None,
        "latency": eager["latency_ms_p50"] / compiled["latency_ms_p50"] if eager and compiled else None,
    }
    rows = []
    for text, (key, bound) in TARGETS.items():
        value = measured[key]
        if value is None or reduced:
            verdict = "n/a (reduced CPU form: no GPU)" if reduced else "n/a (not measured)"
        else:
            good = value < bound if key == "overhead" else value >= bound
            verdict = f"{'PASS' if good else 'FAIL'} ({value:.3g})"
        rows.append((text, verdict))
    return rows


def report(
    steps: list[Step], evaluation: dict, engines: dict, reduced: bool, header: str, out: Path, ptq: dict
) -> str:
    lines = [
        f"# GPU check ({'REDUCED CPU FORM: no CUDA GPU, no GPU number below' if reduced else 'GPU'})",
        header,
        "",
        "## Steps",
        "| step | status | s | log |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {s.name} | {s.status} | {s.seconds:.0f} | {Path(s.log).name if s.log else ''} |" for s in steps
    ]
    lines += ["", "## Evaluate (quality pass and cost pass of one run)"]
    lines += [
        f"- {k}: {v}" for k, v in {**evaluation.get("params", {}), **evaluation.get("metrics", {})}.items()
    ]
    if evaluation.get("energy_absent_reason"):
        lines.append(f"- energy absent: {evaluation['energy_absent_reason']}")
    lines += ["", "## Sustainability (phase windows at batch 1, J/image per batch size, FLOPs)"]
    measured = evaluation.get("sustainability", {})
    lines += [f"- {k}: {measured.get(k)}" for k in SUSTAINABILITY_KEYS]
    if evaluation.get("phase_energy_absent_reason"):
        lines.append(f"- phase energy absent: {evaluation['phase_energy_absent_reason']}")
    lines += [
        "",
        "## Engines (images/s at the batch size; batch-1 latency ms p50)",
        "| model, preset | engine | batch | images/s | latency ms p50 | J/image |",
        "|---|---|---|---|---|---|",
    ]
    for stem, results in engines.items():
        for engine, r in results.items():
            joules = "n/a" if r.get("energy_j_per_image") is None else f"{r['energy_j_per_image']:.3f}"
            lines.append(
                f"| {stem.removeprefix('engines-')} | {engine} | {r['batch_size']} | "
                f"{r['images_per_s']:.2f} | {r['latency_ms_p50']:.1f} | {joules} |"
            )
    lines += ["", "## Calibrated PTQ presets (llm-compressor; one evaluate run each)", *ptq_table(ptq)]
    lines += ["", "## Targets", "| target | result |", "|---|---|"]
    lines += [f"| {text} | {verdict} |" for text, verdict in target_rows(evaluation, engines, reduced)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(os.environ.get("OUT", "out")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "OUT": str(out),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}",
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    notes = [install_wheels(args.wheels, env)] if args.wheels else []
    reduced = args.force_reduced or not has_cuda(env)
    if reduced:
        print(
            "[gpu_check] no CUDA GPU visible: running the REDUCED CPU form; none of its numbers is a GPU's",
            flush=True,
        )
    steps = plan_steps(args, reduced, out)
    run_steps(steps, env, out, args.budget_s)
    sys.path.insert(0, str(REPO))
    from vlm_quant.measure.environment import environment_record

    machine = environment_record()
    gpu = machine["gpus"][0]["name"] if machine["gpus"] else "no GPU"
    packages = machine["packages"]
    header = (
        f"Hardware: {gpu}; CPU {machine['cpu']} x{machine['cpu_count']}; torch {packages['torch']}; "
        f"torchvision {packages.get('torchvision')}; transformers {packages['transformers']}"
    )
    evaluation = evaluate_results(env["MLFLOW_TRACKING_URI"])
    engines = engines_results(out)
    ptq = ptq_results(env["MLFLOW_TRACKING_URI"])
    text = report(steps, evaluation, engines, reduced, header + "".join(f"\n{n}" for n in notes), out, ptq)
    print(text)
    (out / "gpu_check.md").write_text(text + "\n")
    (out / "gpu_check.json").write_text(
        json.dumps(
            {
                "reduced": reduced,
                "steps": [asdict(s) for s in steps],
                "evaluate": evaluation,
                "engines": engines,
                "ptq": ptq,
                "targets": target_rows(evaluation, engines, reduced),
                "environment": machine,
            },
            indent=2,
            default=str,
        )
    )
    return 0 if all(s.status == "ok" for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
