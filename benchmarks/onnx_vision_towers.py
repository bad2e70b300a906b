"""The vision tower of each bundled real-size architecture (random weights) in torch float32 vs ONNX
Runtime float32 and INT8 dynamic, on this CPU, at the real processor input of one COCO image.

    PYTHONPATH=$PWD python benchmarks/onnx_vision_towers.py --image IMAGE.jpg [--only Qwen] [--repeats 3]

Per bundled config (smallest tower first): only the tower is built (its class from the config's vision
part, random init, float32: no language model in memory); the image processor of the bundled config
makes the input, and the model's own ``get_image_features`` (on the meta device, with the real tower put
in) calls the tower, so the captured inputs are the ones generation feeds it. The tower is exported
(``onnx_export.export_vision``: dynamo, else TorchScript with ``grid_thw`` baked), quantized with
``quantize_dynamic`` (int8 weights per channel), and timed: torch float32, ORT float32, ORT INT8, each on
the same input in the same process, ``--repeats`` runs after one warm-up, median seconds and ratio to
torch. Images a processor tiles (SmolVLM: 13 tiles of 512 px) run tile by tile in ORT (batch-1 graphs)
and as one batch in torch, as in a run. Cosine: per output token, ORT INT8 (and float32) against torch
float32, mean over the tokens of the tower's first output (``last_hidden_state``) and the lowest over
all its outputs. Writes ``$OUT/onnx_vision_towers.json`` (default ./out) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vlm_quant.models.meta_model import build_meta_model
from vlm_quant.models.random_weights import bundled_config_dir, bundled_model_ids
from vlm_quant.quantize import onnx_export

ORDER = ("SmolVLM-256M", "llava-1.5-7b", "Qwen2-VL-2B", "Qwen2.5-VL-3B")  # smallest tower first


def tower_and_inputs(model_id: str, image_path: Path):
    """(random float32 tower, its captured VisionInputs) for ``model_id``'s bundled config."""
    from PIL import Image
    from transformers import AutoConfig, AutoImageProcessor

    from vlm_quant.models.families import family_of

    config_dir = bundled_config_dir(model_id)
    config = AutoConfig.from_pretrained(config_dir)
    meta = build_meta_model(config)
    vision_path = family_of(meta).roles["vision"][0]
    meta_tower = meta.get_submodule(vision_path)
    torch.manual_seed(0)
    tower = type(meta_tower)._from_config(meta_tower.config, torch_dtype=torch.float32).eval()
    parent, _, name = vision_path.rpartition(".")
    setattr(meta.get_submodule(parent), name, tower)
    processed = AutoImageProcessor.from_pretrained(config_dir)(
        images=[Image.open(image_path).convert("RGB")], return_tensors="pt"
    )
    caught = {}

    def hook(module, args, kwargs):
        caught["inputs"] = onnx_export.bind_inputs(module, args, kwargs)
        raise onnx_export._Caught

    features = meta.model.get_image_features
    accepted = inspect.signature(features).parameters
    kwargs = {k: v for k, v in processed.items() if k in accepted}
    for key in ("vision_feature_layer", "vision_feature_select_strategy"):
        if key in accepted and hasattr(config, key):
            kwargs[key] = getattr(config, key)
    handle = tower.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        features(**kwargs)
    except onnx_export._Caught:
        pass
    finally:
        handle.remove()
    return tower, caught["inputs"], config.model_type


def median_seconds(run, repeats: int):
    """(median seconds of ``repeats`` timed calls, the untimed warm-up call's result): the warm-up (ORT's
    first run allocates its arena) doubles as the output compared, so a real-size tower runs once less."""
    result = run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy()


def token_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1, a.shape[-1]).astype(np.float64), b.reshape(-1, b.shape[-1]).astype(np.float64)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-30)
    return float(cos.mean())


