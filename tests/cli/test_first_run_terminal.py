"""The first run's terminal, captured: every line is one of ours (issue 29).

The real first run (SmolVLM-256M random weights, 8 images) takes minutes; this runs the same command
(`vlm-quant evaluate --quant fp16 --first-run`, offline, in a child process whose stdout and stderr are
captured together) on a session tiny model with 2 images, so the same code paths print: the weights'
loading bar, the checkpoint's writing bar, the Java PTB tokenizer, the batch-1 check, the cost pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow

from vlm_quant.cli.first_run import FIRST_RUN_SIZING
from vlm_quant.cli.terminal import SUMMARY_ROWS

REPO = Path(__file__).resolve().parents[2]
SUMMARY_LABELS = "|".join(re.escape(label) for label in {row[0] for row in SUMMARY_ROWS} | {"energy"})
OURS = [
    re.compile(pattern)
    for pattern in (
        r"^first run: ",  # what was chosen and why; at the end, how it was sized and the full command
        r"^» \S",  # stage lines
        r"^captioning \(coco\): ",  # our progress bar of the quality pass
        r"^\S.* \(run [0-9a-f]{32}\)$",  # the summary's title
        rf"^  ({SUMMARY_LABELS}) ",
        r"^  RANDOM WEIGHTS: ",
        r"^tracking store: ",
        r"^open it: mlflow ui ",
        r"^ +then http://127\.0\.0\.1:5000/",
    )
]


def terminal_lines(text: str) -> list[str]:
    """What a terminal shows: progress bars redraw with carriage returns, each state one line here."""
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()]


def test_the_first_run_terminal_shows_only_our_lines(tiny_vlm_dirs, coco_dir, tracking_uri, tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",  # the offline first run: random weights' branch, no Hub call
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "TRANSFORMERS_VERBOSITY": "",  # the library's defaults, as a user has them
    }
    command = [sys.executable, "-m", "vlm_quant", "evaluate", "--quant", "fp16", "--first-run"]
    command += ["--model", str(tiny_vlm_dirs["idefics3"]), "--weights", "pretrained"]  # loads: its bar
    command += ["--data-dir", str(coco_dir), "--n-samples", "2", "--batch-size", "2"]
    command += ["--max-new-tokens", "3", "--cost-new-tokens", "2", "--idle-seconds", "0"]
    done = subprocess.run(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300
    )
    lines = terminal_lines(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:]

    foreign = [line for line in lines if not any(pattern.match(line) for pattern in OURS)]
    assert not foreign, "library lines on the terminal:\n" + "\n".join(foreign)
    # the checks ran (so their paths were exercised), sized for a first run, and said so
    assert any(
        re.match(r"^» batch invariance: 2 samples at batch 1 vs batch 2 .*\(2 of 2 identical\)$", line)
        for line in lines
    )
    assert any(line.startswith("» cost pass") for line in lines)
    note = lines[-1]
    assert note.startswith("first run: checks sized for a first run") and "--invariance-samples 35" in note

    # what was kept off the terminal is in the run's log; the run records the first-run sizing
    client = mlflow.MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("vlm-quant").experiment_id])
    assert run.data.params["invariance_samples"] == str(FIRST_RUN_SIZING["invariance_samples"])
    assert run.data.params["cost_samples"] == str(FIRST_RUN_SIZING["cost_samples"])
    run_log = Path(client.download_artifacts(run.info.run_id, "logs/run.log", str(tmp_path)))
    assert "pycocoevalcap.ptbtokenizer: PTBTokenizer tokenized" in run_log.read_text()
