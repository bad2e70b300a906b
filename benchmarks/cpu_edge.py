"""CPU edge benchmark: the vision tower in torch vs ONNX Runtime, and every CPU preset end to end, in one
process on the same images, with fidelity to the float32 model.

    PYTHONPATH=$PWD python benchmarks/cpu_edge.py --weights random --data-dir ../shared/coco_val2017_mini

1. Vision tower, batch 1, the processor's real input (512x512 for SmolVLM without tiling): torch float32,
   ORT float32, ORT INT8 dynamic, ORT INT8 static (calibrated on images disjoint from the timed ones);
   median ms per image, ratio to torch float32, and the vision output's per-token cosine against torch
   float32 (mean over the timed images' tokens, as ``fidelity_vision_cosine_token_mean``).
2. End to end per preset (fresh model each, random or pretrained weights): TTFT and decode ms/token at
   batch 1 with a fixed output length (vlm-quant's cost pass), ratio to the float32 baseline (``fp16``
   runs in float32 on CPU), the fidelity metrics (``vlm_quant/quantize/fidelity.py``) over the timed
   images, KL and top-1 at every position of the float32 model's ``--new-tokens`` greedy continuation, and
   the weights' size as stored. ``gguf-*`` presets run on the llama.cpp engine (the GGUF files made from
   the same checkpoint by llama.cpp's converter and quantizer, cached as in a run; ``--threads`` = torch's
   threads; libmtmd preprocesses the image itself: with tiling off it makes an overview and one tile, 128
   image tokens where the processor makes 64, so its TTFT covers twice the image tokens); their fidelity
   is llama.cpp's next-token distributions against the float32 torch model (no role cosines).

Prints the CPU model and its flags (AVX2, AVX512F, AVX512-VNNI, AVX512-BF16, AMX) and the load average
before and after: on a shared machine absolute times move with the load; ratios taken in the same
process at nearly the same moment are the result to quote. Writes ``$OUT/cpu_edge.json`` (default ./out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from vlm_quant.engines.generate import GenerationSettings, prepare_inputs, single_image_request
from vlm_quant.engines.llama_cpp import LlamaCppEngine
from vlm_quant.measure.memory import weights_footprint_mib
from vlm_quant.measure.timing import DeviceTimer
from vlm_quant.models.loading import load_vlm
from vlm_quant.quantize import fidelity, gguf_files, onnx_export, onnxruntime_backend
from vlm_quant.quantize.backends import apply_plan
from vlm_quant.quantize.presets import PRECISIONS, resolve_plan
from vlm_quant.run.cost_pass import CostSettings, measure_latency
from vlm_quant.run.llama_cpp_passes import EnginePrompts, time_generation
from vlm_quant.run.llama_cpp_run import tile_tokens
from vlm_quant.tasks.captioning_data import downscale, read_local_coco, select_ids

PROMPT = "Provide a one-sentence caption for the provided image."
CPU = torch.device("cpu")
FLAGS = {
    "AVX2": "avx2",
    "AVX512F": "avx512f",
    "AVX512-VNNI": "avx512_vnni",
    "AVX512-BF16": "avx512_bf16",
    "AMX": "amx_tile",
}
DEFAULT_PRESETS = "fp16;int8-ao;int8-vision-ort;cpu-fast;gguf-q8_0;gguf-q4_k_m"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="HuggingFaceTB/SmolVLM-256M-Instruct")
    parser.add_argument("--weights", default="random", choices=("pretrained", "random"))
    parser.add_argument("--data-dir", default="../shared/coco_val2017_mini")
    parser.add_argument("--n-images", type=int, default=2, help="Timed images (seeded draw).")
    parser.add_argument(
        "--n-calibration", type=int, default=2, help="ORT static calibration images (disjoint)."
    )
    parser.add_argument("--iterations", type=int, default=2, help="Timed iterations per measurement.")
    parser.add_argument("--new-tokens", type=int, default=8, help="Fixed output length of the decode timing.")
    parser.add_argument(
        "--presets", default=DEFAULT_PRESETS, help="Comma-separated presets (first: baseline)."
    )
    parser.add_argument("--skip-vision", action="store_true", help="Only the end-to-end part.")
    parser.add_argument(
        "--image-splitting",
        default="off",
        choices=("off", "on"),
        help="SmolVLM tiling for every preset: off (CPU runs' default: torch 64 image tokens, llama.cpp "
        "overview + one tile, 128) or on (both 832 for a 640x480 image: the same image tokens).",
    )
    return parser.parse_args()


def cpu_record() -> dict:
    """CPU model name, the flags that decide int8/bf16 speed, cores and load average."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?"
    )
    flags = set(
        next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "flags": {name: flag in flags for name, flag in FLAGS.items()},
        "loadavg": os.getloadavg(),
    }


