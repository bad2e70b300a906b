"""Fidelity to the unquantized model: per-token cosines, KL and top-1 over every continuation position."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from quant_helpers import load_tiny
from torch import nn

from vlm_quant.engines.generate import GenerationSettings, prepare_inputs, single_image_request
from vlm_quant.models.families import family_by_name
from vlm_quant.quantize import fidelity
from vlm_quant.quantize.backends import apply_plan
from vlm_quant.quantize.presets import resolve_plan
from vlm_quant.run.fidelity_pass import fidelity_candidates
from vlm_quant.tasks.calibration_split import calibration_ids


def _sequences(loaded, n=2, new_tokens=4):
    images = [Image.new("RGB", (64, 48), (40 * i, 200 - 30 * i, 90)) for i in range(n)]
    requests = [single_image_request(image, "Describe the image") for image in images]
    settings = GenerationSettings(4)
    cpu, dtype = torch.device("cpu"), torch.float32
    return [
        fidelity.continue_greedily(
            loaded.model,
            loaded.processor,
            prepare_inputs(loaded.processor, [r], device=cpu, dtype=dtype, settings=settings),
            new_tokens,
        )
        for r in requests
    ]


def _capture(loaded, sequences):
    return [fidelity.capture(loaded.model, loaded.family, s) for s in sequences]


@pytest.mark.parametrize("family", ["idefics3", "qwen2_vl"])
def test_unquantized_plan_is_identical_and_quantized_moves_every_position(tiny_vlm_dirs, family):
    loaded = load_tiny(tiny_vlm_dirs[family])
    sequences = _sequences(loaded)
    reference = _capture(loaded, sequences)
    assert {"vision", "projector"} <= set(reference[0].roles)
    assert reference[0].roles["vision"].shape[0] > 1  # one row per image token, not one flattened vector

    apply_plan(loaded.model, loaded.family, resolve_plan("fp16"), device="cpu", compute_dtype=torch.float32)
    same = fidelity.compare(reference, _capture(loaded, sequences))
    for role in ("vision", "projector"):
        assert same[f"fidelity_{role}_cosine_token_mean"] == pytest.approx(1.0, abs=1e-12)
        assert same[f"fidelity_{role}_cosine_token_p5"] == pytest.approx(1.0, abs=1e-12)
    assert same["fidelity_logits_kl_nats_token_mean"] == 0.0
    assert same["fidelity_top1_agreement_token_mean"] == 1.0

    plan = resolve_plan("fp16", "vision=w8a8,projector=w8a8,language=w8a8")
    apply_plan(loaded.model, loaded.family, plan, device="cpu", compute_dtype=torch.float32)
    moved = fidelity.compare(reference, _capture(loaded, sequences))
    assert moved["fidelity_vision_cosine_token_mean"] < 1.0 - 1e-9
    assert moved["fidelity_projector_cosine_token_p5"] < moved["fidelity_projector_cosine_token_mean"]
    assert moved["fidelity_logits_kl_nats_token_mean"] > 0.0
    assert moved["fidelity_n_positions"] == sum(s.positions for s in sequences) > len(sequences)


def test_top1_agreement_is_the_share_of_continuation_positions_whose_greedy_token_survives(tiny_vlm_dirs):
    loaded = load_tiny(tiny_vlm_dirs["idefics3"])
    sequences = _sequences(loaded)
    reference = _capture(loaded, sequences)
    with torch.no_grad():  # a coarse "quantization" of the LM head: seeded noise of 0.3 weight std
        weight = loaded.model.lm_head.weight
        noise = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))
        weight.add_(noise * 0.3 * weight.std())
    moved = fidelity.compare(reference, _capture(loaded, sequences))
    # Recomputed here from plain teacher-forced forward passes of the perturbed model: the share of
    # continuation positions whose argmax is the 16-bit model's greedy token.
    agree = []
    with torch.inference_mode():
        for s in sequences:
            logits = loaded.model(**s.inputs, use_cache=False).logits[0, -s.positions :]
            agree += (logits.argmax(-1) == torch.tensor(s.continuation)).tolist()
    assert moved["fidelity_n_positions"] == len(agree) == 8
    assert 0.0 < sum(agree) < len(agree)  # some positions flipped, not all
    assert moved["fidelity_top1_agreement_token_mean"] == sum(agree) / len(agree)


def _outputs(vision_rows, log_probs=None):
    log_probs = torch.zeros(1, 3) if log_probs is None else log_probs
    return fidelity.Outputs({"vision": torch.tensor(vision_rows, dtype=torch.float64)}, log_probs)


def test_cosine_is_per_token_so_one_high_norm_token_does_not_dominate():
    # 20 unit tokens whose cosines are 0, 1/19, ..., 1 (the quantized row turned by a known angle), and one
    # token of norm 1000 left unchanged: the flattened tensors' cosine is ~1, the mean token's is 11/21.
    cosines = [i / 19 for i in range(20)]
    reference = [[1.0, 0.0]] * 20 + [[1000.0, 0.0]]
    quantized = [[c, (1 - c * c) ** 0.5] for c in cosines] + [[1000.0, 0.0]]
    flat = torch.nn.functional.cosine_similarity(
        torch.tensor(reference).reshape(-1), torch.tensor(quantized).reshape(-1), dim=0
    )
    assert float(flat) > 0.9999
    metrics = fidelity.compare([_outputs(reference)], [_outputs(quantized)])
    assert metrics["fidelity_vision_cosine_token_mean"] == pytest.approx(11 / 21)
    # 5th percentile of the 21 values, linear interpolation: rank 0.05 * 20 = 1, the second smallest.
    assert metrics["fidelity_vision_cosine_token_p5"] == pytest.approx(1 / 19)
    assert metrics["fidelity_projector_cosine_token_mean"] is None  # no projector output: absent, not 0 or 1


def test_tokens_of_all_images_are_pooled_with_equal_weight():
    # Image A: one unchanged token; image B: three orthogonal ones. Pooled: 1/4 (per-image means: 1/2).
    a = _outputs([[1.0, 0.0]]), _outputs([[2.0, 0.0]])
    b = _outputs([[1.0, 0.0]] * 3), _outputs([[0.0, 1.0]] * 3)
    metrics = fidelity.compare([a[0], b[0]], [a[1], b[1]])
    assert metrics["fidelity_vision_cosine_token_mean"] == pytest.approx(0.25)
    assert fidelity.token_cosines(torch.zeros(2, 3), torch.zeros(2, 3)).tolist() == [1.0, 1.0]
    assert fidelity.token_cosines(torch.zeros(1, 3), torch.ones(1, 3)).tolist() == [0.0]


class _FakeVLM(nn.Module):
    """Next-token logits favour (token + 1) mod vocab at every position; ``moved_at`` (an absolute
    position) favours token 0 there instead. Vision and projector are identities on the pixels."""

    def __init__(self, vocab=7, moved_at=None):
        super().__init__()
        self.model = nn.Module()
        self.model.vision_model = nn.Identity()
        self.model.connector = nn.Identity()
        self.weight = nn.Parameter(torch.zeros(1))
        self.vocab, self.moved_at = vocab, moved_at

    def forward(self, input_ids, pixel_values, attention_mask=None, use_cache=False, logits_to_keep=0):
        self.model.connector(self.model.vision_model(pixel_values))
        target = (input_ids + 1) % self.vocab
        if self.moved_at is not None:
            target[:, self.moved_at] = 0
        logits = 4.0 * nn.functional.one_hot(target, self.vocab).to(torch.float32)
        return SimpleNamespace(logits=logits[:, -logits_to_keep:])


def test_kl_and_top1_cover_every_continuation_position():
    # Prompt of 3 tokens, continuation 4, 5, 6, 0 (greedy under the fake): the sequence is the prompt and
    # the continuation minus its last token, so positions 2..5 predict the 4 continuation tokens.
    prompt = torch.tensor([[1, 2, 3]])
    sequence = fidelity.TeacherForced(
        {
            "input_ids": torch.cat([prompt, torch.tensor([[4, 5, 6]])], dim=1),
            "attention_mask": torch.ones(1, 6, dtype=torch.long),
            "pixel_values": torch.ones(1, 2, 5),
        },
        [4, 5, 6, 0],
    )
    family = family_by_name("idefics3")
    reference = fidelity.capture(_FakeVLM(), family, sequence)
    assert reference.log_probs.argmax(-1).tolist() == sequence.continuation
    moved = fidelity.capture(_FakeVLM(moved_at=4), family, sequence)  # the 3rd of the 4 positions
    metrics = fidelity.compare([reference, reference], [moved, moved])
    assert metrics["fidelity_top1_agreement_token_mean"] == 0.75
    one_position = torch.nn.functional.kl_div(
        moved.log_probs[2].double(), reference.log_probs[2].double(), log_target=True, reduction="sum"
    )
    assert float(one_position) > 1.0
    assert metrics["fidelity_logits_kl_nats_token_mean"] == pytest.approx(float(one_position) / 4)
    assert metrics["fidelity_n_positions"] == 8 and metrics["fidelity_n_images"] == 2


def test_fidelity_set_is_distinct_evaluated_images_disjoint_from_calibration():
    # POPE-like split: 6 questions on each of 40 images; 60 questions (10 images) evaluated.
    samples = {i: SimpleNamespace(sample_id=i, image_file=f"img{i // 6}.jpg") for i in range(240)}
    evaluated = list(range(60, 120))
    candidates = fidelity_candidates(samples, evaluated, seed=3)
    images = [samples[i].image_file for i in candidates]
    assert len(images) == len(set(images)) == 10
    assert set(candidates) <= set(evaluated)
    calibration = calibration_ids(samples, evaluated, 64, seed=3)  # AutoRound, llm-compressor, ORT static
    assert not set(images) & {samples[i].image_file for i in calibration}
    assert candidates == fidelity_candidates(samples, evaluated, seed=3)  # seeded
    assert candidates != fidelity_candidates(samples, evaluated, seed=4)
