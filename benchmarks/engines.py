"""Side-by-side benchmark of the generation engines, in one process, on the same inputs.

    python benchmarks/engines.py --model HuggingFaceTB/SmolVLM-256M-Instruct --weights random \
        --quant fp16 --data-dir ../shared/coco_val2017_mini --batch-size 32 --new-tokens 32

Three ways to caption the same images with the same fixed output length (min == max new tokens):

- ``model-card``: what a model card shows: processor + ``generate`` one image at a time, no batching;
- ``eager``: vlm-quant's eager engine, batched with left padding;
- ``compiled``: vlm-quant's compiled engine (static KV cache + torch.compile / CUDA graphs on GPU).

The model-card loop times what its user waits for (the processor included); the two engines are
timed on inputs prepared beforehand, on the device (the input pipeline's share is measured on its
own by benchmarks/pipeline.py), so their ratio is the model's work alone.

Prints (and writes under $OUT, default ./out) a table of images/s at the batch size, batch-1 latency
(ms per image-prompt) and J/image (NVML energy counter; n/a without one), each with its ratio to the
eager engine, plus the hardware. Ratios are what to quote: absolute numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import torch

from vlm_quant.engines.generate import (
    GenerationSettings,
    decode_new_ids,
    generate,
    generate_prepared,
    pad_token_id,
    prepare_inputs,
    single_image_request,
)
from vlm_quant.measure.energy import EnergyMeter
from vlm_quant.measure.environment import environment_record
from vlm_quant.measure.nvml import open_gpu
from vlm_quant.measure.stats import summarize
from vlm_quant.measure.timing import DeviceTimer
from vlm_quant.models.loading import load_vlm
from vlm_quant.quantize.presets import resolve_plan
from vlm_quant.run.runner import compute_dtype
from vlm_quant.tasks.captioning_data import downscale, read_local_coco, select_ids

PROMPT = "Provide a one-sentence caption for the provided image."


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="HuggingFaceTB/SmolVLM-256M-Instruct", help="Hub id or local dir.")
    parser.add_argument("--weights", default="random", choices=("pretrained", "random"))
    parser.add_argument("--quant", default="fp16", help="Precision preset (see the README's table).")
    parser.add_argument(
        "--data-dir", default="../shared/coco_val2017_mini", help="COCO folder (official layout)."
    )
    parser.add_argument("--n-images", type=int, default=64, help="Images drawn (seeded) from the split.")
    parser.add_argument(
        "--batch-size", type=int, default=32, help="Batch size of the throughput measurement."
    )
    parser.add_argument("--new-tokens", type=int, default=32, help="Fixed output length (min == max).")
    parser.add_argument("--latency-iterations", type=int, default=10, help="Timed batch-1 generations.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed generations before each measurement.")
    parser.add_argument("--engines", default="model-card,eager,compiled", help="Comma-separated subset.")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--image-splitting", default="auto", choices=("auto", "on", "off"))
    return parser.parse_args()


def load_images(data_dir: str, n: int) -> list:
    split = read_local_coco(data_dir)
    ids = select_ids(list(split.samples), min(n, len(split.samples)), seed=0)
    return [downscale(split.open_image(split.samples[i]), 1024) for i in ids]


def time_batches(
    run, batches, timer: DeviceTimer, meter: EnergyMeter, name: str
) -> tuple[float, float | None]:
    """Seconds and joules of running ``run`` over every batch (one energy window)."""
    meter.begin_window(name)
    start = time.perf_counter()
    for batch in batches:
        run(batch)
    timer.synchronize()
    seconds = time.perf_counter() - start
    return seconds, meter.end_window(name).energy_j


def main() -> None:
    args = parse_args()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    plan = resolve_plan(args.quant)
    dtype, dtype_note = compute_dtype(plan, device)
    loaded = load_vlm(args.model, weights=args.weights, dtype=dtype, device=device.type)
    if plan.quantized_roles:
        from vlm_quant.quantize.backends import apply_plan

        apply_plan(loaded.model, loaded.family, plan, device=device, compute_dtype=dtype)
    splitting = {"auto": None if device.type == "cuda" else False, "on": True, "off": False}[
        args.image_splitting
    ]
    images = load_images(args.data_dir, args.n_images)
    requests = [single_image_request(image, PROMPT) for image in images]
    timer, gpu = DeviceTimer(device), open_gpu(0 if device.type == "cuda" else None)
    meter = EnergyMeter(gpu, synchronize=timer.synchronize)
    base = GenerationSettings(args.new_tokens, args.new_tokens, splitting)
    pad = pad_token_id(loaded.model, loaded.processor)
    results = {}
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        settings = dataclasses.replace(base, engine="compiled" if engine == "compiled" else "eager")
        batch_size = 1 if engine == "model-card" else args.batch_size

        indices = range(len(requests))
        batches = [tuple(indices[i : i + batch_size]) for i in range(0, len(requests), batch_size)]
        singles = [(i,) for i in (list(indices) * args.latency_iterations)[: args.latency_iterations]]
        prepared = {
            rows: prepare_inputs(
                loaded.processor, [requests[i] for i in rows], device=device, dtype=dtype, settings=settings
            )
            for rows in {*batches, *singles, *[(i,) for i in indices[: args.warmup]]}
            if engine != "model-card"
        }

        def run(rows: tuple[int, ...], settings=settings, engine=engine, prepared=prepared) -> None:
            if engine == "model-card":  # what a model card does: the processor inside the loop
                generate(loaded.model, loaded.processor, [requests[i] for i in rows], settings, dtype=dtype)
                return
            # the engines themselves: inputs prepared before the clock starts (the input pipeline's
            # job, measured by benchmarks/pipeline.py), so this compares the model's work alone
            new_ids = generate_prepared(loaded.model, prepared[rows], settings, pad_token_id=pad)
            decode_new_ids(loaded.model, loaded.processor, new_ids)

        for rows in [batches[0]] * args.warmup:  # compile / cudnn autotune / allocator warm-up
            run(rows)
        for i in indices[: args.warmup]:
            run((i,))
        latencies = []
        for rows in singles:
            with timer.span() as span:
                run(rows)
            latencies.append(span.elapsed_s * 1000)
        seconds, joules = time_batches(run, batches, timer, meter, engine)
        results[engine] = {
            "batch_size": batch_size,
            "images_per_s": len(requests) / seconds,
            "latency_ms_p50": summarize(latencies).p50,
            "latency_ms_mean": summarize(latencies).mean,
            "energy_j_per_image": None if joules is None else joules / len(requests),
        }
        print(f"{engine}: {results[engine]}", flush=True)
    write_report(args, results, device, dtype_note)


def write_report(args: argparse.Namespace, results: dict, device: torch.device, dtype_note: str) -> None:
    env = environment_record()
    hardware = env["gpus"][0]["name"] if env["gpus"] else f"CPU {env['cpu']} x{env['cpu_count']}"
    ref = results.get("eager")
    lines = [
        f"# Engines: {args.model} ({args.weights} weights), {args.quant}, {args.new_tokens} new tokens",
        f"Hardware: {hardware}; driver {env['driver']}; CUDA {env['cuda']}; "
        f"torch {env['packages']['torch']}; "
        f"transformers {env['packages']['transformers']}; {dtype_note}",
        "",
        "| engine | batch | images/s | x eager | batch-1 latency ms (p50) | eager / this "
        "| J/image | x eager |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for engine, r in results.items():
        speed = f"{r['images_per_s'] / ref['images_per_s']:.2f}" if ref else "n/a"
        latency = f"{ref['latency_ms_p50'] / r['latency_ms_p50']:.2f}" if ref else "n/a"
        joules = "n/a" if r["energy_j_per_image"] is None else f"{r['energy_j_per_image']:.3f}"
        joule_ratio = (
            "n/a"
            if not ref or r["energy_j_per_image"] is None or ref["energy_j_per_image"] is None
            else f"{r['energy_j_per_image'] / ref['energy_j_per_image']:.2f}"
        )
        lines.append(
            f"| {engine} | {r['batch_size']} | {r['images_per_s']:.2f} | {speed} | "
            f"{r['latency_ms_p50']:.1f} | {latency} | {joules} | {joule_ratio} |"
        )
    text = "\n".join(lines)
    print(text)
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    stem = f"engines-{Path(args.model).name}-{args.quant}"
    (out / f"{stem}.md").write_text(text + "\n")
    (out / f"{stem}.json").write_text(
        json.dumps({"args": vars(args), "results": results, "environment": env}, indent=2, default=str)
    )


if __name__ == "__main__":
    main()
