"""examples/quickstart.ipynb runs, top to bottom, on a CPU with a tiny model, so it cannot rot (issue 29).

The notebook reads its model, data and sizes from VLMQ_* environment variables (defaults: the real
SmolVLM-256M on Colab); here they point at a session tiny model and the real COCO slice, 2 images and a
few tokens. The paper cell writes the LaTeX source without compiling it (the paper's PDF is compiled in
tests/cli/test_paper_e2e.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[dev]' (nbformat, nbclient, ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[dev]' (nbformat, nbclient, ipykernel)")
pytest.importorskip("ipykernel", reason="pip install -e '.[dev]' (nbformat, nbclient, ipykernel)")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "examples" / "quickstart.ipynb"
FAST = (
    "--batch-size 2 --cost-samples 1 --cost-warmup 0 --cost-iterations 1 --cost-new-tokens 2 "
    "--idle-seconds 0 --log-model false --invariance-samples 0 --num-workers 0"
)


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_the_quickstart_notebook_runs_a_study_on_a_tiny_model(tiny_vlm_dirs, coco_dir, tmp_path, monkeypatch):
    work = tmp_path / "work"
    env = {
        "VLMQ_MODEL": str(tiny_vlm_dirs["idefics3"]),
        "VLMQ_DATA_DIR": str(coco_dir),
        "VLMQ_N_SAMPLES": "2",
        "VLMQ_MAX_NEW_TOKENS": "3",
        "VLMQ_PRESETS": "fp16,bf16",
        "VLMQ_EXTRA_ARGS": FAST,
        "VLMQ_COMPILE_PAPER": "0",
        "VLMQ_WORKDIR": str(work),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the notebook sets its own store
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs)
    assert "{'fp16': 'finished', 'bf16': 'finished'}" in text  # the sweep's two runs
    # the report's table (rendered Markdown) and every figure inline
    assert any("text/markdown" in output.get("data", {}) for output in outputs)
    figures = sorted((work / "report" / "figures").glob("*.png"))
    shown = [output for output in outputs if "image/png" in output.get("data", {})]
    assert figures and len(shown) == len(figures)
    assert "The PDF is skipped: VLMQ_COMPILE_PAPER=0" in text
    assert list((work / "report" / "paper").glob("*.tex"))
    assert "No CUDA GPU in this session" in text and "int8-vision-ort" in text  # the T4 cell on a CPU
