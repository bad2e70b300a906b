"""`make evaluate`'s first run: Hub faked reachable / unreachable at the loading boundary (no network)."""

from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace

import huggingface_hub
import pytest

from vlm_quant.cli.first_run import (
    FIRST_RUN_SIZING,
    MODEL,
    first_run_options,
    full_measurement_command,
    hub_revision,
)
from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError


def fake_hub(monkeypatch, reachable: bool) -> list[str]:
    asked = []

    def model_info(repo_id, timeout=None):
        asked.append(repo_id)
        if not reachable:
            raise OSError("Temporary failure in name resolution")
        return SimpleNamespace(sha="0123456789abcdef" * 2 + "01234567")

    monkeypatch.setattr(huggingface_hub, "model_info", model_info)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    return asked


def test_hub_reachable_means_real_weights_at_a_pinned_revision_on_datasets_coco(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no ../shared here
    monkeypatch.setattr("vlm_quant.cli.first_run.LOCAL_COCO_CANDIDATES", ())
    asked = fake_hub(monkeypatch, reachable=True)
    options, sentence = first_run_options("")
    assert asked == [MODEL]
    assert options["weights"] == "pretrained" and options["revision"].startswith("0123456789ab")
    assert options["source"] == "hf" and options["n_samples"] == 8
    assert "real" in sentence and "RANDOM" not in sentence


def test_hub_unreachable_means_random_weights_on_the_local_coco_folder_with_the_banner(monkeypatch, coco_dir):
    fake_hub(monkeypatch, reachable=False)
    options, sentence = first_run_options(str(coco_dir))
    assert options["weights"] == "random" and options["data_dir"] == str(coco_dir.resolve())
    assert "revision" not in options and "RANDOM WEIGHTS" in sentence and "meaningless" in sentence
    monkeypatch.setattr("vlm_quant.cli.first_run.LOCAL_COCO_CANDIDATES", (coco_dir,))
    assert first_run_options("")[0]["data_dir"] == str(coco_dir.resolve())  # found, not given


def test_no_hub_and_no_local_coco_is_a_clear_error(monkeypatch):
    fake_hub(monkeypatch, reachable=False)
    monkeypatch.setattr("vlm_quant.cli.first_run.LOCAL_COCO_CANDIDATES", ())
    with pytest.raises(UserError, match="DATA_DIR"):
        first_run_options("")


def test_hf_hub_offline_never_asks_the_hub(monkeypatch):
    asked = fake_hub(monkeypatch, reachable=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_revision() is None and asked == []


def test_a_first_run_is_sized_down_and_names_the_full_measurement(monkeypatch, coco_dir):
    fake_hub(monkeypatch, reachable=False)
    options, _ = first_run_options(str(coco_dir))
    assert {k: options[k] for k in FIRST_RUN_SIZING} == FIRST_RUN_SIZING
    defaults = {f.name: f.default for f in fields(ExperimentConfig)}
    assert options["invariance_samples"] < defaults["invariance_samples"]  # a few samples, not 35
    note = full_measurement_command("int8", {"batch_size": "2"})
    # the defaults come back for what the first run sized; what the user gave stays theirs
    assert "vlm-quant evaluate --quant int8 --first-run --invariance-samples 35 --cost-samples 4" in note
    assert "--cost-iterations -1" in note and "--batch-size" not in note and "batch_size=4" not in note
    assert full_measurement_command("fp16", dict.fromkeys(FIRST_RUN_SIZING, "1")) is None
