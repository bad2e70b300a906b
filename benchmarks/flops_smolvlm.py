"""FLOPs per image of the real SmolVLM-256M architecture: torch.utils.flop_counter against a hand count.

    PYTHONPATH=$PWD python benchmarks/flops_smolvlm.py [--model HuggingFaceTB/SmolVLM-256M-Instruct]
        [--image ../shared/coco_val2017_mini/val2017/000000000139.jpg] [--new-tokens 32]

Random weights of the bundled configuration (nothing downloaded), float32 on the CPU, one 512x512 image
with tiling off (one 512x512 frame), ``--new-tokens`` greedy tokens at batch 1. Prints:

1. the counter's FLOPs per image (`vlm_quant.measure.flops.count_generation_flops`: vision, prefill,
   decode), exactly as an evaluate run logs ``flops_*_per_image``;
2. a hand count from the configuration alone: every linear layer (2 x in x out per token it processes),
   the patch convolution, and the attention products (Q K^T and A V: 2 x 2 x n_query x n_key x width per
   layer; the counter counts the full square of a causal prefill, so the hand count does too);
3. their ratio, which must lie within 10% (exit code 1 otherwise), the linear layers' share alone beside it.

Writes ``$OUT/flops_smolvlm.json`` (default ./out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from PIL import Image

from vlm_quant.engines.generate import (
    GenerationSettings,
    generate_prepared,
    pad_token_id,
    prepare_inputs,
    single_image_request,
)
from vlm_quant.measure.flops import count_generation_flops
from vlm_quant.models.loading import load_vlm

PROMPT = "Provide a one-sentence caption for the provided image."


def hand_count(config, prompt_tokens: int, new_tokens: int) -> dict[str, float]:
    """FLOPs from the configuration: vision tower, connector, prefill and decode (FLOP per image)."""
    vision, text = config.vision_config, config.text_config
    side, patch = vision.image_size, vision.patch_size
    n = (side // patch) ** 2  # patches of the one 512x512 frame
    d, inner = vision.hidden_size, vision.intermediate_size
    vision_linear = vision.num_hidden_layers * 2 * n * (4 * d * d + 2 * d * inner)
    vision_attention = vision.num_hidden_layers * 2 * 2 * n * n * d
    patch_conv = 2 * n * (vision.num_channels * patch * patch) * d
    scale = config.scale_factor
    image_tokens = n // (scale * scale)
    connector = 2 * image_tokens * (d * scale * scale) * text.hidden_size
    h, layers = text.hidden_size, text.num_hidden_layers
    head_dim = getattr(text, "head_dim", None) or h // text.num_attention_heads
    q_width, kv_width = text.num_attention_heads * head_dim, text.num_key_value_heads * head_dim
    per_token_linear = 2 * layers * (2 * h * q_width + 2 * h * kv_width + 3 * h * text.intermediate_size)
    lm_head = 2 * h * text.vocab_size  # one position per step: generate() keeps the last logits only

    def attention(queries: int, keys: int) -> float:
        return layers * 2 * 2 * queries * keys * q_width

    prefill_linear = prompt_tokens * per_token_linear + lm_head
    prefill_attention = attention(prompt_tokens, prompt_tokens)
    decode_linear = (new_tokens - 1) * (per_token_linear + lm_head)
    decode_attention = sum(attention(1, prompt_tokens + step) for step in range(1, new_tokens))
    linear = vision_linear + patch_conv + connector + prefill_linear + decode_linear
    return {
        "vision": vision_linear + vision_attention + patch_conv,
        "prefill": vision_linear
        + vision_attention
        + patch_conv
        + connector
        + prefill_linear
        + prefill_attention,
        "decode": decode_linear + decode_attention,
        "linear_layers_only": linear,
        "image_tokens": image_tokens,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="HuggingFaceTB/SmolVLM-256M-Instruct")
    parser.add_argument("--image", default="../shared/coco_val2017_mini/val2017/000000000139.jpg")
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    loaded = load_vlm(args.model, weights="random", dtype=torch.float32, device="cpu")
    image = Image.open(args.image).convert("RGB").resize((512, 512))
    settings = GenerationSettings(
        max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, image_splitting=False
    )
    inputs = prepare_inputs(
        loaded.processor,
        [single_image_request(image, PROMPT)],
        device=torch.device("cpu"),
        dtype=torch.float32,
        settings=settings,
    )
    pad = pad_token_id(loaded.model, loaded.processor)
    counted = count_generation_flops(
        lambda processors: generate_prepared(
            loaded.model, inputs, settings, pad_token_id=pad, logits_processor=processors
        ),
        loaded.model,
        loaded.family.roles["vision"],
        args.new_tokens,
    )
    prompt_tokens = int(inputs["input_ids"].shape[1])
    hand = hand_count(loaded.model.config, prompt_tokens, args.new_tokens)
    hand_total = hand["prefill"] + hand["decode"]
    ratio = counted.total / hand_total
    result = {
        "model": args.model,
        "pixel_values": list(inputs["pixel_values"].shape),
        "prompt_tokens": prompt_tokens,
        "image_tokens": hand["image_tokens"],
        "new_tokens": args.new_tokens,
        "counter": {
            "vision": counted.vision,
            "prefill": counted.prefill,
            "decode": counted.decode,
            "total": counted.total,
        },
        "hand": {
            "vision": hand["vision"],
            "prefill": hand["prefill"],
            "decode": hand["decode"],
            "total": hand_total,
            "linear_layers_only": hand["linear_layers_only"],
        },
        "counter_over_hand": ratio,
        "linear_share_of_hand": hand["linear_layers_only"] / hand_total,
        "within_10_percent": abs(ratio - 1) <= 0.10,
    }
    print(
        f"pixel_values {result['pixel_values']}, prompt {prompt_tokens} tokens, {args.new_tokens} new tokens"
    )
    for part in ("vision", "prefill", "decode", "total"):
        print(
            f"{part:8s} counter {result['counter'][part] / 1e9:9.2f} GFLOP   "
            f"hand {result['hand'][part] / 1e9:9.2f} GFLOP"
        )
    print(
        f"linear layers alone (hand): {hand['linear_layers_only'] / 1e9:.2f} GFLOP "
        f"({result['linear_share_of_hand']:.0%} of the hand count)"
    )
    print(f"counter / hand = {ratio:.4f} ({'within' if result['within_10_percent'] else 'OUTSIDE'} 10%)")
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "flops_smolvlm.json").write_text(json.dumps(result, indent=2))
    return 0 if result["within_10_percent"] else 1


if __name__ == "__main__":
    sys.exit(main())
