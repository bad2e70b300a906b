"""`make evaluate` on any machine: pick weights and data from what this machine can reach, and say so.

* Hub reachable: the real SmolVLM-256M-Instruct weights at a pinned revision (the commit the Hub
  reports now, logged as the run's ``revision``) on a seeded subset of COCO 2017 val captions: through
  `datasets` (``hf_dataset``, lmms-lab/COCO-Caption2017), or the local COCO folder when one is given.
* Hub unreachable: a local COCO folder, given or found beside the checkout
  (``../shared/coco_val2017_mini``), with random weights of the same architecture: the cost numbers
  are real, the quality numbers are meaningless (the run says so, in its tags, description and summary).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlm_quant.errors import UserError

MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"
N_SAMPLES = 8
REPO = Path(__file__).resolve().parents[2]
LOCAL_COCO_CANDIDATES = (Path("../shared/coco_val2017_mini"), REPO.parent / "shared" / "coco_val2017_mini")


def hub_revision(model: str = MODEL, timeout_s: float = 10.0) -> str | None:
    """The model's current commit on the Hub, or None when the Hub cannot be reached (or is turned off)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return None
    try:
        from huggingface_hub import model_info

        return model_info(model, timeout=timeout_s).sha
    except Exception:  # noqa: BLE001 - offline, DNS, proxy, rate limit: all mean "not reachable now"
        return None


def find_local_coco(given: str = "") -> Path | None:
    """The given COCO folder, else the first candidate beside the checkout that holds captions."""
    for folder in [Path(given)] if given else list(LOCAL_COCO_CANDIDATES):
        if (folder / "annotations" / "captions_val2017.json").is_file():
            return folder.resolve()
    return None


def first_run_options(
    data_dir: str = "", *, revision_of: Callable[[str], str | None] = hub_revision
) -> tuple[dict[str, Any], str]:
    """Config values for a first evaluate here, and the sentence that says what was chosen and why."""
    revision = revision_of(MODEL)
    local = find_local_coco(data_dir)
    if data_dir and local is None:
        raise UserError(f"data_dir {data_dir} holds no annotations/captions_val2017.json")
    if revision:
        options: dict[str, Any] = {
            "model": MODEL,
            "weights": "pretrained",
            "revision": revision,
            "n_samples": N_SAMPLES,
        }
        if local:
            options.update(source="local", data_dir=str(local))
            where = f"the local COCO folder {local}"
        else:
            options.update(source="hf")
            where = "COCO 2017 val captions through `datasets` (hf_dataset)"
        return options, (
            f"first run: Hub reachable, so real {MODEL} weights (revision {revision[:12]}) on a "
            f"seeded {N_SAMPLES}-image subset of {where}."
        )
    if local is None:
        raise UserError(
            "first run: the Hugging Face Hub is not reachable and no local COCO folder was found "
            f"({', '.join(str(c) for c in LOCAL_COCO_CANDIDATES)}); pass DATA_DIR=/path/to/coco "
            "(a folder with val2017/ and annotations/captions_val2017.json)."
        )
    options = {
        "model": MODEL,
        "weights": "random",
        "source": "local",
        "data_dir": str(local),
        "n_samples": N_SAMPLES,
    }
    return options, (
        f"first run: Hub not reachable, so RANDOM WEIGHTS of the {MODEL} architecture on a seeded "
        f"{N_SAMPLES}-image subset of {local}: cost numbers are real, quality numbers are "
        "meaningless."
    )
