"""Run names, the run description and the dataset records (pure functions, no store)."""

from __future__ import annotations

from types import SimpleNamespace

from vlm_quant.tasks.captioning_data import ids_hash
from vlm_quant.tracking.run_story import (
    RunFacts,
    compare_display_name,
    describe_run,
    micro_set_input,
    run_caveats,
    run_display_name,
    split_inputs,
    sweep_display_name,
)
from vlm_quant.tracking.tracker import is_generated_name


def test_names_say_model_and_preset_with_override():
    assert run_display_name("HuggingFaceTB/SmolVLM-256M-Instruct", "int8") == "SmolVLM-256M-Instruct · int8"
    assert run_display_name("/tmp/tiny/", "nf4", "vision=int8") == "tiny · nf4+vision=int8"
    assert sweep_display_name("org/M", ["fp16", "int8"], "val2017") == "M · sweep fp16/int8 · val2017"
    assert (
        compare_display_name(["M · fp16", "M · int8", "M · nf4"], "fp16") == "compare int8, nf4 vs fp16 (M)"
    )


def test_only_mlflows_generated_names_count_as_unchosen():
    import mlflow.utils.name_utils as names

    generated = names._generate_random_name()
    assert is_generated_name(generated) and is_generated_name("") and is_generated_name(None)
    assert not is_generated_name("my-baseline") and not is_generated_name("SmolVLM · int8")
    assert not is_generated_name("notaword-zebroid-12")  # the shape alone is not enough


def test_description_has_quality_cost_with_units_and_caveats():
    metrics = {
        "cider": 0.4123,
        "latency_ms_p50": 812.25,
        "peak_rss_mib": 2048.0,
        "size_on_disk_mib": 310.5,
        "throughput_images_per_s": 1.5,
    }
    caveats = run_caveats(
        resumed=3,
        dtype_note="fp16 requested; float32 on CPU (no fast 16-bit CPU kernels)",
        engine_requested="compile",
        engine_resolved="eager",
        engine_note="no inductor",
    )
    text = describe_run(RunFacts("M · int8", "captioning", metrics, "random", 8, "coco", caveats))
    assert "CIDER 0.412" in text and "812.2 ms" in text and "2048 MiB" in text and "310.5 MiB" in text
    assert "peak RSS (CPU run)" in text and "1.50 images/s" in text
    assert "energy" in text.split("Not measured:")[1]  # absent, said so, never 0
    assert text.index("RANDOM WEIGHTS") < text.index("resumed: 3 samples")
    assert "float32 on CPU" in text and "fell back from compile to eager: no inductor" in text
    pretrained = describe_run(RunFacts("M · fp16", "vqa", {"vqa_accuracy": 0.5, "energy_j_per_image": 2.0}))
    assert "RANDOM" not in pretrained and "vqa_accuracy 0.500" in pretrained and "2.00 J/image" in pretrained


def test_dataset_inputs_share_a_digest_exactly_when_the_ids_agree(tmp_path):
    cfg = SimpleNamespace(source="local", data_dir=str(tmp_path), hf_dataset="", seed=3)
    data = SimpleNamespace(
        dataset="coco", split="val2017", ids=[5, 1, 9], data_dir=str(tmp_path), params={"shot_ids": [7, 8]}
    )
    evaluation, pool = split_inputs(cfg, data, ids_hash)
    assert evaluation.name == "coco-val2017" and evaluation.digest == ids_hash([5, 1, 9])
    assert evaluation.context == "evaluation" and evaluation.profile["num_samples"] == 3
    assert evaluation.source == str(tmp_path) and evaluation.source_type == "local"
    assert pool.context == "few_shot_pool" and pool.digest == ids_hash([7, 8])
    other = SimpleNamespace(**{**vars(data), "ids": [1, 5, 9]})
    assert split_inputs(cfg, other, ids_hash)[0].digest != evaluation.digest  # order is part of the split
    micro = micro_set_input(cfg, data, [5, 1], ids_hash)
    assert micro.context == "cost_micro_set" and micro.profile["num_samples"] == 2
    hub = SimpleNamespace(source="hf", data_dir="", hf_dataset="lmms-lab/COCO-Caption2017", seed=3)
    assert split_inputs(hub, data, ids_hash)[0].source_type == "hugging_face"


def test_a_run_name_says_when_the_16_bit_roles_computed_in_another_dtype():
    from types import SimpleNamespace

    import torch

    from vlm_quant.config import ExperimentConfig
    from vlm_quant.quantize.presets import resolve_plan
    from vlm_quant.run.mlflow_views import display_name

    cfg = ExperimentConfig.from_mapping({"model": "org/M", "quant": "fp16", "data_dir": "unused"})

    def ran(dtype, device):
        return SimpleNamespace(plan=resolve_plan("fp16", ""), dtype=dtype, device=torch.device(device))

    assert display_name(cfg, ran(torch.float16, "cuda")) == "M · fp16"  # as planned: nothing added
    assert display_name(cfg, ran(torch.float32, "cpu")) == "M · fp16 (fp32 on cpu)"
    assert display_name(cfg, ran(torch.bfloat16, "cpu")) == "M · fp16 (bf16 on cpu)"
    named = ExperimentConfig.from_mapping({"model": "org/M", "run_name": "mine", "data_dir": "unused"})
    assert display_name(named, ran(torch.float32, "cpu")) == "mine"  # the user's name is kept as given
