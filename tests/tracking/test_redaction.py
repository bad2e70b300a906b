"""Tokens and credentials never reach params, tags or artifacts."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from crash_helpers import build_vqa, evaluate_args, last_json

from vlm_quant.cli.commands import main
from vlm_quant.tracking.redact import MASK, redact, redact_obj

FAKE_HF = "hf_FakeTokenAbCdEfGhIjKlMnOpQrStUv123"
FAKE_ENV_ONLY = "s3cr3t-Value-no-known-shape-42"  # only the variable's name says it is a secret
FAKE_AWS_ID = "AKIAABCDEFGHIJKLMNOP"
FAKE_PASSWORD = "pg-Passw0rd-xyz"


@pytest.mark.parametrize(
    "text, secret",
    [
        (f"https://huggingface.co/datasets/x?token={FAKE_HF}", FAKE_HF),
        (f"/data/{FAKE_HF}/coco", FAKE_HF),
        (f"postgresql://mlflow:{FAKE_PASSWORD}@db.internal:5432/mlflow", FAKE_PASSWORD),
        (f"aws_secret_access_key={FAKE_PASSWORD}", FAKE_PASSWORD),
        (f"id {FAKE_AWS_ID} in a message", FAKE_AWS_ID),
        ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ],
)
def test_redact_masks_each_known_shape(text, secret):
    assert secret not in redact(text) and MASK in redact(text)


def test_redact_keeps_ordinary_text_and_masks_secret_env_values():
    for text in (
        "max_new_tokens=32",
        "tokenizers 0.21",
        "sqlite:///mlruns/mlflow.db",
        "https://user@host/x",
        "vision=int8,language=nf4",
        "Provide a one-sentence caption for the provided image.",
    ):
        assert redact(text) == text
    env = {"MY_SERVICE_TOKEN": FAKE_ENV_ONLY, "HOME": "/root", "SHORT_TOKEN": "1"}
    assert redact(f"value {FAKE_ENV_ONLY}!", env) == f"value {MASK}!"
    assert redact_obj({"a": [f"x{FAKE_HF}"], "n": 3}) == {"a": [f"x{MASK}"], "n": 3}


def test_a_run_with_secrets_in_env_config_and_paths_logs_none_of_them(
    tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_TOKEN", FAKE_HF)
    monkeypatch.setenv("MY_SERVICE_TOKEN", FAKE_ENV_ONLY)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_AWS_ID)
    data = build_vqa(tmp_path / FAKE_HF / "vqav2", coco_dir, n_images=3)  # the token is in data_dir
    args = evaluate_args(
        tiny_vlm_dirs["llava"],
        data,
        experiment="secrets",
        n_samples=3,
        batch_size=3,
        hf_dataset=f"someone/data?token={FAKE_HF}&aws_secret_access_key={FAKE_PASSWORD}",
        run_name=f"run-{FAKE_ENV_ONLY}",
        prompt=f"Answer briefly. {FAKE_AWS_ID}",
    )
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    run_id = last_json(result.output)["run_id"]
    client = mlflow.MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    texts = [*run.data.params.values(), *run.data.tags.values(), *run.data.params, *run.data.tags]
    folder = Path(client.download_artifacts(run_id, "", str(tmp_path / "artifacts")))
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {"config/resolved_config.yaml", "environment/environment.json", "predictions/partial.jsonl"} <= {
        p.relative_to(folder).as_posix() for p in files
    }
    texts += [p.read_bytes().decode("utf-8", errors="replace") for p in files]
    for secret in (FAKE_HF, FAKE_ENV_ONLY, FAKE_AWS_ID, FAKE_PASSWORD):
        leaks = [t[:200] for t in texts if secret in t]
        assert not leaks, (secret, leaks)
    assert MASK in run.data.params["hf_dataset"] and MASK in run.data.params["data_dir"]
    assert f"Answer briefly. {MASK}" in run.data.params["prompt"]  # the rest of a value is kept
