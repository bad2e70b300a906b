"""Check every precision preset on a GPU: realized precision per role, size on disk, peak VRAM, speed.

For each model and preset: check the plan (before loading), load the model at 16 bits, quantize in
place, audit and verify what loaded, caption a short batch, time batch-1 latency and batch-N
throughput with a fixed output length, and save the checkpoint to measure its size on disk. Results go
to ``$OUT/gpu_presets_check.json`` and ``$OUT/gpu_presets_check.md`` ($OUT defaults to ./out), and the
table is printed per model. A preset that is refused or fails is a row with its reason, not a crash.

On an H100/H200 (random weights of the real architectures, nothing downloaded):

    python benchmarks/gpu_presets_check.py

Smoke test on CPU with a tiny local checkpoint (e.g. one written by ``tests/tiny_vlms.py``):

    python benchmarks/gpu_presets_check.py --device cpu --models /tmp/tiny/idefics3 \\
        --new-tokens 4 --iterations 1 --batch-size 2
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vlm_quant.engines.generate import GenerationSettings, generate, single_image_request
from vlm_quant.errors import UserError
from vlm_quant.measure.memory import MemoryTracker
from vlm_quant.measure.timing import DeviceTimer
from vlm_quant.models.checkpoint import save_checkpoint
from vlm_quant.models.loading import load_vlm
from vlm_quant.quantize.audit import audit_precision, verify_plan
from vlm_quant.quantize.backends import apply_plan, check_plan_runnable
from vlm_quant.quantize.presets import PRESETS, ROLES, resolve_plan
from vlm_quant.run.cost_pass import CostSettings, measure_latency, measure_throughput

DEFAULT_MODELS = ("HuggingFaceTB/SmolVLM-256M-Instruct", "Qwen/Qwen2-VL-2B-Instruct")
PROMPT = "Provide a one-sentence caption for the provided image."


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(DEFAULT_MODELS),
        help="Hub ids (bundled, for --weights random) or local checkpoint directories.",
    )
    parser.add_argument(
        "--weights",
        choices=("random", "pretrained"),
        default="random",
        help="Random weights of the bundled architecture (default) or the checkpoint's; "
        "local directories always load their own weights.",
    )
    parser.add_argument(
        "--presets", nargs="+", default=[p for p in PRESETS if p != "prequantized"], choices=list(PRESETS)
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--new-tokens", type=int, default=16, help="Fixed output length of the timed passes.")
    parser.add_argument("--batch-size", type=int, default=32, help="Batch size of the throughput pass.")
    parser.add_argument("--iterations", type=int, default=5, help="Minimum timed iterations per measurement.")
    parser.add_argument("--seconds", type=float, default=2.0, help="Minimum timed seconds per measurement.")
    parser.add_argument("--caption-batch", type=int, default=4, help="Images in the captioning check.")
    parser.add_argument(
        "--out", default=os.environ.get("OUT", "out"), help="Output folder (default $OUT or ./out)."
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA GPU is visible; use --device cpu for a smoke test.")
    return args


def synthetic_images(n: int) -> list[Image.Image]:
    """Deterministic 640x480 test images (gradients with a coloured square); no dataset needed."""
    images = []
    for i in range(n):
        x = torch.linspace(0, 1, 640).expand(480, 640)
        y = torch.linspace(0, 1, 480).unsqueeze(1).expand(480, 640)
        rgb = torch.stack([x, y, (x + y + i / max(n, 1)) % 1.0], dim=-1)
        rgb[100 + 20 * i : 220 + 20 * i, 200:360] = torch.tensor([0.9, 0.2, 0.1])
        images.append(Image.fromarray((rgb * 255).to(torch.uint8).numpy()))
    return images


def check_preset(
    model_id: str, preset: str, args: argparse.Namespace, images: list[Image.Image]
) -> dict[str, Any]:
    """One row: everything measured for ``model_id`` at ``preset`` (or the reason it could not run)."""
    device = torch.device(args.device)
    plan = resolve_plan(preset)
    dtype = (
        torch.float32
        if device.type == "cpu"
        else {"fp16": torch.float16, "bf16": torch.bfloat16}[plan.half_dtype_name]
    )
    row: dict[str, Any] = {
        "model": model_id,
        "preset": preset,
        "dtype": str(dtype).removeprefix("torch."),
        "planned": dict(plan.roles),
    }
    try:
        check_plan_runnable(plan, device)
    except UserError as error:
        return {**row, "status": f"refused: {error}"}
    memory = MemoryTracker(device)
    weights = "pretrained" if Path(model_id).expanduser().is_dir() else args.weights  # a local dir: its own
    row["weights"] = weights
    loaded = None
    try:
        loaded = load_vlm(model_id, weights=weights, dtype=dtype, device=device.type)
        applied = apply_plan(loaded.model, loaded.family, plan, device=device, compute_dtype=dtype)
        precision_map = audit_precision(loaded.model, loaded.family, plan)
        row.update(
            realized={
                k.removeprefix("realized_precision_"): v
                for k, v in precision_map.role_params().items()
                if k.startswith("realized_precision_")
            },
            params=applied.to_params(),
            quantize_time_s=applied.quantize_time_s,
            weights_mib_by_role=precision_map.footprint_mib_by_role(),
            weights_mib=precision_map.total_bytes() / 2**20,
        )
        try:
            verify_plan(plan, precision_map, dtype=dtype)
            row["verified"] = True
        except RuntimeError as error:
            row["verified"] = f"NOT REALIZED: {error}"
        row["peak_vram_load_mib"] = memory.read().torch_peak_allocated_mib
        row.update(measure_speed(loaded, args, images, dtype, device, memory))
        with tempfile.TemporaryDirectory(prefix="gpu-presets-") as tmp:
            saved = save_checkpoint(loaded.model, loaded.processor, Path(tmp))
        row.update(size_on_disk_mib=saved.weights_mib, size_reason=saved.reason, size_writer=saved.writer)
        row["status"] = "ok" if row["verified"] is True else "plan not realized"
    except Exception as error:  # noqa: BLE001 - one failing preset must not hide the others
        row["status"] = f"failed: {type(error).__name__}: {error}"
        row["traceback"] = traceback.format_exc(limit=6)
    finally:
        loaded = None  # free the model before the next preset loads
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def measure_speed(loaded, args, images, dtype, device, memory) -> dict[str, Any]:
    """Captions of a short batch, batch-1 latency, batch-N throughput, peak VRAM of inference."""
    # SmolVLM/Idefics3 image tiling: the processor's default on GPU, one tile on CPU (as the runner).
    splitting = None if device.type == "cuda" or not loaded.family.splits_images else False
    base = GenerationSettings(args.new_tokens, 0, splitting)
    requests = [single_image_request(image, PROMPT) for image in images]
    memory.reset()
    started = time.perf_counter()
    captions = generate(loaded.model, loaded.processor, requests[: args.caption_batch], base, dtype=dtype)
    caption_s = time.perf_counter() - started
    cost = CostSettings(
        warmup=1,
        iterations=args.iterations,
        seconds=args.seconds,
        new_tokens=max(2, args.new_tokens),
        batch_sizes=(1, args.batch_size),
    )
    timer = DeviceTimer(device)
    latency = measure_latency(loaded.model, loaded.processor, requests, cost, base, dtype, timer).metrics
    throughput = measure_throughput(
        loaded.model, loaded.processor, requests, cost, base, dtype, timer, batch_size=args.batch_size
    ).metrics
    reading = memory.read()
    return {
        "captions": captions.texts,
        "caption_batch_s": caption_s,
        "latency_ms_p50_bs1": latency["latency_ms_p50"],
        "ttft_ms_p50_bs1": latency["ttft_ms_p50"],
        "throughput_images_per_s": throughput[f"throughput_images_per_s_bs{args.batch_size}"],
        "throughput_tokens_per_s": throughput[f"throughput_tokens_per_s_bs{args.batch_size}"],
        "peak_vram_inference_mib": reading.torch_peak_allocated_mib,
        "peak_rss_mib": reading.process_peak_rss_mib,
    }


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """One table per model: realized precision per role, then the costs."""
    lines = []
    for model_id in dict.fromkeys(r["model"] for r in rows):
        weights = next(
            (r["weights"] for r in rows if r["model"] == model_id and "weights" in r), args.weights
        )
        lines += [
            f"### {model_id} ({args.device}, weights={weights}, {args.new_tokens} new tokens)",
            "",
            "| preset | " + " | ".join(ROLES) + " | verified | weights MiB | size on disk MiB | "
            f"peak VRAM load/infer MiB | latency p50 bs1 ms | images/s bs{args.batch_size} | status |",
            "|---" * (len(ROLES) + 8) + "|",
        ]
        for r in (r for r in rows if r["model"] == model_id):
            realized = r.get("realized", {})
            size = (
                _fmt(r.get("size_on_disk_mib"))
                if r.get("size_on_disk_mib") is not None
                else (f"n/a ({r['size_reason']})" if r.get("size_reason") else "")
            )
            cells = [
                r["preset"],
                *(realized.get(role, "") for role in ROLES),
                "yes" if r.get("verified") is True else ("NO" if "verified" in r else ""),
                _fmt(r.get("weights_mib")),
                size,
                f"{_fmt(r.get('peak_vram_load_mib'))} / {_fmt(r.get('peak_vram_inference_mib'))}",
                _fmt(r.get("latency_ms_p50_bs1")),
                _fmt(r.get("throughput_images_per_s")),
                r["status"].replace("|", "/")[:160],
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"
    return "" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = synthetic_images(max(4, args.caption_batch))
    rows = []
    for model_id in args.models:
        for preset in args.presets:
            started = time.perf_counter()
            row = check_preset(model_id, preset, args, images)
            row["wall_s"] = time.perf_counter() - started
            rows.append(row)
            print(f"[{model_id} {preset}] {row['status'][:200]} ({row['wall_s']:.1f} s)", flush=True)
            (out / "gpu_presets_check.json").write_text(
                json.dumps(
                    {
                        "device": _device_name(args.device),
                        "torch": torch.__version__,
                        "args": vars(args),
                        "rows": rows,
                    },
                    indent=2,
                    default=str,
                )
            )
    table = markdown(rows, args)
    (out / "gpu_presets_check.md").write_text(
        f"# Precision presets on {_device_name(args.device)}\n\n{table}"
    )
    print(table)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name(0) if device == "cuda" else "CPU"


if __name__ == "__main__":
    sys.exit(main())
