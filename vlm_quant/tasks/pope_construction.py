"""POPE questions built from COCO instance annotations, by the published rules (Li et al., 2023).

The rules are those of POPE's own code (github.com/RUCAIBox/POPE, ``main.py`` and ``utils.py``), given
an image's object list (its distinct categories):

- **images**: only those with at least ``k`` objects (``k`` = ``sample_num``, 3 by default); the
  statistics below are counted over the *selected* images only (POPE's 500), in their order;
- **positives**: the first ``k`` objects of the image's list;
- **one negative per positive**, never an object of the image nor a negative already taken for it:
  ``random``: a uniform draw among the objects seen in the selected images, redrawn until usable;
  ``popular``: the first usable object by number of selected images holding it (most first);
  ``adversarial``: the first usable object by number of selected images holding it *together with this
  positive*; when none is usable, a random draw as in ``random``. Ties keep the order in which the
  objects were first seen (images in order, objects in list order), as a stable sort of POPE's dicts does;
- **question**: "Is there a {object} in the image?", "an" before a, e, i, o, u, as POPE's files have it
  ("Is there an oven in the image?").

Where this differs, and why: POPE's object lists come from its own segmentation file in an order its
code does not fix; here an image's list is its distinct categories in a seeded shuffle (`image_objects`).
POPE draws from one unseeded stream; here each image and split has its own seeded stream, so a question
does not depend on which other images were drawn before it. When no usable object is left among those
seen (a handful of images, where POPE's loop would never end), the draw is among all the file's categories.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vlm_quant.tasks.coco_instances import CocoInstances

POPE_SPLITS = ("random", "popular", "adversarial")


def pope_question(obj: str) -> str:
    """POPE's question about ``obj``, with the article its files use."""
    article = "an" if obj[:1] in ("a", "e", "i", "o", "u") else "a"
    return f"Is there {article} {obj} in the image?"


def image_objects(instances: CocoInstances, image_id: int, seed: int) -> tuple[str, ...]:
    """The image's distinct categories in a seeded order (its first ``k`` are its positives)."""
    objects = sorted(instances.categories_of(image_id))
    random.Random(f"pope-{seed}-{image_id}").shuffle(objects)
    return tuple(objects)


def eligible_images(instances: CocoInstances, image_files: Mapping[int, str], k: int) -> list[int]:
    """Annotated images with a file and at least ``k`` distinct categories, sorted (POPE keeps only these)."""
    return sorted(i for i in instances.objects if i in image_files and len(instances.categories_of(i)) >= k)


@dataclass(frozen=True)
class ObjectStatistics:
    """Counts over the selected images (each image's object list counted once per object).

    ``seen``: objects in the order first seen (the random draws' pool); ``popular``: objects by number of
    images holding them, most first; ``co_occurring[o]``: the objects seen with ``o``, by number of images
    holding both, most first. Ties keep the first-seen order.
    """

    frequency: Counter
    seen: tuple[str, ...]
    popular: tuple[str, ...]
    co_occurring: dict[str, tuple[str, ...]]


def _most_first(counts: Counter) -> tuple[str, ...]:
    return tuple(sorted(counts, key=lambda o: -counts[o]))  # stable: ties stay in first-seen order


def object_statistics(object_lists: Iterable[Sequence[str]]) -> ObjectStatistics:
    frequency: Counter = Counter()  # a dict: keys stay in first-seen order
    together: dict[str, Counter] = {}
    for objects in object_lists:
        frequency.update(objects)
        for obj in objects:
            together.setdefault(obj, Counter()).update(o for o in objects if o != obj)
    return ObjectStatistics(
        frequency, tuple(frequency), _most_first(frequency), {o: _most_first(c) for o, c in together.items()}
    )


def _random_draw(pool: Sequence[str], usable: Callable[[str], bool], rng: random.Random) -> str | None:
    """Uniform draws from ``pool`` until a usable one (None when none is)."""
    if not any(usable(o) for o in pool):
        return None
    while True:
        obj = rng.choice(pool)
        if usable(obj):
            return obj


def draw_negatives(
    objects: Sequence[str], k: int, split: str, stats: ObjectStatistics, rng: random.Random,
    categories: Sequence[str],
) -> list[str]:
    """One negative for each of the first ``k`` objects (the positives), by the split's rule."""
    if split not in POPE_SPLITS:
        raise ValueError(f"unknown POPE split {split!r}")
    taken: list[str] = []
    for positive in objects[:k]:
        def usable(obj: str) -> bool:
            return obj not in objects and obj not in taken

        ranked = {"popular": stats.popular, "adversarial": stats.co_occurring.get(positive, ())}
        negative = next((o for o in ranked.get(split, ()) if usable(o)), None)
        if negative is None:
            negative = _random_draw(stats.seen, usable, rng) or _random_draw(categories, usable, rng)
        if negative is None:
            raise ValueError(f"no category is absent from an image holding {sorted(objects)}")
        taken.append(negative)
    return taken


@dataclass(frozen=True)
class BuiltQuestion:
    """One question of one split: the image, the probed object, the answer."""

    pope_split: str
    image_id: int
    object: str
    label: str  # "yes" | "no"

    @property
    def question(self) -> str:
        return pope_question(self.object)


def build_questions(
    instances: CocoInstances, image_ids: Sequence[int], *, k: int, seed: int
) -> tuple[list[BuiltQuestion], ObjectStatistics]:
    """The three splits' questions about ``image_ids`` (selected, in order; each with >= ``k`` objects).

    Per split and image: positive 1, its negative, positive 2, its negative, ... (POPE's file order).
    """
    lists = {i: image_objects(instances, i, seed) for i in image_ids}
    short = [i for i, objects in lists.items() if len(objects) < k]
    if short:
        raise ValueError(f"images {short[:5]} hold fewer than k={k} objects: POPE keeps only those with k")
    stats = object_statistics(lists[i] for i in image_ids)
    questions: list[BuiltQuestion] = []
    for split in POPE_SPLITS:
        for image_id in image_ids:
            objects = lists[image_id]
            rng = random.Random(f"pope-{seed}-{image_id}-{split}")
            negatives = draw_negatives(objects, k, split, stats, rng, instances.categories)
            for positive, negative in zip(objects[:k], negatives, strict=True):
                questions.append(BuiltQuestion(split, image_id, positive, "yes"))
                questions.append(BuiltQuestion(split, image_id, negative, "no"))
    return questions, stats


def construction_record(
    stats: ObjectStatistics, *, seed: int, k: int, n_annotated: int, n_eligible: int
) -> dict[str, Any]:
    """How built questions were drawn (the run's ``pope/construction.json``)."""
    return {
        "source": "built from COCO instance annotations by POPE's published rules (RUCAIBox/POPE)",
        "question": "Is there a/an {object} in the image? ('an' before a, e, i, o, u)",
        "seed": seed,
        "objects_per_image": k,
        "n_images_annotated": n_annotated,
        "n_images_eligible": n_eligible,  # annotated, with a file and >= k distinct categories
        "positives": "the first k of the image's distinct categories in a seeded order",
        "negatives": {
            "random": "seeded uniform draws among the selected images' objects until absent and new",
            "popular": "most frequent (images holding it) absent, new object; ties: first seen",
            "adversarial": "per positive: the absent, new object most often in an image with it; ties: first "
                           "seen; none left: a random draw",
        },
        "statistics_over": "the selected images",
        "category_frequency": {o: stats.frequency[o] for o in stats.popular},
    }
