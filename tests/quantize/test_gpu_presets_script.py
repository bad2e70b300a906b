"""The GPU preset check script runs end to end on CPU with a tiny checkpoint (its smoke-test mode)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_presets_check.py"


def test_script_writes_json_and_markdown(tiny_vlm_dirs, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_presets_check", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setenv("OUT", str(tmp_path))
    argv = [
        "--device",
        "cpu",
        "--models",
        str(tiny_vlm_dirs["idefics3"]),
        "--presets",
        "int8",
        "int8-ao",
        "--new-tokens",
        "2",
        "--iterations",
        "1",
        "--seconds",
        "0",
        "--batch-size",
        "2",
        "--caption-batch",
        "1",
    ]
    assert script.main(argv) == 0
    rows = json.loads((tmp_path / "gpu_presets_check.json").read_text())["rows"]
    assert [(r["preset"], r["status"], r["realized"]["language"]) for r in rows] == [
        ("int8", "ok", "int8"),
        ("int8-ao", "ok", "int8wo"),
    ]
    assert all(r["size_on_disk_mib"] > 0 and r["latency_ms_p50_bs1"] > 0 for r in rows)
    table = (tmp_path / "gpu_presets_check.md").read_text()
    assert "| int8-ao | fp32 | fp32 | int8wo | fp32 | yes |" in table
