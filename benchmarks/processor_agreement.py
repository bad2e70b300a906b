"""How far the torchvision image processors are from the PIL ones, on the same COCO images.

    python benchmarks/processor_agreement.py --data-dir ../shared/coco_val2017_mini

They are different resize implementations (PIL's filters vs torchvision's tensor kernels), so their
pixel tensors differ a little; this measures by how much instead of assuming it:

1. **Pixels**, for each bundled family's real processor (SmolVLM-256M, Qwen2-VL-2B, LLaVA-1.5): whether
   the shapes (tiles, patches) are equal, and the mean and max absolute difference of ``pixel_values``
   (normalised units: one 8-bit grey level is 2/255 = 0.0078 for SmolVLM's [-1, 1] range).
2. **Predictions** of one model (``--model``, random weights at its real size, float32 on CPU) on the
   same images with each backend: the share of identical greedy predictions.

Prints the table with the hardware and writes it under $OUT (default ./out) as processor_agreement.md/.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import torch

from vlm_quant.config import ExperimentConfig
from vlm_quant.engines.generate import GenerationSettings
from vlm_quant.engines.pipeline import image_backend
from vlm_quant.measure.environment import environment_record
from vlm_quant.models.loading import load_processor, load_vlm
from vlm_quant.models.processor_agreement import pixel_agreement
from vlm_quant.models.random_weights import materialize_random_checkpoint
from vlm_quant.run.quality_pass import run_quality_pass
from vlm_quant.tasks.captioning import CaptioningTask

FAMILIES = ("HuggingFaceTB/SmolVLM-256M-Instruct", "Qwen/Qwen2-VL-2B-Instruct", "llava-hf/llava-1.5-7b-hf")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", default="../shared/coco_val2017_mini", help="COCO folder (official layout)."
    )
    parser.add_argument("--n-images", type=int, default=32, help="Images drawn (seeded) for the pixel part.")
    parser.add_argument("--model", default="HuggingFaceTB/SmolVLM-256M-Instruct", help="Model of part 2.")
    parser.add_argument("--prediction-images", type=int, default=16, help="Images of part 2 (0 skips it).")
    parser.add_argument(
        "--new-tokens", type=int, default=12, help="Greedy new tokens of part 2 (EOS allowed)."
    )
    parser.add_argument("--batch-size", type=int, default=8)
    return parser.parse_args(argv)


def coco_data(data_dir: str, n: int):
    """``n`` seeded COCO images as an evaluate run's captioning task selects them (seed 0)."""
    return CaptioningTask().prepare(ExperimentConfig.from_mapping({"data_dir": data_dir, "n_samples": n}))


def prediction_agreement(args: argparse.Namespace) -> dict:
    """Share of identical greedy predictions of ``args.model`` with the PIL and torchvision processors."""
    loaded = load_vlm(args.model, weights="random", dtype=torch.float32, device="cpu")
    data = coco_data(args.data_dir, args.prediction_images)
    settings = GenerationSettings(args.new_tokens, 0, False)
    checkpoint = materialize_random_checkpoint(args.model, seed=0)
    predictions = {}
    for backend in ("pil", "torchvision"):
        processor = load_processor(str(checkpoint), image_backend=backend)
        result = run_quality_pass(
            loaded.model,
            processor,
            CaptioningTask(),
            data,
            batch_size=args.batch_size,
            max_image_side=1024,
            settings=settings,
            dtype=torch.float32,
            progress=False,
        )
        predictions[image_backend(processor)] = result.predictions
    pil, fast = predictions["pil"], predictions["torchvision"]
    same = sum(pil[i] == fast[i] for i in pil)
    return {"model": args.model, "images": len(pil), "identical": same, "agreement": same / len(pil)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data = coco_data(args.data_dir, args.n_images)
    images = [data.open_image(data.samples[i]).convert("RGB") for i in data.ids]
    pixels = [dataclasses.asdict(pixel_agreement(model_id, images)) for model_id in FAMILIES]
    predictions = prediction_agreement(args) if args.prediction_images else None
    env = environment_record()
    lines = [
        "# Image processors: torchvision vs PIL backend on the same COCO images",
        f"Hardware: CPU {env['cpu']} x{env['cpu_count']}; torch {env['packages']['torch']}; "
        f"torchvision {env['packages'].get('torchvision')}; transformers {env['packages']['transformers']}",
        "",
        "| processor of | images | same shape | mean abs diff | max abs diff |",
        "|---|---|---|---|---|",
    ]
    for row in pixels:
        lines.append(
            f"| {row['model']} | {row['images']} | {row['same_shape']} | {row['mean_abs_diff']:.2e} | "
            f"{row['max_abs_diff']:.4f} |"
        )
    if predictions:
        lines += [
            "",
            f"Greedy predictions of {predictions['model']} (random weights, {args.new_tokens} tokens): "
            f"{predictions['identical']} of {predictions['images']} identical "
            f"({predictions['agreement']:.0%})",
        ]
    text = "\n".join(lines)
    print(text)
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "processor_agreement.md").write_text(text + "\n")
    (out / "processor_agreement.json").write_text(
        json.dumps({"pixels": pixels, "predictions": predictions, "environment": env}, indent=2, default=str)
    )


if __name__ == "__main__":
    main()
