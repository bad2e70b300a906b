"""Does a logged model still predict what its run predicted? (`vlm-quant load RUN_ID --check N`)

Reads the run's resolved config and predictions from the store, loads the logged model back
(`models.logged_model`), regenerates the first ``n`` images of the run's split with the run's own
generation settings, inside the same batches as the run, and reports, per image, whether the
prediction is identical.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm_quant.config import ExperimentConfig
from vlm_quant.tracking import run_schema


@dataclass(frozen=True)
class ReloadCheck:
    """Per image id: (logged prediction, regenerated prediction); ``identical`` when all agree."""

    pairs: dict[Any, tuple[str, str]]

    @property
    def identical(self) -> bool:
        return all(a == b for a, b in self.pairs.values())


def run_artifact_text(run_id: str, path: str, tracking_uri: str | None) -> str:
    from vlm_quant.tracking.tracker import store_client

    with tempfile.TemporaryDirectory(prefix="vlmq-check-") as tmp:
        return Path(store_client(tracking_uri).download_artifacts(run_id, path, tmp)).read_text()


def check_predictions(run_id: str, loaded: Any, n: int, tracking_uri: str | None = None) -> ReloadCheck:
    """Regenerate the run's first ``n`` images with ``loaded`` (a LoadedLoggedModel) and compare."""
    import yaml

    from vlm_quant.run.quality_pass import run_quality_pass
    from vlm_quant.run.runner import prepare_experiment

    values = yaml.safe_load(run_artifact_text(run_id, run_schema.ARTIFACT_CONFIG, tracking_uri))
    # score=later: regenerating scores nothing, so a machine without Java may check a reload too
    cfg = ExperimentConfig.from_mapping({**values, "resume": "", "score": "later"})
    prepared = prepare_experiment(cfg)
    # Whole batches, composed as the quality pass composed them: a batch's padding (and LLM.int8()'s
    # outlier columns, chosen over the whole batch) change greedy outputs, so the first n images are
    # regenerated inside their own first batch(es), not as a smaller batch of their own.
    whole = -(-n // cfg.batch_size) * cfg.batch_size
    data = dataclasses.replace(prepared.data, ids=prepared.data.ids[:whole])
    engine = loaded.recipe.get("generation", {}).get("engine") or prepared.settings.engine
    settings = dataclasses.replace(prepared.settings, engine=engine)
    again = run_quality_pass(
        loaded.model, loaded.processor, prepared.task, data, batch_size=cfg.batch_size,
        max_image_side=cfg.max_image_side, settings=settings, dtype=prepared.dtype, progress=False,
    )
    logged = logged_predictions(run_id, tracking_uri)
    return ReloadCheck({i: (logged.get(i, ""), again.predictions.get(i, "")) for i in data.ids[:n]})


def logged_predictions(run_id: str, tracking_uri: str | None) -> dict[Any, str]:
    """The run's predictions by id: its scored predictions.jsonl, or, for a score=later run not scored yet,
    its predictions/partial.jsonl (by sample id)."""
    from vlm_quant.run.partial_predictions import ARTIFACT_PATH, parse_rows
    from vlm_quant.tracking.tracker import store_client

    tags = store_client(tracking_uri).get_run(run_id).data.tags
    if tags.get(run_schema.TAG_SCORING) == "deferred":
        rows = parse_rows(run_artifact_text(run_id, ARTIFACT_PATH, tracking_uri))
        return {r["sample_id"]: r["prediction"] for r in rows if "prediction" in r}
    rows = [json.loads(line) for line in
            run_artifact_text(run_id, run_schema.ARTIFACT_PREDICTIONS_JSONL, tracking_uri).splitlines()]
    return {r.get("question_id", r.get("image_id")): r["prediction"] for r in rows}
