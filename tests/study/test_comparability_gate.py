"""One comparability gate: every refusal case through `compare`, `paper` and `slides` as a user types them.

A quality refusal: all three exit 2 with the identical message and write nothing. A cost refusal: all
three write their output without a cost table and say why (the gate's own message); the paper and the
slides state no cost at all. Settings a run may leave unlogged compare as documented in
`comparability` (one process = world size 1; ONNX Runtime's provider only between ORT runs).
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from report_store import Store, StoreWriter, _params, caption_rows, cost_metrics, environment

from vlm_quant.cli.commands import main

# param -> (fp16's value, int8's value); None: the run does not log the param.
QUALITY_CASES = {
    "ids_hash": ("ab12cd34", "ffff0000"),
    "seed": ("0", "1"),
    "prompt": ("Describe the image in one sentence.", "Caption this."),
    "dataset": ("coco", "nocaps"),
    "split": ("val2017", "train2017"),
    "shots": (None, "2"),
    "pope_source": ("coco-instances", "pope-official"),
    "model": ("HuggingFaceTB/SmolVLM-256M-Instruct", "HuggingFaceTB/SmolVLM-500M-Instruct"),
    "revision": ("main", "abc123"),
    "max_new_tokens": ("8", "3"),
    "max_image_side": ("512", "384"),
    "image_splitting": ("off", "on"),
    "batch_size": ("4", "2"),
    "image_processor_backend": ("torchvision", "pil"),
}
COST_CASES = {
    "device": ("cuda", "cpu"),
    "gpu_name": ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"),
    "dtype": ("float16", "float32"),
    "engine_resolved": ("eager", "static-cache"),
    "cost_samples": ("4", "8"),
    "cost_warmup": ("3", "1"),
    "cost_iterations": ("20", "3"),
    "cost_seconds": ("5.0", "0.0"),
    "cost_new_tokens": ("32", "8"),
    "cost_batch_sizes": ("1,8,32", "1,8"),
    "distributed_world_size": (None, "2"),
    "ort_execution_provider": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "pue": ("1.0", "1.5"),
    "country_iso_code": ("USA", "FRA"),
}
ACCEPTED_CASES = {  # not a difference: the cost table stays
    "distributed_world_size": (None, "1"),  # a single-process run is world size 1
    "ort_execution_provider": (None, "CPUExecutionProvider"),  # only one run used ONNX Runtime
    "pue": ("1", "1.0"),  # one number
}
# Every phrase a sentence stating a cost would hold (results_prose.AXES nouns, winners, the cost table).
COST_WORDS = ("median latency", "peak VRAM", "energy per image", "size on disk", "Lowest", "tab:cost")


def _store(
    writer: StoreWriter, name: str, param: str, values: tuple[str | None, str | None], weights="pretrained"
) -> Store:
    exp = writer.experiment(name)
    scores = np.linspace(0.5, 1.0, 4)
    runs = {}
    for quant, value, scale in (("fp16", values[0], 1.0), ("int8", values[1], 0.7)):
        params = _params(quant, weights, writer.root / "data", n_samples="4")
        params.pop(param, None)
        if value is not None:
            params[param] = value
        rows = caption_rows(scores, ["a dog"] * 4)  # one output: no qualitative figure to draw (fast)
        metrics = {"cider": float(np.mean(scores)), **cost_metrics(scale)}
        runs[quant] = writer.run(exp, quant, params=params, metrics=metrics, rows=rows, env=environment())
    return Store(writer.uri, writer.root, name, runs, "", writer.root / "data")


def _tex(text: str) -> str:
    """``text`` as the paper sets it (pdflatex escapes of the characters these messages hold)."""
    return text.replace("_", r"\_").replace("<", r"\textless{}").replace(">", r"\textgreater{}")


def _invoke(command: str, store: Store, out_dir) -> object:
    args = [command, "--experiment", store.experiment, "--out-dir", str(out_dir), "--bootstrap", "50"]
    args += ["--tracking-uri", store.uri, "--no-log"]
    if command != "compare":
        args.append("--no-compile")
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("param", sorted(QUALITY_CASES))
def test_a_quality_refusal_is_the_same_exit_and_message_in_compare_paper_and_slides(
    param, store_writer, tmp_path
):
    store = _store(store_writer, f"gate-quality-{param}", param, QUALITY_CASES[param])
    messages = {}
    for command in ("compare", "paper", "slides"):
        result = _invoke(command, store, tmp_path / command)
        assert result.exit_code == 2, (command, result.output)
        assert "Traceback" not in result.output
        messages[command] = result.stderr
        assert not (tmp_path / command).exists(), f"{command} wrote files for refused runs"
    assert messages["compare"] == messages["paper"] == messages["slides"]
    assert messages["compare"].startswith(f"error: runs are not comparable: parameter '{param}' differs")
    assert all(run_id in messages["compare"] for run_id in store.runs.values())


@pytest.mark.parametrize("param", sorted(COST_CASES))
def test_a_cost_refusal_leaves_out_every_cost_and_says_why_in_compare_paper_and_slides(
    param, store_writer, tmp_path
):
    store = _store(store_writer, f"gate-cost-{param}", param, COST_CASES[param])
    headline = f"parameter '{param}' differs between them"
    tex_headline = _tex(headline)
    for command in ("compare", "paper", "slides"):
        result = _invoke(command, store, tmp_path / command)
        assert result.exit_code == 0, (command, result.output)

    report = tmp_path / "compare"
    assert not (report / "results_cost.tex").exists()
    cost_section = (report / "results.md").read_text().split("## Cost")[1]
    assert f"cost not compared: {headline}" in cost_section and "Latency" not in cost_section

    for kind in ("paper", "slides"):
        assert not (tmp_path / kind / "results_cost.tex").exists()  # the report under it refused too
        tex = (tmp_path / kind / kind / f"{kind}.tex").read_text()
        assert f"Costs are not compared: {tex_headline}" in tex, kind
        found = [word for word in COST_WORDS if word in tex]
        assert not found, f"{kind} states a cost although costs are refused: {found}"
    paper = (tmp_path / "paper" / "paper" / "paper.tex").read_text()
    for name, value in zip(("fp16", "int8"), COST_CASES[param], strict=True):  # each run's value
        unlogged = "'1' (<not logged>: implied)" if param == "distributed_world_size" else "<not logged>"
        assert f"{name}: {_tex(unlogged if value is None else repr(value))}" in paper


@pytest.mark.parametrize("param", sorted(ACCEPTED_CASES))
def test_an_unlogged_or_equal_setting_keeps_the_cost_table(param, store_writer, tmp_path):
    store = _store(store_writer, f"gate-accepted-{param}", param, ACCEPTED_CASES[param])
    for command in ("compare", "paper"):
        result = _invoke(command, store, tmp_path / command)
        assert result.exit_code == 0, (command, result.output)
    assert (tmp_path / "compare" / "results_cost.tex").is_file()
    paper = (tmp_path / "paper" / "paper" / "paper.tex").read_text()
    assert r"\input{tables/results_cost.tex}" in paper and "median latency" in paper


@pytest.mark.parametrize("param", ["max_new_tokens", "engine_resolved"])
def test_random_weight_runs_whose_costs_differ_leave_nothing_to_compare(param, store_writer, tmp_path):
    """Random-weight runs are cost-only: a cost refusal refuses them whole, exit 2 in all three commands."""
    values = QUALITY_CASES.get(param) or COST_CASES[param]
    store = _store(store_writer, f"gate-random-{param}", param, values, weights="random")
    messages = set()
    for command in ("compare", "paper", "slides"):
        result = _invoke(command, store, tmp_path / command)
        assert result.exit_code == 2, (command, result.output)
        assert not (tmp_path / command).exists()
        messages.add(result.stderr)
    (message,) = messages
    assert message.startswith(f"error: runs are not comparable: parameter '{param}' differs")
    assert "random weights" in message
