"""quant=gguf-* on the llama.cpp engine: a tiny Idefics3 converted, quantized, run through libmtmd, and
logged like a torch run (every torch metric present or absent with its reason). Skips without
llama-cpp-python or llama.cpp's converter, with the install command."""

from __future__ import annotations

import pytest

from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.quantize import gguf, gguf_converter, gguf_files
from vlm_quant.run.runner import prepare_experiment, run_experiment
from vlm_quant.tracking import glossary, run_schema
from vlm_quant.tracking.tracker import InMemoryTracker

FAST = dict(
    n_samples=2,
    batch_size=2,
    max_new_tokens=4,
    cost_samples=1,
    cost_iterations=2,
    cost_warmup=0,
    cost_new_tokens=3,
    idle_seconds=0,
    fidelity_samples=1,
    fidelity_new_tokens=4,
    invariance_samples=2,
)
# Metrics of a torch run that a llama.cpp run cannot have, and the tag that says why.
ABSENT_BECAUSE = {
    "flops_": run_schema.TAG_FLOPS_ABSENT,
    "achieved_flop_per_s": run_schema.TAG_FLOPS_ABSENT,
    "batch_invariance_": run_schema.TAG_BATCH_INVARIANCE_ABSENT,
    "_bs2": "vlm_quant.cost_absent_bs2",
    "cost_graphs_compiled": None,  # torch.compile's graph counts: no torch engine ran
    "quantize_time_s": "vlm_quant.quantize_time_absent_reason",  # files from the cache
}


@pytest.fixture(scope="module", autouse=True)
def llama_cpp_installed():
    for missing in (gguf.llama_cpp_missing(), gguf_converter.converter_missing()):
        if missing:
            pytest.skip(missing)


@pytest.fixture(scope="module")
def gguf_cache(tmp_path_factory):
    """One GGUF cache for the module: the first run converts, later runs reuse the F16 files."""
    return tmp_path_factory.mktemp("xdg-cache")


def evaluate(tiny_vlm_dirs, coco_dir, monkeypatch, cache, **overrides) -> InMemoryTracker:
    monkeypatch.setenv("VLMQ_GGUF_CACHE", str(cache))
    cfg = ExperimentConfig.from_mapping(
        dict(model=str(tiny_vlm_dirs["idefics3"]), data_dir=str(coco_dir), **{**FAST, **overrides})
    )
    tracker = InMemoryTracker()
    run_experiment(prepare_experiment(cfg), tracker, progress=False)
    return tracker


