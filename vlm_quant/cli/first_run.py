"""`make evaluate` on any machine: pick weights and data from what this machine can reach, and say so.

* Hub reachable: the real SmolVLM-256M-Instruct weights at a pinned revision (the commit the Hub
  reports now, logged as the run's ``revision``) on a seeded subset of COCO 2017 val captions: through
  `datasets` (``hf_dataset``, lmms-lab/COCO-Caption2017), or the local COCO folder when one is given.
* Hub unreachable: a local COCO folder, given or found beside the checkout
  (``../shared/coco_val2017_mini``), with random weights of the same architecture: the cost numbers
  are real, the quality numbers are meaningless (the run says so, in its tags, description and summary).

Either way the work after the quality pass is sized for a first run (``FIRST_RUN_SIZING``): batches of
4, a batch-1 check of 2 samples (not 35), a cost pass timing 2 images, 2 iterations after one warm-up
round. Measured on the 2-core machine with the defaults, the batch-1 check took 4 times and the cost
pass 20 times as long as the 8-image quality pass they follow. The run ends by printing the command of
the full measurement (`full_measurement_command`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError

MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"
N_SAMPLES = 8
# A first run shows every number once, in minutes on a CPU; the logged params say how it was sized.
# On a CPU the work is about one vision-tower pass per image generated: the quality pass makes 8; the
# defaults' batch-1 check made 8 more and their cost pass 46 (its throughput at batch 8 alone 32). Sized
# here: the check 2, the cost pass 20 (latency 4, throughput at batch 1: 4, at batch 4: 12).
FIRST_RUN_SIZING: dict[str, int] = {
    "batch_size": 4,  # quality pass in 2 batches; the cost pass's throughput at 1 and 4 (default 8)
    "invariance_samples": 2,  # batch-1 regenerations (default 35)
    "cost_samples": 2,  # images of the cost pass's micro-set (default 4)
    "cost_warmup": 1,  # warm-up rounds (default: 1 on CPU, 3 on GPU)
    "cost_iterations": 2,  # timed iterations per measurement (default: 3 on CPU, 20 on GPU)
}
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
            **FIRST_RUN_SIZING,
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
        **FIRST_RUN_SIZING,
    }
    return options, (
        f"first run: Hub not reachable, so RANDOM WEIGHTS of the {MODEL} architecture on a seeded "
        f"{N_SAMPLES}-image subset of {local}: cost numbers are real, quality numbers are "
        "meaningless."
    )


def full_measurement_command(quant: str, given: dict[str, Any]) -> str | None:
    """The note that ends a first run: how its checks were sized and the command of the full
    measurement (the config's defaults back); None when the user sized every check themselves."""
    defaults = {f.name: f.default for f in fields(ExperimentConfig)}
    sized = [name for name in FIRST_RUN_SIZING if name not in given]
    if not sized:
        return None
    flags = " ".join(f"--{name.replace('_', '-')} {defaults[name]}" for name in sized)
    values = ", ".join(f"{name}={FIRST_RUN_SIZING[name]}" for name in sized)
    return (
        f"first run: checks sized for a first run ({values}); the full measurement: "
        f"vlm-quant evaluate --quant {quant} --first-run {flags}"
    )
