"""The captioning task: COCO images, one prompt, scored with pycocoevalcap against the human captions."""

from __future__ import annotations

from typing import Any

from PIL import Image

from vlm_quant.config import DEFAULT_CAPTION_PROMPT
from vlm_quant.engines.generate import Request, single_image_request
from vlm_quant.errors import UserError
from vlm_quant.tasks.base import TaskData, TaskScores
from vlm_quant.tasks.caption_metrics import score_captions
from vlm_quant.tasks.captioning_data import read_split, select_ids
from vlm_quant.tasks.chair import score_chair
from vlm_quant.tasks.coco_instances import CocoInstances, find_instances
from vlm_quant.tasks.nocaps_data import read_local_nocaps
from vlm_quant.tasks.nocaps_metrics import domain_cider, domain_counts

CHAIR_VOCABULARY = "Rohrbach et al. 2018 synonyms (80 COCO categories); GT = instances + reference captions"
TAG_CHAIR_ABSENT = "vlm_quant.chair_absent_reason"
TAG_DOMAIN_CIDER_ABSENT = "vlm_quant.domain_cider_absent_reason"  # NoCaps domains too small to score
CHAIR_COCO_ONLY = (
    "CHAIR is COCO-only: its vocabulary is the 80 COCO categories and its ground truth COCO's instance "
    "annotations; NoCaps images are Open Images, with neither"
)


class CaptioningTask:
    """COCO captions: CIDEr (primary), BLEU-1..4, METEOR, ROUGE-L, SPICE when available; CHAIR."""

    name = "captioning"
    scoring_needs_java = True  # pycocoevalcap's PTB tokenizer and METEOR are Java programs
    table_columns = ("image_id", "prompt", "prediction", "references", "cider", "chair_hallucinated")

    def __init__(self) -> None:
        self._instances: CocoInstances | None = None  # CHAIR's instance annotations, when there are any
        self._spice = "auto"

    def prepare(self, cfg: Any) -> TaskData:
        self._spice = getattr(cfg, "spice", "auto")
        check_spice_available(self._spice)
        if cfg.dataset == "nocaps":
            split = read_nocaps(cfg)
        else:
            split = read_split(cfg.source, data_dir=cfg.data_dir, hf_dataset=cfg.hf_dataset, split=cfg.split)
        ids = select_ids(list(split.samples), cfg.n_samples, cfg.seed)
        nocaps = split.dataset == "nocaps"
        self._instances = None if nocaps else find_instances(split.data_dir, split.split, cfg.instances_file)
        chair_params = (
            {"chair_instances_file": self._instances.path, "chair_vocabulary": CHAIR_VOCABULARY}
            if self._instances else {}
        )
        return TaskData(
            split.dataset,
            split.split,
            split.samples,
            ids,
            split.open_image,
            split.data_dir,
            {"prompt": cfg.prompt or DEFAULT_CAPTION_PROMPT, **chair_params},
        )

    def request(self, data: TaskData, sample: Any, image: Image.Image) -> Request:
        return single_image_request(image, data.params["prompt"])

    def score(self, data: TaskData, predictions: dict[int, str]) -> TaskScores:
        references = {i: data.samples[i].references for i in predictions}
        scores = score_captions(predictions, references, spice=self._spice)
        chair = (
            score_chair(predictions, self._instances.objects, references) if self._instances else None
        )
        rows = []
        for image_id, text in predictions.items():
            sample = data.samples[image_id]
            row = {
                "sample_id": sample.sample_id,
                "image_id": image_id,
                "image_file": sample.image_file,
                "prompt": data.params["prompt"],
                "prediction": text,
                "references": list(sample.references),
            }
            row.update(scores.per_image.get(image_id, {}))
            row.update(chair_row(chair, image_id))
            rows.append(row)
        tags = {"vlm_quant.spice_skipped": scores.spice_skipped_reason} if scores.spice_skipped_reason else {}
        corpus = dict(scores.corpus)
        if data.dataset == "nocaps":
            domain_of = {i: data.samples[i].domain for i in predictions}
            domain_scores, absent = domain_cider(predictions, references, domain_of)
            corpus.update(domain_scores)
            corpus.update(domain_counts(list(predictions), domain_of))
            if absent:
                tags[TAG_DOMAIN_CIDER_ABSENT] = "; ".join(f"{k}: {v}" for k, v in absent.items())
            for row in rows:
                row["domain"] = domain_of[row["image_id"]]
        if chair is None:
            tags[TAG_CHAIR_ABSENT] = (
                CHAIR_COCO_ONLY
                if data.dataset == "nocaps"
                else "no COCO instance annotations (instances_file or annotations/)"
            )
        else:
            corpus.update(chair.metrics())
            if chair.chair_i is None:  # 0/0 is no measurement, not a perfect score
                n = chair.n_images
                tags[TAG_CHAIR_ABSENT] = f"chair_i: no caption of the {n} annotated images names an object"
        return TaskScores(corpus, rows, tags)

    def log_extras(self, tracker: Any, data: TaskData, scores: TaskScores) -> None:
        """Captioning logs nothing beyond the common predictions artifacts."""


def check_spice_available(mode: str) -> None:
    """spice=on without the CoreNLP jars: a UserError now, before any model loads, naming the fix."""
    if mode != "on":
        return
    from vlm_quant.tasks.caption_metrics import missing_spice_jars
    from vlm_quant.tasks.spice_setup import SETUP_COMMAND

    missing = missing_spice_jars()
    if missing:
        raise UserError(
            f"spice=on but SPICE's jars are missing ({', '.join(missing)}): run `{SETUP_COMMAND}` "
            f"(offline: `{SETUP_COMMAND} --from stanford-corenlp-full-2015-12-09.zip`), or use spice=auto."
        )


def read_nocaps(cfg: Any) -> Any:
    """NoCaps from its official local layout (`vlm_quant.tasks.nocaps_data`)."""
    if cfg.source != "local":
        raise UserError("dataset=nocaps reads the official local layout: use source=local with data_dir.")
    return read_local_nocaps(
        cfg.split, data_dir=cfg.data_dir, annotations_file=cfg.annotations_file, image_dir=cfg.image_dir
    )


def chair_row(chair: Any, image_id: int) -> dict[str, Any]:
    """Per-image CHAIR columns; an image without instance annotations says so instead of scoring 0."""
    if chair is None:
        return {}
    record = chair.per_image.get(image_id)
    if record is None:
        return {"chair_annotated": False, "chair_hallucinated": None}
    return {
        "chair_annotated": True,
        "chair_mentioned": list(record.mentioned),
        "chair_hallucinated": list(record.hallucinated),
        "chair_s": float(bool(record.hallucinated)),  # per-image CHAIR_s (its mean is the corpus CHAIR_s)
        "chair_i_mentions": len(record.mentioned),
        "chair_i_hallucinated": len(record.hallucinated),
    }
