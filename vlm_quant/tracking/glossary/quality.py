"""Quality metrics: captions, VQA, OCR-VQA, hallucination, the output screen, sample counts."""

from __future__ import annotations

from vlm_quant.tracking.glossary.term import Term

QUALITY_METRICS: tuple[Term, ...] = (
    Term(
        ("vqa_accuracy", "vqa_accuracy_<answer type>"),
        "0-1",
        "primary VQA metric: the official rule (mean over the 10 leave-one-out subsets of min(1, matches/3)) "
        "on normalised answers, the prediction and all ten human answers normalised (official vqaEval.py "
        "normalisation), unanimous ones too; never below `vqa_accuracy_official`; "
        "`vqa_accuracy_<answer type>` (`yes_no`, `number`, `other`): the same per answer type",
    ),
    Term(
        ("vqa_accuracy_official",),
        "0-1",
        "the official script's number on the raw predictions (unanimous humans compared exactly, as "
        "vqaEval.py does)",
    ),
    Term(
        ("cider",),
        "CIDEr-D, ~0-10",
        "primary caption metric (pycocoevalcap scale); IDF from the evaluated reference set, so only runs "
        "with the same `ids_hash` are comparable",
    ),
    Term(
        ("bleu_1", "bleu_2", "bleu_3", "bleu_4"),
        "0-1",
        "BLEU n-gram precision with brevity penalty (pycocoevalcap)",
    ),
    Term(("meteor",), "0-1", "METEOR 1.5 (pycocoevalcap, Java)"),
    Term(("rouge_l",), "0-1", "ROUGE-L F-measure"),
    Term(
        ("spice",),
        "0-1",
        "only when Stanford CoreNLP's jars are present (`vlm-quant setup spice` installs them); else the tag "
        "`vlm_quant.spice_skipped` says why",
    ),
    Term(
        ("cider_in_domain", "cider_near_domain", "cider_out_domain"),
        "CIDEr-D, ~0-10",
        "NoCaps: CIDEr of one domain's images, IDF from that domain's references; absent below 2 images "
        "(tag `vlm_quant.domain_cider_absent_reason`)",
    ),
    Term(("nocaps_n_<domain>",), "count", "NoCaps: images of each domain"),
    Term(
        ("anls",),
        "0-1",
        "DocVQA: Average Normalized Levenshtein Similarity (threshold 0.5), the official script's rules",
    ),
    Term(
        ("relaxed_accuracy", "relaxed_accuracy_human", "relaxed_accuracy_augmented"),
        "0-1",
        "ChartQA: pix2struct's relaxed correctness (5% on numbers, exact otherwise), all questions and per "
        "subset",
    ),
    Term(
        ("chair_i", "chair_s", "object_recall"),
        "0-1",
        "CHAIR object hallucination of captions (docs/hallucination.md)",
    ),
    Term(
        ("chair_n_images", "chair_n_unannotated", "chair_n_mentions", "chair_n_hallucinated"),
        "count",
        "CHAIR's counts: images scored, images without annotation, object mentions, hallucinated mentions",
    ),
    Term(
        ("chair_n_recalled", "chair_n_objects"),
        "count",
        "annotated objects the captions mention, and all annotated objects (`object_recall`'s terms)",
    ),
    Term(
        ("pope_accuracy",),
        "0-1",
        "POPE: accuracy over all rows of every split (the task's primary metric)",
    ),
    Term(
        ("pope_<split>_accuracy", "pope_<split>_precision", "pope_<split>_recall", "pope_<split>_f1"),
        "0-1",
        "POPE per split (random, popular, adversarial), answers read by POPE's evaluate.py rule",
    ),
    Term(("pope_<split>_yes_ratio",), "0-1", "POPE: share of the split's answers read as yes"),
    Term(
        ("pope_<split>_n", "pope_<split>_doubtful_n", "pope_doubtful_answers_n", "pope_n", "pope_distinct_n"),
        "count",
        "POPE: rows per split, answers neither clearly yes nor no, all rows, distinct generations",
    ),
    Term(
        ("pope_strict_<split>_accuracy", "pope_strict_<split>_f1", "pope_strict_accuracy"),
        "0-1",
        "POPE with the stricter reading of the answers",
    ),
    Term(
        ("safety_flagged_n", "safety_flagged_rate"),
        "count, 0-1",
        "predictions the output screen flagged (personal data or offensive words)",
    ),
    Term(
        ("safety_flagged_pii_n", "safety_flagged_offensive_n", "safety_flagged_<kind>_n"),
        "count",
        "predictions with at least one finding of personal data / offensive words / that kind (email, url, "
        "phone, ip_address, credit_card); a prediction counts once however many findings it holds",
    ),
    Term(
        ("n_samples_evaluated", "n_samples_skipped"),
        "count",
        "skipped = samples whose image could not be read (listed in `predictions/skipped_samples.json`)",
    ),
    Term(
        ("n_samples_resumed",),
        "count",
        "samples whose predictions were taken from an interrupted attempt of this run (`resume`)",
    ),
)