def images(data_dir: str, n: int, n_calibration: int) -> tuple[list, list]:
    """(timed images, calibration images): one seeded draw, split so the two never share an image."""
    split = read_local_coco(data_dir)
    ids = select_ids(list(split.samples), min(n + n_calibration, len(split.samples)), seed=0)
    opened = [downscale(split.open_image(split.samples[i]), 1024) for i in ids]
    return opened[:n], opened[n:]


SPLITTING = {"off": False, "on": True}


def model_inputs(loaded, image, splitting: bool = False) -> dict:
    request = single_image_request(image, PROMPT)
    return prepare_inputs(
        loaded.processor,
        [request],
        device=CPU,
        dtype=torch.float32,
        settings=GenerationSettings(1, image_splitting=splitting),
    )


def median_ms(fn, iterations: int) -> float:
    fn()  # warm-up (first call allocates, ORT plans memory)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def vision_part(args, timed, calibration) -> list[dict]:
    loaded = load_vlm(args.model, weights=args.weights, dtype=torch.float32, device="cpu")
    path = loaded.family.roles["vision"][0]
    vision = loaded.model.get_submodule(path)
    feeds = [onnx_export.capture_vision_inputs(loaded.model, path, model_inputs(loaded, im)) for im in timed]
    calib = tuple(
        onnx_export.capture_vision_inputs(loaded.model, path, model_inputs(loaded, im)) for im in calibration
    )
    rows_in = [f.per_image()[0] for f in feeds]

    def torch_run():
        with torch.inference_mode():
            return [vision(**row.tensors, **row.options).last_hidden_state for row in rows_in]

    reference = [t.reshape(-1, t.shape[-1]) for t in torch_run()]
    results = [
        {
            "vision": "torch fp32",
            "ms_per_image": median_ms(torch_run, args.iterations) / len(rows_in),
            "fidelity_vision_cosine_token_mean": 1.0,
        }
    ]
    settings = onnxruntime_backend.OrtSettings(
        feeds[0],
        calib,
        tuple(range(len(calib))),
        "minmax",
        "cpu",
        {"model": args.model, "weights": args.weights, "benchmark": "cpu_edge"},
    )
    for precision in ("ort-fp32", "ort-int8", "ort-int8-static"):
        # The float32 export is made once (first precision) and cached; later swaps reuse it, so one
        # model serves all three (``vision`` above still holds the torch tower, put back before each).
        onnxruntime_backend._swap(loaded.model, path, vision)
        onnxruntime_backend.apply(loaded.model, path, precision, settings, CPU, torch.float32)
        ort_module = loaded.model.get_submodule(path)

        def ort_run(module=ort_module):
            return [module(**row.tensors, **row.options).last_hidden_state for row in rows_in]

        outs = [t.reshape(-1, t.shape[-1]) for t in ort_run()]
        cos = float(torch.cat([fidelity.token_cosines(a, b) for a, b in zip(reference, outs)]).mean())
        results.append(
            {
                "vision": precision,
                "ms_per_image": median_ms(ort_run, args.iterations) / len(rows_in),
                "fidelity_vision_cosine_token_mean": cos,
                "onnx_mib": ort_module.onnx_path.stat().st_size / 2**20,
            }
        )
    base = results[0]["ms_per_image"]
    for row in results:
        row["speedup_vs_torch_fp32"] = base / row["ms_per_image"]
    return results