def benchmark(model_id: str, image: Path, repeats: int, work: Path) -> dict:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.perf_counter()
    tower, inputs, model_type = tower_and_inputs(model_id, image)
    row: dict = {
        "model": model_id,
        "model_type": model_type,
        "tower": type(tower).__name__,
        "tower_params_m": round(sum(p.numel() for p in tower.parameters()) / 1e6, 1),
        "input": inputs.shape_key(),
        "build_s": round(time.perf_counter() - started, 1),
    }
    parts = inputs.per_image()
    row["graph_runs_per_image"] = len(parts)
    wrapper = onnx_export.ExportWrapper(tower, list(inputs.tensors), {}, inputs.options)

    def torch_run():
        with torch.no_grad():
            return wrapper(*inputs.tensors.values())

    row["torch_fp32_s"], reference = median_seconds(torch_run, repeats)
    reference = [t.numpy() for t in reference]
    fp32 = work / model_type / "fp32" / "vision.onnx"
    exported = onnx_export.export_vision(tower, parts[0], fp32, {"benchmark": model_id})
    row["exporter"], row["export_s"] = exported.exporter, round(exported.seconds, 1)
    row["exporter_failures"] = exported.failures
    if len(parts) > 1 and any(p.shape_key() != parts[0].shape_key() for p in parts):
        row["note"] = "parts of different shapes: only the first part's graph timed"
        parts = parts[:1]
    int8 = work / model_type / "int8" / "vision.onnx"
    int8.parent.mkdir(parents=True, exist_ok=True)
    large = onnx_export.graph_bytes(fp32) >= onnx_export.SINGLE_FILE_LIMIT_BYTES
    started = time.perf_counter()
    quantize_dynamic(
        str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True, use_external_data_format=large
    )
    row["quantize_s"] = round(time.perf_counter() - started, 1)
    tower.to("meta")  # free the torch weights before the ORT sessions load theirs
    for label, path in (("ort_fp32", fp32), ("ort_int8", int8)):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        feeds = [{n: _numpy(p.tensors[n]) for n in names} for p in parts]

        def run(session=session, feeds=feeds):
            return [session.run(None, f) for f in feeds]

        row[f"{label}_s"], outputs = median_seconds(run, repeats)
        row[f"{label}_vs_torch"] = round(row[f"{label}_s"] / row["torch_fp32_s"], 3)
        if len(parts) == len(inputs.per_image()):
            columns = [np.concatenate([o[i] for o in outputs]) for i in range(len(outputs[0]))]
            cosines = [token_cosine(c, r) for c, r in zip(columns, reference)]
            row[f"{label}_cosine_first_output"] = round(cosines[0], 6)
            row[f"{label}_cosine_min_output"] = round(min(cosines), 6)
        row[f"{label}_file_mib"] = round(onnx_export.graph_bytes(path) / 2**20, 1)
        del session
    for key in ("torch_fp32_s", "ort_fp32_s", "ort_int8_s"):
        row[key] = round(row[key], 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True, help="one COCO image (jpg)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="substring of the model ids to run")
    args = parser.parse_args()
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    ids = sorted(bundled_model_ids(), key=lambda m: next((i for i, k in enumerate(ORDER) if k in m), 99))
    ids = [m for m in ids if any(k in m for k in ORDER) and args.only in m]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vlmq-onnx-bench-") as tmp:
        for model_id in ids:
            try:
                row = benchmark(model_id, args.image, args.repeats, Path(tmp))
            except Exception as error:  # one family's failure is a result, the others still run
                row = {"model": model_id, "error": onnx_export.first_line(error)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            (out / "onnx_vision_towers.json").write_text(json.dumps(rows, indent=2))
    print(
        "\n| model | tower (M params) | input | exporter | export s | torch fp32 s | ORT fp32 (x torch) "
        "| ORT int8 (x torch) | cosine int8 vs torch fp32 (first / min output) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | error: {r['error']} |")
            continue
        print(
            f"| {r['model']} | {r['tower_params_m']} | {r['input'][:60]} | {r['exporter']} | {r['export_s']} "
            f"| {r['torch_fp32_s']} | {r['ort_fp32_s']} ({r['ort_fp32_vs_torch']}) "
            f"| {r['ort_int8_s']} ({r['ort_int8_vs_torch']}) "
            f"| {r.get('ort_int8_cosine_first_output')} / {r.get('ort_int8_cosine_min_output')} |"
        )


if __name__ == "__main__":
    main()
