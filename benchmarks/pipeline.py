"""Side-by-side benchmark of the whole quality pass's input side, in one process, on the same images.

    python benchmarks/pipeline.py --data-dir ../shared/coco_val2017_mini

Two parts, each run in alternation (A, B, A, B, ...) so a busy machine slows both alike; the median of
the repeats is reported:

1. **Preprocessing alone**, for each image-processor backend (PIL; torchvision when installed): the
   input pipeline (`vlm_quant.engines.pipeline`: open, downscale, chat template, processor, cast) over
   the images at the batch size, sequential (``num_workers=0``, in this process) vs pipelined
   (``--workers`` DataLoader worker processes). Images/s and the pipelined / sequential ratio.
2. **A quality pass** (`vlm_quant.run.quality_pass.run_quality_pass`) of the model at the batch size,
   ``num_workers=0`` vs pipelined, with a fixed output length (min == max new tokens): images/s, the
   share of the wall time the model waited for inputs (``quality_pass_wait_s`` / wall), and
   ``harness_overhead_fraction``; the predictions of the two must be identical.

Prints the tables with the hardware, and writes them under $OUT (default ./out) as pipeline.md/.json.
Absolute numbers depend on the machine; quote the ratios.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time
from pathlib import Path

import torch

from vlm_quant.config import ExperimentConfig
from vlm_quant.engines.generate import GenerationSettings
from vlm_quant.engines.pipeline import CollateRequests, image_backend, prepared_batches
from vlm_quant.measure.environment import environment_record
from vlm_quant.models.loading import load_processor, load_vlm
from vlm_quant.models.random_weights import materialize_random_checkpoint
from vlm_quant.run.quality_pass import load_image, run_quality_pass
from vlm_quant.tasks.base import TaskData
from vlm_quant.tasks.captioning import CaptioningTask


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="HuggingFaceTB/SmolVLM-256M-Instruct", help="A bundled model id.")
    parser.add_argument(
        "--data-dir", default="../shared/coco_val2017_mini", help="COCO folder (official layout)."
    )
    parser.add_argument("--n-images", type=int, default=48, help="Images drawn (seeded) from the split.")
    parser.add_argument("--batch-size", type=int, default=8, help="Images per batch (both parts).")
    parser.add_argument("--workers", type=int, default=2, help="Worker processes of the pipelined runs.")
    parser.add_argument(
        "--repeats", type=int, default=3, help="Alternating repeats per measurement (median)."
    )
    parser.add_argument("--image-splitting", default="off", choices=("on", "off"), help="SmolVLM tiling.")
    parser.add_argument(
        "--max-image-side", type=int, default=1024, help="Images are downscaled to this side."
    )
    parser.add_argument("--new-tokens", type=int, default=8, help="Fixed output length of part 2.")
    parser.add_argument("--quality-images", type=int, default=24, help="Images of part 2 (0 skips it).")
    parser.add_argument("--quality-repeats", type=int, default=2, help="Alternating repeats of part 2.")
    return parser.parse_args(argv)


def coco_data(data_dir: str, n: int) -> TaskData:
    """``n`` seeded COCO images as the captioning task prepares them for an evaluate run (seed 0)."""
    cfg = ExperimentConfig.from_mapping({"data_dir": data_dir, "n_samples": n, "seed": 0})
    return CaptioningTask().prepare(cfg)


def preprocess_all(processor, data: TaskData, args, settings: GenerationSettings, workers: int) -> float:
    """Seconds to prepare every batch of ``data`` with ``workers`` workers (0: in this process)."""
    task = CaptioningTask()
    collate = CollateRequests(processor, functools.partial(task.request, data), settings, torch.float32)
    samples = [data.samples[i] for i in data.ids]
    load = functools.partial(load_image, data, max_side=args.max_image_side)
    start = time.perf_counter()
    for _ in prepared_batches(
        samples, args.batch_size, load=load, collate=collate, num_workers=workers, pin_memory=False
    ):
        pass
    return time.perf_counter() - start


def alternate(measure: dict, repeats: int) -> dict[str, list]:
    """Every measurement of ``measure`` (name -> callable) once per round, ``repeats`` rounds."""
    results: dict[str, list] = {name: [] for name in measure}
    for _ in range(repeats):
        for name, run in measure.items():
            results[name].append(run())
    return results


def preprocessing_part(args, checkpoint: Path, settings: GenerationSettings) -> list[dict]:
    data = coco_data(args.data_dir, args.n_images)
    rows = []
    for backend in ("pil", "torchvision"):
        try:
            processor = load_processor(str(checkpoint), image_backend=backend)
        except Exception as error:  # noqa: BLE001 - e.g. torchvision missing: say so in the table
            rows.append({"backend": backend, "skipped": f"{type(error).__name__}: {error}"})
            continue
        runs = alternate(
            {
                "sequential": lambda p=processor: preprocess_all(p, data, args, settings, 0),
                "pipelined": lambda p=processor: preprocess_all(p, data, args, settings, args.workers),
            },
            args.repeats,
        )
        sequential, pipelined = (statistics.median(runs[k]) for k in ("sequential", "pipelined"))
        rows.append(
            {
                "backend": image_backend(processor),
                "images": len(data.ids),
                "sequential_images_per_s": len(data.ids) / sequential,
                "pipelined_images_per_s": len(data.ids) / pipelined,
                "speedup": sequential / pipelined,
                "seconds": runs,
            }
        )
        print(f"preprocessing {rows[-1]}", flush=True)
    return rows


def quality_part(args, settings: GenerationSettings) -> list[dict]:
    loaded = load_vlm(args.model, weights="random", dtype=torch.float32, device="cpu")
    data = coco_data(args.data_dir, args.quality_images)
    task = CaptioningTask()
    fixed = GenerationSettings(args.new_tokens, args.new_tokens, settings.image_splitting)

    def one_pass(workers: int):
        return run_quality_pass(
            loaded.model,
            loaded.processor,
            task,
            data,
            batch_size=args.batch_size,
            max_image_side=args.max_image_side,
            settings=fixed,
            dtype=torch.float32,
            progress=False,
            num_workers=workers,
        )

    one_pass(0)  # warm-up: first-call allocations and kernel selection must not bill the first config
    runs = alternate(
        {"in-process": lambda: one_pass(0), "pipelined": lambda: one_pass(args.workers)}, args.quality_repeats
    )
    if runs["in-process"][0].predictions != runs["pipelined"][0].predictions:
        raise SystemExit("the pipelined quality pass predicted differently from the in-process one")
    rows = []
    for name, results in runs.items():
        best = sorted(results, key=lambda r: r.attempt_s)[len(results) // 2]  # the median pass
        rows.append(
            {
                "pipeline": name,
                "workers": 0 if name == "in-process" else args.workers,
                "images": len(best.predictions),
                "images_per_s": len(best.predictions) / best.attempt_s,
                "wait_fraction": best.wait_s / best.attempt_s,
                "harness_overhead_fraction": best.time_split_metrics()["harness_overhead_fraction"],
                "image_processor_backend": image_backend(loaded.processor),
                "seconds": [r.attempt_s for r in results],
            }
        )
        print(f"quality pass {rows[-1]}", flush=True)
    return rows


def report(args, preprocessing: list[dict], quality: list[dict]) -> str:
    env = environment_record()
    hardware = env["gpus"][0]["name"] if env["gpus"] else f"CPU {env['cpu']} x{env['cpu_count']} (no GPU)"
    lines = [
        f"# Input pipeline: {args.model}, batch {args.batch_size}, tiling {args.image_splitting}, "
        f"{args.workers} workers",
        f"Hardware: {hardware}; torch {env['packages']['torch']}; "
        f"torchvision {env['packages'].get('torchvision') or 'not installed'}; "
        f"transformers {env['packages']['transformers']}",
        "",
        "## Preprocessing alone (open, downscale, chat template, processor)",
        "| backend | images | sequential images/s | pipelined images/s | pipelined / sequential |",
        "|---|---|---|---|---|",
    ]
    for row in preprocessing:
        if "skipped" in row:
            lines.append(f"| {row['backend']} | n/a ({row['skipped'][:80]}) | | | |")
            continue
        lines.append(
            f"| {row['backend']} | {row['images']} | {row['sequential_images_per_s']:.1f} | "
            f"{row['pipelined_images_per_s']:.1f} | {row['speedup']:.2f}x |"
        )
    if quality:
        reference = quality[0]["images_per_s"]
        lines += [
            "",
            f"## Quality pass ({args.new_tokens} new tokens, random weights, float32 on CPU, "
            f"{quality[0]['image_processor_backend']} processor)",
            "| pipeline | workers | images | images/s | x in-process | wait fraction "
            "| harness_overhead_fraction |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in quality:
            lines.append(
                f"| {row['pipeline']} | {row['workers']} | {row['images']} | {row['images_per_s']:.2f} | "
                f"{row['images_per_s'] / reference:.2f} | {row['wait_fraction']:.3f} | "
                f"{row['harness_overhead_fraction']:.3f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    checkpoint = materialize_random_checkpoint(args.model, seed=0)  # its processor files are the real ones
    settings = GenerationSettings(args.new_tokens, args.new_tokens, args.image_splitting == "on")
    preprocessing = preprocessing_part(args, checkpoint, settings)
    quality = quality_part(args, settings) if args.quality_images else []
    text = report(args, preprocessing, quality)
    print(text)
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.md").write_text(text + "\n")
    (out / "pipeline.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "preprocessing": preprocessing,
                "quality_pass": quality,
                "environment": environment_record(),
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