def preset_part(args, timed, calibration) -> list[dict]:
    cost = CostSettings(
        warmup=1, iterations=args.iterations, seconds=0.0, new_tokens=args.new_tokens, batch_sizes=(1,)
    )
    splitting = SPLITTING[args.image_splitting]
    base = GenerationSettings(args.new_tokens, image_splitting=splitting)
    results = []
    for preset in [p for p in args.presets.split(";") if p]:
        name, _, override = preset.partition(":")  # "fp16:vision=ort-int8,language=w8a8": a candidate plan
        plan = resolve_plan(name, override)
        loaded = load_vlm(args.model, weights=args.weights, dtype=torch.float32, device="cpu")
        inputs = [model_inputs(loaded, im, splitting) for im in timed]
        sequences = [
            fidelity.continue_greedily(loaded.model, loaded.processor, x, args.new_tokens) for x in inputs
        ]
        reference = [fidelity.capture(loaded.model, loaded.family, s) for s in sequences]
        if plan.engine == "llama.cpp":
            results.append(llama_cpp_row(preset, plan, loaded, timed, sequences, reference, cost, splitting))
            print(
                f"  {preset}: ttft {results[-1]['ttft_ms_p50']:.0f} ms, "
                f"decode {results[-1]['decode_ms_per_token_p50']:.1f} ms/token",
                flush=True,
            )
            continue
        ort = None
        if any(PRECISIONS[p].backend == "onnxruntime" for p in plan.roles.values()):
            path = loaded.family.roles["vision"][0]
            ort = onnxruntime_backend.OrtSettings(
                onnx_export.capture_vision_inputs(loaded.model, path, inputs[0]),
                tuple(
                    onnx_export.capture_vision_inputs(loaded.model, path, model_inputs(loaded, im, splitting))
                    for im in calibration
                ),
                tuple(range(len(calibration))),
                "minmax",
                "cpu",
                {"model": args.model, "weights": args.weights, "benchmark": "cpu_edge"},
            )
        apply_plan(loaded.model, loaded.family, plan, device=CPU, compute_dtype=torch.float32, ort=ort)
        fid = (
            fidelity.compare(reference, [fidelity.capture(loaded.model, loaded.family, s) for s in sequences])
            if plan.quantized_roles
            else {}
        )
        requests = [single_image_request(im, PROMPT) for im in timed]
        latency = measure_latency(
            loaded.model, loaded.processor, requests, cost, base, torch.float32, DeviceTimer(CPU)
        ).metrics
        results.append(
            {
                "preset": preset,
                "engine": "torch",
                "image_tokens": int((inputs[0]["input_ids"] == loaded.processor.image_token_id).sum()),
                "ttft_ms_p50": latency["ttft_ms_p50"],
                "decode_ms_per_token_p50": latency["decode_ms_per_token_p50"],
                "weights_mib": weights_footprint_mib(loaded.model),
                **fid,
                "loadavg_1min": os.getloadavg()[0],
            }
        )
        print(
            f"  {preset}: ttft {latency['ttft_ms_p50']:.0f} ms, "
            f"decode {latency['decode_ms_per_token_p50']:.1f} ms/token",
            flush=True,
        )
        del loaded
    for row in results:
        row["ttft_speedup"] = _ratio(results[0]["ttft_ms_p50"], row["ttft_ms_p50"])
        # No ratio where a value is missing or zero, never inf.
        row["decode_speedup"] = _ratio(results[0]["decode_ms_per_token_p50"], row["decode_ms_per_token_p50"])
    return results


def llama_cpp_row(preset, plan, loaded, timed, sequences, reference, cost, splitting) -> dict:
    """A gguf-* preset on the llama.cpp engine: the run's GGUF files, cost-pass timings of the same calls
    (``time_generation``), and fidelity from llama.cpp's logits on the same teacher-forced continuations."""
    files = gguf_files.build_files(Path(loaded.source_dir), plan.roles["language"], plan.roles["vision"])
    found = gguf_files.audit(files)
    gguf_files.verify(plan.roles, found)
    engine = LlamaCppEngine(
        files.text,
        files.mmproj,
        threads=torch.get_num_threads(),
        image_max_tokens=0 if splitting else tile_tokens(loaded.processor),  # as a run does (llama_cpp_run)
    )
    try:
        prompts = EnginePrompts(engine, loaded.processor)
        requests = [single_image_request(im, PROMPT) for im in timed]
        outputs = []
        for request, sequence in zip(requests, sequences):
            log_probs = engine.continuation_log_probs(
                prompts.prompt(request), request.images[0], sequence.continuation
            )
            outputs.append(fidelity.Outputs({}, torch.from_numpy(log_probs)))
        fid = fidelity.compare([fidelity.Outputs({}, r.log_probs) for r in reference], outputs)
        for _ in range(cost.warmup):
            for request in requests:
                time_generation(prompts, request, cost.new_tokens, time.perf_counter)
        timed_calls = [
            time_generation(prompts, requests[i % len(requests)], cost.new_tokens, time.perf_counter)
            for i in range(cost.iterations * len(requests))
        ]
        image_tokens = engine.image_tokens(prompts.prompt(requests[0]), timed[0])
    finally:
        engine.close()
    return {
        "preset": preset,
        "engine": "llama.cpp",
        "ttft_ms_p50": statistics.median(t.ttft_s * 1000 for t in timed_calls),
        "decode_ms_per_token_p50": statistics.median(t.decode_s_per_token * 1000 for t in timed_calls),
        "llama_cpp_decode_ms_per_token_p50": statistics.median(
            t.llama_decode_ms_per_token for t in timed_calls if t.llama_decode_ms_per_token is not None
        ),
        "weights_mib": sum(t.bytes for t in found.values()) / 2**20,
        "gguf_files_mib": files.size_mib(),
        "image_tokens": image_tokens,
        "realized": {role: types.realized() for role, types in found.items()},
        **fid,
        "loadavg_1min": os.getloadavg()[0],
    }


