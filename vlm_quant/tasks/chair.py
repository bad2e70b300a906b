"""CHAIR: object hallucination in captions (Rohrbach et al., 2018), as pure functions.

A caption's *object mentions* are the words and phrases of the published vocabulary
(`chair_vocabulary.SYNONYMS`, the paper's synonyms of the 80 COCO categories) found in it, each mapped to
its category. An image's *ground-truth objects* are the categories of its COCO instance annotations
together with the categories its human reference captions mention (as in the paper: annotators name
objects the 80-category boxes miss). A mention is *hallucinated* when its category is not among them.

- ``chair_i`` = hallucinated mentions / all mentions (0-1; a category mentioned twice counts twice).
- ``chair_s`` = captions with at least one hallucinated mention / captions (0-1).
- ``object_recall`` = ground-truth categories the caption mentions / ground-truth categories, pooled over
  images (0-1), so that a caption that hallucinates nothing by mentioning nothing is not a good caption.

Images without instance annotations are not scored (their objects are unknown, not none) and are counted.

Text processing (the reference's, without its NLTK/pattern downloads): lower case, tokens of letters
(``[a-z]+``), the longest match of a vocabulary phrase (up to three words) first, so "hot dog" is one hot
dog and no dog; the reference's phrase rules ("baby dog" is a dog, not a person; "train track" and "home
plate" name nothing); a token that is not a vocabulary word is singularized with `inflect` (a word that is
already one, like "glass" or "bus", is kept as it is: inflect would make "glas" and "bu"); "seat" beside
"toilet" is the toilet's seat, not a chair. Differences from the reference: the reference tokenizes with
NLTK (a "hot-dog" is one token there, two here) and singularizes every token first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vlm_quant.tasks.chair_vocabulary import PHRASE_RULES, SYNONYMS

MAX_PHRASE_WORDS = 3
_TOKEN = re.compile(r"[a-z]+")


@functools.cache
def _word_to_category() -> dict[str, str]:
    """Every vocabulary word/phrase -> its COCO category (a word in two lines keeps the first)."""
    table: dict[str, str] = {}
    for category, words in SYNONYMS.items():
        for word in words:
            table.setdefault(word, category)
    return table


@functools.cache
def _inflect_engine():
    import inflect

    return inflect.engine()


@functools.lru_cache(maxsize=65536)
def singular(word: str) -> str:
    """``word`` itself when the vocabulary knows it, else its singular (inflect), else itself."""
    if word in _word_to_category():
        return word
    result = _inflect_engine().singular_noun(word)
    return result if isinstance(result, str) and result else word


def _tokens(caption: str) -> list[str]:
    return [singular(t) for t in _TOKEN.findall(caption.lower())]


def caption_objects(caption: str) -> list[tuple[str, str]]:
    """(word or phrase as matched, COCO category) for each object mention, in caption order."""
    words, table = _tokens(caption), _word_to_category()
    mentions: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        for span in range(MAX_PHRASE_WORDS, 0, -1):
            phrase = " ".join(words[i : i + span])
            if span > 1 and len(words) - i < span:
                continue
            if span > 1 and phrase in PHRASE_RULES:
                target = PHRASE_RULES[phrase]
                if target is not None:
                    mentions.append((phrase, table[target]))
                i += span
                break
            if phrase in table:
                mentions.append((phrase, table[phrase]))
                i += span
                break
        else:
            i += 1
    if any(category == "toilet" for _, category in mentions):  # "the seat of the toilet" is no chair
        mentions = [(word, category) for word, category in mentions if word != "seat"]
    return mentions


def caption_categories(caption: str) -> set[str]:
    """The COCO categories a caption mentions."""
    return {category for _, category in caption_objects(caption)}


def ground_truth_objects(instance_categories: Iterable[str], references: Iterable[str]) -> frozenset[str]:
    """An image's objects: its instance annotations' categories and those its reference captions mention."""
    objects = set(instance_categories)
    for reference in references:
        objects |= caption_categories(reference)
    return frozenset(objects)


@dataclass(frozen=True)
class ChairImage:
    """One caption's CHAIR record: its mentions, the hallucinated ones, and the image's objects."""

    mentioned: tuple[str, ...]  # categories, one per mention (repeats kept)
    hallucinated: tuple[str, ...]  # categories of the hallucinated mentions (repeats kept)
    ground_truth: frozenset[str]

    @property
    def recalled(self) -> frozenset[str]:
        return self.ground_truth & set(self.mentioned)


def chair_image(caption: str, ground_truth: frozenset[str]) -> ChairImage:
    mentioned = tuple(category for _, category in caption_objects(caption))
    return ChairImage(mentioned, tuple(c for c in mentioned if c not in ground_truth), ground_truth)


@dataclass(frozen=True)
class ChairResult:
    """Corpus CHAIR over the annotated images (0-1 each; None when nothing to divide by)."""

    chair_i: float | None  # None: no caption mentioned any object
    chair_s: float | None  # None: no annotated image evaluated
    object_recall: float | None  # None: no ground-truth object
    n_images: int  # annotated images evaluated
    n_unannotated: int  # evaluated images without instance annotations, left out
    n_mentions: int
    n_hallucinated: int
    per_image: dict[int, ChairImage]
    n_objects: int = 0  # ground-truth objects summed over the images (object_recall's denominator)
    n_recalled: int = 0  # of those, mentioned by the caption (object_recall's numerator)

    def metrics(self) -> dict[str, float]:
        """Run metrics; a ratio with nothing to divide by is absent, never 0."""
        out: dict[str, float] = {
            "chair_n_images": float(self.n_images),
            "chair_n_unannotated": float(self.n_unannotated),
            "chair_n_mentions": float(self.n_mentions),
        }
        for name in ("chair_i", "chair_s", "object_recall"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def counts(self) -> dict[str, int]:
        """The numerators and denominators behind the three ratios, so a reader can check each one."""
        return {
            "chair_n_hallucinated": self.n_hallucinated, "chair_n_objects": self.n_objects,
            "chair_n_recalled": self.n_recalled,
        }


def score_chair(
    captions: Mapping[int, str],
    instance_categories: Mapping[int, Iterable[str]],
    references: Mapping[int, Iterable[str]],
) -> ChairResult:
    """CHAIR of ``captions`` (image id -> caption) against the images' objects.

    ``instance_categories`` holds an entry (possibly empty) for every *annotated* image; an image absent
    from it has unknown objects and is counted in ``n_unannotated``, not scored.
    """
    per_image: dict[int, ChairImage] = {}
    for image_id, caption in captions.items():
        if image_id in instance_categories:
            truth = ground_truth_objects(instance_categories[image_id], references.get(image_id, ()))
            per_image[image_id] = chair_image(caption, truth)
    n_mentions = sum(len(r.mentioned) for r in per_image.values())
    n_hallucinated = sum(len(r.hallucinated) for r in per_image.values())
    n_truth = sum(len(r.ground_truth) for r in per_image.values())
    n_recalled = sum(len(r.recalled) for r in per_image.values())
    return ChairResult(
        chair_i=n_hallucinated / n_mentions if n_mentions else None,
        chair_s=sum(bool(r.hallucinated) for r in per_image.values()) / len(per_image) if per_image else None,
        object_recall=n_recalled / n_truth if n_truth else None,
        n_images=len(per_image),
        n_unannotated=len(captions) - len(per_image),
        n_mentions=n_mentions,
        n_hallucinated=n_hallucinated,
        per_image=per_image,
        n_objects=n_truth,
        n_recalled=n_recalled,
    )