@pytest.fixture(scope="module")
def runs(tiny_vlm_dirs, coco_dir, gguf_cache):
    """The torch fp16 run and the gguf-q8_0 run of the same tiny model, split and settings."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        return {
            quant: evaluate(tiny_vlm_dirs, coco_dir, monkeypatch, gguf_cache, quant=quant)
            for quant in ("fp16", "gguf-q8_0")
        }


def test_gguf_run_holds_every_metric_of_a_torch_run_or_says_why(runs):
    torch_run, gguf_run = runs["fp16"], runs["gguf-q8_0"]
    missing = set(torch_run.metrics) - set(gguf_run.metrics)
    unexplained = []
    for name in sorted(missing):
        reason = next((tag for part, tag in ABSENT_BECAUSE.items() if part in name), "unexplained")
        if reason == "unexplained" or (reason is not None and not gguf_run.tags.get(reason)):
            unexplained.append(name)
    assert not unexplained, f"absent from the gguf run without a reason: {unexplained}"
    assert gguf_run.metrics["n_samples_evaluated"] == 2 and "cider" in gguf_run.metrics
    for name in ("ttft_ms_p50", "decode_ms_per_token_p50", "latency_ms_p50", "throughput_images_per_s_bs1"):
        assert gguf_run.metrics[name] > 0, name
    assert gguf_run.metrics["llama_cpp_prompt_eval_ms_mean"] > 0  # llama.cpp's own counters, beside ours
    assert gguf_run.metrics["throughput_images_per_s"] == gguf_run.metrics["throughput_images_per_s_bs1"]


def test_every_name_a_gguf_run_logs_is_described_in_the_glossary(runs):
    gguf_run = runs["gguf-q8_0"]
    undocumented = [k for k in gguf_run.metrics if not glossary.documented(k, glossary.METRICS)]
    undocumented += [
        k for k in gguf_run.tags if k.startswith("vlm_quant.") and not glossary.documented(k, glossary.TAGS)
    ]
    undocumented += [a for a in gguf_run.artifacts if not glossary.documented(a, glossary.ARTIFACTS)]
    assert not undocumented


def test_gguf_run_labels_what_ran_from_the_files(runs):
    params = runs["gguf-q8_0"].params
    assert params["engine_resolved"] == "llama.cpp"
    assert params["realized_precision_language"] == "gguf-q8_0"
    assert params["realized_precision_vision"].startswith("gguf-f16")
    assert params["backend_language"] == "llama.cpp"
    assert int(params["gguf_image_tokens"]) > 0 and int(params["processor_image_tokens"]) > 0
    assert "llama.cpp" in params["dtype_note"]
    audit = runs["gguf-q8_0"].artifacts["precision/gguf_tensor_types.json"]
    assert audit["language"]["types"] == {"Q8_0": 14}  # 2 layers x 7 linear matrices
    assert audit["language"]["other"]["Q8_0"] == 1  # the token embedding, quantized too, counted as "other"
    assert params["realized_precision_vision"] == "gguf-f16"  # linear matrices; embeddings under "other"
    size = runs["gguf-q8_0"].metrics["size_on_disk_mib"]
    assert size == pytest.approx(audit["files"]["size_on_disk_mib"])
    assert runs["gguf-q8_0"].metrics["weights_footprint_mib"] <= size  # tensor bytes, without metadata


def test_gguf_fidelity_compares_logits_and_says_the_role_cosines_are_absent(runs):
    gguf_run = runs["gguf-q8_0"]
    assert 0.0 <= gguf_run.metrics["fidelity_top1_agreement_token_mean"] <= 1.0
    assert gguf_run.metrics["fidelity_logits_kl_nats_token_mean"] >= 0.0
    assert gguf_run.metrics["fidelity_n_positions"] >= 1
    assert "fidelity_vision_cosine_token_mean" not in gguf_run.metrics
    assert "per-role" in gguf_run.tags["vlm_quant.fidelity_roles_absent_reason"]


def test_a_second_plan_reuses_the_cached_f16_conversion(
    tiny_vlm_dirs, coco_dir, gguf_cache, monkeypatch, runs
):
    tracker = evaluate(
        tiny_vlm_dirs, coco_dir, monkeypatch, gguf_cache, quant="gguf-q4_k_m", precision="vision=gguf-q8_0",
        n_samples=1, cost_iterations=1,
    )  # fmt: skip
    assert tracker.params["realized_precision_projector"] == "gguf-q8_0"
    assert "Q8_0" in tracker.artifacts["precision/gguf_tensor_types.json"]["vision"]["types"]
    entries = [path for path in gguf_cache.iterdir() if path.is_dir()]
    assert len(entries) == 1  # one checkpoint, one entry: F16 files converted once for both plans
    names = {path.name for path in entries[0].glob("*.gguf")}
    assert {
        "text-gguf-f16.gguf",
        "mmproj-gguf-f16.gguf",
        "text-gguf-q4_k_m.gguf",
        "mmproj-gguf-q8_0.gguf",
    } <= names
    repeat = evaluate(tiny_vlm_dirs, coco_dir, monkeypatch, gguf_cache, quant="gguf-q8_0", n_samples=1)
    assert str(repeat.params["gguf_from_cache"]) == "True" and "quantize_time_s" not in repeat.metrics
    assert "cache" in repeat.tags["vlm_quant.quantize_time_absent_reason"]
    assert "gguf_convert_s" not in repeat.metrics and "gguf_convert_s" in runs["gguf-q8_0"].metrics


def test_a_gguf_plan_cannot_mix_in_torch_roles_or_run_on_cuda(tiny_vlm_dirs, coco_dir):
    base = dict(model=str(tiny_vlm_dirs["idefics3"]), data_dir=str(coco_dir), n_samples=1)
    with pytest.raises(UserError, match="every role needs a gguf-"):
        prepare_experiment(
            ExperimentConfig.from_mapping({**base, "quant": "gguf-q8_0", "precision": "vision=int8"})
        )
    with pytest.raises(UserError, match="use device=cpu"):
        prepare_experiment(ExperimentConfig.from_mapping({**base, "quant": "gguf-q8_0", "device": "cuda"}))


def test_gguf_audit_refuses_a_quantized_role_stored_f16():
    found = {"language": gguf_files.RoleTypes("language", {"F16": 14}, {}, 0)}
    with pytest.raises(UserError, match="did not apply the plan"):
        gguf_files.verify({"language": "gguf-q8_0"}, found)
    mixed = {"language": gguf_files.RoleTypes("language", {"Q5_0": 12, "Q8_0": 2}, {"F32": 5}, 0)}
    gguf_files.verify({"language": "gguf-q4_k_m"}, mixed)  # llama.cpp's own mix is what Q4_K_M is
    assert mixed["language"].realized() == "gguf-q5_0 (12/14 matrices) + gguf-q8_0 (2/14 matrices)"


def test_qwen2_vl_runs_with_its_wrapped_image_token(tiny_vlm_dirs, coco_dir, gguf_cache, monkeypatch):
    # The template writes <|vision_start|><|image_pad|><|vision_end|>; libmtmd writes the wrapping itself.
    monkeypatch.setenv("VLMQ_GGUF_CACHE", str(gguf_cache))
    cfg = ExperimentConfig.from_mapping(
        dict(model=str(tiny_vlm_dirs["qwen2_vl"]), data_dir=str(coco_dir), quant="gguf-q8_0",
             **{**FAST, "n_samples": 1, "cost_iterations": 1, "fidelity_samples": 1})
    )  # fmt: skip
    tracker = InMemoryTracker()
    run_experiment(prepare_experiment(cfg), tracker, progress=False)
    assert tracker.params["model_family"] == "qwen2_vl" and tracker.metrics["n_samples_evaluated"] == 1
    assert int(tracker.params["gguf_image_tokens"]) > 0


def test_a_family_the_converter_refuses_is_refused_before_loading(tiny_vlm_dirs, coco_dir):
    cfg = ExperimentConfig.from_mapping(
        dict(model=str(tiny_vlm_dirs["llava"]), data_dir=str(coco_dir), quant="gguf-q8_0", n_samples=1)
    )
    with pytest.raises(UserError, match="Unsupported model type: clip_vision_model"):
        prepare_experiment(cfg)