def _ratio(base: float, value: float) -> float | None:
    return base / value if value > 0 and base > 0 else None


def print_fastest_against_llama_cpp(presets: list[dict]) -> None:
    """The question the issue asks: our fastest in-process (torch/ORT) preset against llama.cpp Q8_0."""
    q8 = next((r for r in presets if r["preset"] == "gguf-q8_0"), None)
    ours = [r for r in presets if r["engine"] == "torch"]
    if q8 is None or not ours:
        return
    for metric, label in (("ttft_ms_p50", "TTFT"), ("decode_ms_per_token_p50", "decode ms/token")):
        best = min(ours, key=lambda r: r[metric])
        print(
            f"{label}: fastest in-process preset {best['preset']} / llama.cpp gguf-q8_0 = "
            f"{best[metric] / q8[metric]:.2f}x the time"
        )


def fmt(value, spec=".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def main() -> None:
    args = parse_args()
    before = cpu_record()
    print(
        f"CPU: {before['cpu']} ({before['cores']} cores, torch threads {before['torch_threads']}); flags: "
        + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in before["flags"].items())
    )
    print(f"load average before: {before['loadavg']}")
    timed, calibration = images(args.data_dir, args.n_images, args.n_calibration)
    vision = [] if args.skip_vision else vision_part(args, timed, calibration)
    if vision:
        print(
            "\n| vision tower | ms/image | speed-up vs torch fp32 | vision cos (token mean) | ONNX MiB |"
            "\n|---|---|---|---|---|"
        )
        for r in vision:
            print(
                f"| {r['vision']} | {r['ms_per_image']:.0f} | {r['speedup_vs_torch_fp32']:.2f}x | "
                f"{r['fidelity_vision_cosine_token_mean']:.4f} | {fmt(r.get('onnx_mib'), '.0f')} |"
            )
    print("\nend to end (batch 1, fixed output length):", flush=True)
    presets = preset_part(args, timed, calibration)
    print(
        "\n| preset | engine | image tokens | TTFT ms | TTFT speed-up | decode ms/token | decode speed-up "
        "| weights MiB | vision cos (token mean) | projector cos (token mean) "
        "| KL (nats/token) | top-1 (tokens) | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in presets:
        print(
            f"| {r['preset']} | {r['engine']} | {r['image_tokens']} | {r['ttft_ms_p50']:.0f} "
            f"| {fmt(r['ttft_speedup'], '.2f')}x "
            f"| {r['decode_ms_per_token_p50']:.1f} "
            f"| {fmt(r['decode_speedup'], '.2f')}x | {r['weights_mib']:.0f} "
            f"| {fmt(r.get('fidelity_vision_cosine_token_mean'), '.4f')} "
            f"| {fmt(r.get('fidelity_projector_cosine_token_mean'), '.4f')} "
            f"| {fmt(r.get('fidelity_logits_kl_nats_token_mean'), '.3g')} "
            f"| {fmt(r.get('fidelity_top1_agreement_token_mean'), '.2f')} | {r['loadavg_1min']:.1f} |"
        )
    print_fastest_against_llama_cpp(presets)
    after = cpu_record()
    print(f"\nload average after: {after['loadavg']}")
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu_edge.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "cpu_before": before,
                "cpu_after": after,
                "vision": vision,
                "presets": presets,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
