"""The captioning task: COCO images, one prompt, scored with pycocoevalcap against the human captions."""

from __future__ import annotations

from typing import Any

from PIL import Image

from vlm_quant.config import DEFAULT_CAPTION_PROMPT
from vlm_quant.engines.generate import Request, single_image_request
from vlm_quant.tasks.base import TaskData, TaskScores
from vlm_quant.tasks.caption_metrics import score_captions
from vlm_quant.tasks.captioning_data import read_split, select_ids


class CaptioningTask:
    """COCO captions: CIDEr (primary), BLEU-1..4, METEOR, ROUGE-L, SPICE when available."""

    name = "captioning"
    table_columns = ("image_id", "prompt", "prediction", "references", "cider")

    def prepare(self, cfg: Any) -> TaskData:
        split = read_split(cfg.source, data_dir=cfg.data_dir, hf_dataset=cfg.hf_dataset, split=cfg.split)
        ids = select_ids(list(split.samples), cfg.n_samples, cfg.seed)
        return TaskData(
            split.dataset,
            split.split,
            split.samples,
            ids,
            split.open_image,
            split.data_dir,
            {"prompt": cfg.prompt or DEFAULT_CAPTION_PROMPT},
        )

    def request(self, data: TaskData, sample: Any, image: Image.Image) -> Request:
        return single_image_request(image, data.params["prompt"])

    def score(self, data: TaskData, predictions: dict[int, str]) -> TaskScores:
        references = {i: data.samples[i].references for i in predictions}
        scores = score_captions(predictions, references)
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
            rows.append(row)
        tags = {"vlm_quant.spice_skipped": scores.spice_skipped_reason} if scores.spice_skipped_reason else {}
        return TaskScores(dict(scores.corpus), rows, tags)

    def log_extras(self, tracker: Any, data: TaskData, scores: TaskScores) -> None:
        """Captioning logs nothing beyond the common predictions artifacts."""
