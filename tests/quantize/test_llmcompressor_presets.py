"""GPTQ, AWQ and SmoothQuant + GPTQ through llm-compressor on tiny VLMs of two families, on CPU.

Each preset quantizes the language model of a tiny idefics3 and qwen2_vl (calibrated on one image-prompt
pair through the real processor), exports compressed-tensors, is reloaded through transformers from
the export (never the in-memory model), decompressed as transformers would on the first forward, and
audited; its fidelity to the unquantized model is measured on the same teacher-forced inputs.
One quantized model per preset and family is shared by the module's tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from vlm_quant.errors import UserError
from vlm_quant.models.families import linear_modules_by_role
from vlm_quant.models.loading import load_vlm
from vlm_quant.quantize.audit import audit_precision, verify_plan
from vlm_quant.quantize.fidelity import capture, continue_greedily, kl_nats
from vlm_quant.quantize.plan_fit import ptq_group_size
from vlm_quant.quantize.presets import PRECISIONS, resolve_plan

pytest.importorskip(
    "llmcompressor", reason="llm-compressor is not installed (pip install --no-deps llmcompressor==0.14.0.1)"
)
from vlm_quant.quantize import llmcompressor_backend as llmc  # noqa: E402 - after the skip

FAMILIES = ("idefics3", "qwen2_vl")
PRESETS = ("gptq-w4", "awq-w4", "gptq-w8", "w8a8-sq")
AUDITED = {
    "gptq-w4": "ct-w4a16-dense",
    "awq-w4": "ct-w4a16-dense",
    "gptq-w8": "ct-w8a16-dense",
    "w8a8-sq": "ct-w8a8-dense",
}
COMPRESSED_NAMES = (".weight_packed", ".weight_scale", ".weight_zero_point", ".weight_shape")
PROMPT = {"idefics3": "<image>Describe", "qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>Describe"}


def _inputs(processor, family: str, seed: int) -> dict[str, torch.Tensor]:
    """One image-prompt pair through the model's own processor (a seeded random 64x64 image)."""
    pixels = torch.randint(
        0, 256, (64, 64, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )
    image = Image.fromarray(pixels.numpy())
    return dict(processor(images=[image], text=[PROMPT[family]], return_tensors="pt"))


class Quantized:
    """Per (family, preset): the reloaded export, its folder, and the fidelity inputs' baseline."""

    def __init__(self, dirs, root: Path):
        self.dirs, self.root, self.cache, self.baselines = dirs, root, {}, {}

    def baseline(self, family: str):
        """(teacher-forced sequence, unquantized log-probs) of one held-out pair, computed once."""
        if family not in self.baselines:
            loaded = load_vlm(str(self.dirs[family]), dtype=torch.float32, device="cpu")
            sequence = continue_greedily(
                loaded.model, loaded.processor, _inputs(loaded.processor, family, 99), 6
            )
            self.baselines[family] = (sequence, capture(loaded.model, loaded.family, sequence).log_probs)
        return self.baselines[family]

    def get(self, family: str, preset: str):
        if (family, preset) not in self.cache:
            loaded = load_vlm(str(self.dirs[family]), dtype=torch.float32, device="cpu")
            names = linear_modules_by_role(loaded.model, loaded.family)["language"]
            out = self.root / f"{family}-{preset}"
            export = llmc.llmcompressor_export(
                loaded.model,
                loaded.processor,
                preset,
                names,
                loaded.family.roles["language"][0],
                ptq_group_size(loaded.model, names),
                [_inputs(loaded.processor, family, seed=1)],
                out,
                device=torch.device("cpu"),
            )
            reloaded = load_vlm(str(out), dtype=torch.float32, device="cpu")
            decompress_s = llmc.decompress(reloaded.model)
            self.cache[family, preset] = (reloaded, out, export, names, decompress_s)
        return self.cache[family, preset]


@pytest.fixture(scope="module")
def quantized(tiny_vlm_dirs, tmp_path_factory):
    return Quantized(tiny_vlm_dirs, tmp_path_factory.mktemp("llmcompressor"))


def _quantized_tensor_bytes(folder: Path) -> int:
    """Bytes of the export's quantized weights (int tensors and their scales), from the safetensors headers.

    transformers may save a family under its legacy key names (qwen2_vl: ``model.layers.*``), so the
    tensors are found by what compressed-tensors writes, not by module path; only the language model's
    linears are quantized."""
    total = 0
    for path in folder.glob("*.safetensors"):
        raw = path.read_bytes()
        header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
        for key, info in header.items():
            if key != "__metadata__" and (key.endswith(COMPRESSED_NAMES) or info["dtype"] in ("I8", "I32")):
                total += info["data_offsets"][1] - info["data_offsets"][0]
    return total


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_exports_reloads_and_is_audited(quantized, family, preset):
    reloaded, folder, export, names, decompress_s = quantized.get(family, preset)
    config = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors" and config["quantization_status"] == "compressed"
    assert sorted(config["config_groups"]["group_0"]["targets"]) == sorted(names)  # exact names, no rule
    assert decompress_s is not None and decompress_s >= 0  # transformers loaded it packed; we decompressed

    plan = resolve_plan(preset)
    precision_map = audit_precision(reloaded.model, reloaded.family, plan)
    verify_plan(plan, precision_map, dtype=torch.float32)
    roles = precision_map.roles()
    bits = PRECISIONS[preset].bits
    assert roles["language"].realized == PRECISIONS[preset].audited_as == AUDITED[preset]
    assert roles["language"].n_linears == len(names)
    assert {roles[r].realized for r in ("vision", "projector")} == {"fp32"}  # untouched
    record = precision_map.modules[names[0]]
    assert f"dense, decompressed int{bits}" in record.weight_type  # the audit says what runs: dense floats
    # In memory: dense float32 weights (plus scales). On disk: packed integers plus group/channel scales.
    fp32_bytes = roles["language"].linear_params * 4
    assert roles["language"].linear_bytes >= fp32_bytes
    packed = _quantized_tensor_bytes(folder)
    low, high = (1 / 8, 1 / 4) if bits == 4 else (1 / 4, 1 / 2)
    assert low < packed / fp32_bytes < high
    assert export.quantize_s > 0 and export.memory.as_metrics()["peak_rss_mib"] > 0
    assert export.export_mib * 2**20 >= packed


@pytest.mark.parametrize("family", FAMILIES)
def test_w8_methods_are_closer_to_the_baseline_than_w4_methods(quantized, family):
    sequence, reference = quantized.baseline(family)
    kl = {}
    for preset in PRESETS:
        reloaded = quantized.get(family, preset)[0]
        kl[preset] = float(
            kl_nats(reference, capture(reloaded.model, reloaded.family, sequence).log_probs).mean()
        )
    assert max(kl["gptq-w8"], kl["w8a8-sq"]) < min(kl["gptq-w4"], kl["awq-w4"]), kl
    assert all(value > 0 for value in kl.values()), kl  # every preset changed the model


def test_checkpoint_is_saved_packed_and_loads_back_as_logged(quantized, tmp_path):
    from vlm_quant.models.checkpoint import save_checkpoint
    from vlm_quant.models.logged_model import load_checkpoint_dir

    reloaded, folder, export, names, _ = quantized.get("qwen2_vl", "gptq-w4")
    sequence, _ = quantized.baseline("qwen2_vl")
    before = capture(reloaded.model, reloaded.family, sequence).log_probs
    realized = audit_precision(reloaded.model, reloaded.family).role_params()
    plan = resolve_plan("gptq-w4")
    recipe = {
        "quant": "gptq-w4",
        "precision": "",
        "roles": plan.roles,
        "dtype": "float32",
        "device": "cpu",
        "realized": realized,
    }
    saved = save_checkpoint(reloaded.model, reloaded.processor, tmp_path / "ckpt", recipe)
    assert saved.reason is None and saved.writer.startswith("compressed-tensors")
    assert saved.weights_mib == pytest.approx(export.export_mib, rel=0.01)  # the packed size, not dense
    logged = load_checkpoint_dir(tmp_path / "ckpt")  # what `vlm-quant load` does with the downloaded folder
    assert logged.precision_map.role_params() == realized
    again = capture(logged.model, logged.family, sequence).log_probs
    assert torch.equal(before, again)


def test_vision_role_is_refused_with_the_reason():
    with pytest.raises(UserError, match="gptq-w4 applies only to role.*language.*decoder layers"):
        resolve_plan("fp16", "vision=gptq-w4")


def test_recipe_targets_the_language_model_and_logs_the_library_defaults(quantized):
    from llmcompressor.modifiers.quantization import GPTQModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    reloaded = quantized.get("idefics3", "gptq-w4")[0]
    pattern = llmc._anchor("re:.*q_proj$", "model.text_model")
    assert pattern == r"re:^model\.text_model\..*q_proj$"
    recipe = llmc.build_recipe(
        "awq-w4", ["model.text_model.layers.0.mlp.up_proj"], "model.text_model", 64, reloaded.model
    )
    mappings = recipe[0].mappings
    assert all(m.smooth_layer.startswith(r"re:^model\.text_model\.") for m in mappings)
    params = llmc.recipe_params("awq-w4", recipe, 64)
    assert params["awq_n_grid"] == str(AWQModifier.model_fields["n_grid"].default)
    gptq = llmc.recipe_params("gptq-w8", llmc.build_recipe("gptq-w8", ["x"], "p", 128, reloaded.model), 128)
    assert gptq["gptq_dampening_frac"] == str(GPTQModifier.model_fields["dampening_frac"].default)
    assert gptq["ptq_scheme"] == "W8A16" and gptq["ptq_group_size"] == 128


def test_run_step_calibrates_on_unevaluated_images_and_logs_what_ran(tiny_vlm_dirs, coco_dir):
    """The run's calibration step (run/calibration.py) for gptq-w4: real COCO pairs outside the evaluated
    images, the library's knobs as params, and the reloaded, decompressed export as the run's model."""
    from vlm_quant.config import ExperimentConfig
    from vlm_quant.run.calibration import quantize_calibrated
    from vlm_quant.run.runner import prepare_experiment
    from vlm_quant.tracking.tracker import InMemoryTracker

    cfg = ExperimentConfig.from_mapping(
        dict(
            model=str(tiny_vlm_dirs["idefics3"]),
            data_dir=str(coco_dir),
            quant="gptq-w4",
            n_samples=3,
            ptq_calibration_samples=1,
        )
    )
    prepared = prepare_experiment(cfg)
    loaded = load_vlm(str(tiny_vlm_dirs["idefics3"]), dtype=prepared.dtype, device="cpu")
    tracker = InMemoryTracker()
    reloaded, metrics = quantize_calibrated(prepared, loaded, tracker)
    calibration = tracker.artifacts["split/calibration_ids.json"]
    evaluated = {prepared.data.samples[i].image_file for i in prepared.data.ids}
    assert len(calibration["ids"]) == calibration["n"] == 1
    assert prepared.data.samples[calibration["ids"][0]].image_file not in evaluated
    p = tracker.params
    assert p["quantizer_language"] == "llm-compressor" and p["ptq_scheme"] == "W4A16"
    assert p["ptq_group_size"] == "64" and p["ptq_calibration_n"] == "1"  # 128 does not divide 64-wide
    assert metrics["quantize_s"] > 0 and metrics["reload_time_s"] > 0 and metrics["decompress_s"] >= 0
    assert 0 < metrics["ptq_export_mib"]
    assert reloaded.model_id == loaded.model_id and reloaded.model is not loaded.model
    realized = audit_precision(reloaded.model, reloaded.family).role_params()["realized_precision_language"]
    assert realized == "ct-w4a16-dense"
