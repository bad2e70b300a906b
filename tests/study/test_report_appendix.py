"""Appendix: values read from the runs' environment and params; disagreements flagged."""

from __future__ import annotations

import pandas as pd
from report_store import environment

from vlm_quant.study.report.appendix import build_appendix


def _runs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": ["a" * 32, "b" * 32, "c" * 32],
            "label": ["fp16", "int8", "nf4"],
            "weights": ["pretrained"] * 3,
            "params.seed": ["0"] * 3,
            "params.engine": ["eager", "eager", "compiled"],
            "params.quant": ["fp16", "int8", "nf4"],
        }
    )


def test_hardware_settings_and_missing_environment_are_flagged():
    envs = {"a" * 32: environment(), "b" * 32: environment(gpu="NVIDIA A100-SXM4-40GB"), "c" * 32: None}
    appendix = build_appendix(_runs(), envs)
    warnings = "\n".join(appendix.warnings)
    assert f"no environment.json logged by: nf4 ({'c' * 32})" in warnings
    assert "runs disagree on hardware/system (GPU)" in warnings and "NVIDIA A100-SXM4-40GB" in warnings
    assert "runs disagree on engine: fp16: eager; int8: eager; nf4: compiled" in warnings
    sections = dict(appendix.sections)
    settings = sections["Evaluation settings"].set_index("Setting")["Value"]
    assert settings["seed"] == "0" and settings["model"] == "n/a"  # a param no run logged says so
    packages = sections["Package versions"].set_index("Package")["Version"]
    assert packages["torch"] == "2.6.0 (fp16, int8); n/a (nf4)"


def test_identical_runs_raise_no_flag():
    runs = _runs().iloc[:2]
    appendix = build_appendix(runs, {"a" * 32: environment(), "b" * 32: environment()})
    assert appendix.warnings == ()
    hardware = dict(appendix.sections)["Hardware and system software"]
    assert hardware["Driver"].tolist() == ["550.54.15"] * 2 and hardware["CUDA"].tolist() == ["12.4"] * 2
