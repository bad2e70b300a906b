"""NoCaps' per-domain CIDEr: each domain's images scored as a corpus of their own.

The NoCaps evaluation runs server-side on EvalAI (challenge 355) and returns four blocks, "in-domain",
"near-domain", "out-domain" and "entire", each with the full COCO caption metrics (nocaps-org/
updown-baseline ``updown/utils/evalai.py`` reads exactly these keys). The server's code is not in a
public repository we could read; the blocks are separate COCO caption evaluations of each domain's
images, which is how the public local reproductions score them (a Salesforce script by BLIP's author,
``nocaps_caption_eval(..., domain)`` and EVCap's scripts filter the annotation and result files per
domain, then run COCOEvalCap). So CIDEr's document frequencies (its IDF) come from that domain's
reference captions alone, and "entire" is not the image-weighted mean of the three. We do the same:
``cider_<domain>`` is pycocoevalcap's CIDEr-D over one domain's images and references; the overall
``cider`` is the usual score over all evaluated images.

A domain with fewer than ``MIN_IMAGES_FOR_CIDER`` evaluated images is absent with its reason, never 0:
with one image every n-gram has document frequency 1 = the corpus size, so every IDF is log(1) = 0
and CIDEr is 0 by construction, whatever the caption.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vlm_quant.tasks.caption_metrics import _tokenize
from vlm_quant.tasks.nocaps_data import NOCAPS_DOMAINS

MIN_IMAGES_FOR_CIDER = 2


def domain_metric(domain: str) -> str:
    """ "in-domain" -> "cider_in_domain"."""
    return "cider_" + domain.replace("-", "_")


def domain_cider(
    predictions: Mapping[int, str], references: Mapping[int, Sequence[str]], domain_of: Mapping[int, str]
) -> tuple[dict[str, float], dict[str, str]]:
    """({cider_<domain>: CIDEr (pycocoevalcap scale)}, {cider_<domain>: why it is absent})."""
    from pycocoevalcap.cider.cider import Cider

    gts, res = _tokenize(predictions, {i: references[i] for i in predictions})
    scores: dict[str, float] = {}
    absent: dict[str, str] = {}
    for domain in NOCAPS_DOMAINS:
        ids = [i for i in predictions if domain_of[i] == domain]
        name = domain_metric(domain)
        if len(ids) < MIN_IMAGES_FOR_CIDER:
            absent[name] = (
                f"{len(ids)} evaluated {domain} image(s): CIDEr's IDF needs at least "
                f"{MIN_IMAGES_FOR_CIDER} images (with one, every IDF is log(1) = 0)"
            )
            continue
        score, _ = Cider().compute_score({i: gts[i] for i in ids}, {i: res[i] for i in ids})
        scores[name] = float(score)
    return scores, absent


def domain_counts(ids: Sequence[int], domain_of: Mapping[int, str]) -> dict[str, float]:
    """{nocaps_n_<domain>: evaluated images of that domain} (run metrics, so the split is visible)."""
    return {
        "nocaps_n_" + d.replace("-", "_"): float(sum(1 for i in ids if domain_of[i] == d))
        for d in NOCAPS_DOMAINS
    }
