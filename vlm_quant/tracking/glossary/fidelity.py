"""Fidelity to the unquantized model and the batch-invariance check."""

from __future__ import annotations

from vlm_quant.tracking.glossary.term import Term

FIDELITY_METRICS: tuple[Term, ...] = (
    Term(
        ("fidelity_vision_cosine_token_mean", "fidelity_projector_cosine_token_mean"),
        "-1..1",
        "quantized runs only: per image token (one row of the role's output reshaped to (tokens, hidden): a "
        "vision patch, a projected image token), cos = a·b / (‖a‖ ‖b‖) of the unquantized row a and the "
        "quantized row b (1 when both are zero, 0 when one is); the mean over every token of every fidelity "
        "image, pooled (each token weighs the same; 1 = unchanged). Not the cosine of the flattened tensor, "
        "which a few high-norm tokens dominate",
    ),
    Term(
        ("fidelity_vision_cosine_token_p5", "fidelity_projector_cosine_token_p5"),
        "-1..1",
        "the 5th percentile of the same pooled per-token cosines (`numpy.percentile`, linear interpolation): "
        "5% of the tokens moved at least this far",
    ),
    Term(
        ("fidelity_logits_kl_nats_token_mean",),
        "nats",
        "KL(p_16bit ‖ p_quant) = Σ_v p_16bit(v) (log p_16bit(v) − log p_quant(v)) over the whole vocabulary, "
        "at every position of the 16-bit model's own greedy continuation (up to `fidelity_new_tokens`, "
        "default 16, fewer where it emitted EOS), both models teacher-forced on the same prompt + "
        "continuation; the mean over every position of every fidelity image, pooled (0 = unchanged)",
    ),
    Term(
        ("fidelity_top1_agreement_token_mean",),
        "0-1",
        "share of those positions, pooled, at which the quantized model's argmax token is the 16-bit model's",
    ),
    Term(
        ("fidelity_n_images", "fidelity_n_positions"),
        "count",
        "fidelity images used (`fidelity_samples`, fewer when the evaluated samples show fewer distinct "
        "readable images) and continuation positions pooled by the two metrics above",
    ),
    Term(
        ("batch_invariance_agreement",),
        "0-1",
        "share of a seeded subset (`invariance_samples`, default 35, of the predicted samples) whose greedy "
        "prediction regenerated alone (batch 1, same engine, dtype and settings) is identical to its "
        "evaluated prediction at `batch_size`; absent (tag `vlm_quant.batch_invariance_absent_reason`: "
        "`evaluated at batch 1` or `disabled`) when nothing was compared, never 1",
    ),
    Term(
        ("batch_invariance_<primary>_delta",),
        "the primary metric's unit",
        "the task's primary metric on that subset scored with the batch-1 predictions minus with the batched "
        "ones (0 exactly when all are identical); absent, tag "
        "`vlm_quant.batch_invariance_delta_absent_reason`, when the subset could not be scored (e.g. no Java "
        "for captions)",
    ),
    Term(
        ("batch_invariance_s",),
        "s",
        "wall time of that check (reading the images, the batch-1 generations, scoring the subset); not part "
        "of `quality_pass_s`",
    ),
)
