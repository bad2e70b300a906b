"""Shared pieces of the crash-safety tests: a tiny VQA split, CLI arguments, child processes, store reads.

VQA is used wherever a process must finish on its own: its scoring is pure Python, whereas caption
scoring starts a METEOR JVM (~20 s on 2 cores) in every new process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).parent / "run" / "crash_child.py"
FAST = {
    "cost-samples": "1",
    "cost-iterations": "1",
    "cost-warmup": "0",
    "cost-new-tokens": "2",
    "idle-seconds": "0",
    "log-model": "false",
    "max-new-tokens": "4",
}
ANSWERS = ["yes"] * 6 + ["no"] * 2 + ["2", "two"]


def build_vqa(root: Path, coco_dir: Path, n_images: int = 6) -> Path:
    """An official-layout VQAv2 folder (one question per real COCO image, 10 human answers)."""
    split = "val2014"
    (root / split).mkdir(parents=True, exist_ok=True)
    questions, annotations = [], []
    for path in sorted((coco_dir / "val2017").glob("*.jpg"))[:n_images]:
        image_id = int(path.stem)
        target = root / split / f"COCO_{split}_{image_id:012d}.jpg"
        if not target.exists():
            target.symlink_to(path.resolve())
        qid = image_id * 10
        questions.append({"image_id": image_id, "question": "Is there a person?", "question_id": qid})
        annotations.append(
            {
                "question_id": qid,
                "image_id": image_id,
                "question_type": "is there a",
                "answer_type": "yes/no",
                "multiple_choice_answer": "yes",
                "answers": [
                    {"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                    for i, a in enumerate(ANSWERS)
                ],
            }
        )
    (root / f"v2_OpenEnded_mscoco_{split}_questions.json").write_text(json.dumps({"questions": questions}))
    (root / f"v2_mscoco_{split}_annotations.json").write_text(json.dumps({"annotations": annotations}))
    return root


def evaluate_args(
    model: Path, data_dir: Path, *, experiment: str, task: str = "vqa", **extra: Any
) -> list[str]:
    """`vlm-quant evaluate` arguments of a tiny, fast configuration (extra: option=value, '_' -> '-')."""
    options = {
        "model": str(model),
        "data-dir": str(data_dir),
        "task": task,
        "experiment": experiment,
        "seed": "1",
        **FAST,
        **({"spotcheck-n": "0"} if task == "vqa" else {}),
    }
    options.update({k.replace("_", "-"): str(v) for k, v in extra.items()})
    args = ["evaluate", "--no-progress", "--json"]
    for key, value in options.items():
        args += [f"--{key}", value]
    return args


def child_env(tracking_uri: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_RUN_ID", "PYTEST_"))}
    env.update({"MLFLOW_TRACKING_URI": tracking_uri, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra})
    return env


def start_child(
    args: list[str], env: dict[str, str], cwd: Path, log_name: str, slow: bool = True, group: bool = False
) -> subprocess.Popen:
    """`vlm-quant <args>` in its own process (through crash_child.py: generate() slowed when asked);
    ``group``: in its own session and process group (pgid = its pid), as a shell starts a job, so a
    test can signal the whole group (`os.killpg`) as a terminal's Ctrl-C or a job scheduler does."""
    log = open(cwd / f"{log_name}.log", "w")  # noqa: SIM115 - owned by the process object
    entry = [str(CHILD)] if slow else ["-m", "vlm_quant"]
    return subprocess.Popen(
        [sys.executable, *entry, *args], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=group,
    )


def survivors(processes: list[Any], within_s: float) -> list[Any]:
    """The ``processes`` (psutil) still alive after ``within_s`` seconds (a zombie, dead but not yet
    reaped by whoever adopted it, counts as gone)."""
    import psutil

    def alive(process: Any) -> bool:
        try:
            return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and any(alive(p) for p in processes):
        time.sleep(0.1)
    return [p for p in processes if alive(p)]


def child_log(cwd: Path, log_name: str) -> str:
    return (cwd / f"{log_name}.log").read_text(errors="replace")


def runs_of(client: Any, experiment: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def artifact_root(run: Any) -> Path:
    uri = run.info.artifact_uri
    return Path(uri.removeprefix("file://"))


def partial_rows(run: Any) -> list[dict[str, Any]]:
    """The rows of a run's predictions/partial.jsonl, read straight from the local artifact store."""
    path = artifact_root(run) / "predictions" / "partial.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # being rewritten right now
            break
    return rows


def journal_rows(run: Any) -> list[dict[str, Any]]:
    """The rows of a run's local prediction journal (synced every batch), [] when there is none."""
    from vlm_quant.run.partial_predictions import ARTIFACT_NAME, journal_folder

    path = journal_folder(run.info.run_id) / ARTIFACT_NAME
    rows = []
    for line in (path.read_text() if path.is_file() else "").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            break
    return rows


def wait_for_rows(
    client: Any, experiment: str, proc: subprocess.Popen, n: int, timeout_s: float, read: Any = None
) -> Any:
    """Poll until the child's run has >= n rows (``read``: partial_rows, or journal_rows); the run.
    Fails on timeout or early exit."""
    read = read or partial_rows
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"child exited early with status {proc.returncode}")
        runs = runs_of(client, experiment)
        if runs and len(read(runs[0])) >= n:
            return runs[0]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    raise AssertionError(f"no {n} rows ({read.__name__}) within {timeout_s} s")


def last_json(output: str) -> dict[str, Any]:
    """The JSON object a command prints last (log lines may precede it)."""
    return json.loads(output[output.rindex("\n{") + 1 :] if "\n{" in output else output[output.index("{") :])


def predictions(client: Any, run_id: str, tmp: Path) -> list[dict[str, Any]]:
    local = client.download_artifacts(run_id, "predictions/predictions.jsonl", str(tmp))
    return [json.loads(line) for line in Path(local).read_text().splitlines()]


def client_for(uri: str) -> Any:
    return mlflow.MlflowClient(uri)
