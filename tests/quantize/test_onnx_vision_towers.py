"""The vision tower of every tiny family through ONNX Runtime: exported at the inputs the model really
feeds it, run in place of the torch tower (float32 equal to torch, INT8 close), or refused with the
exporter's reason. The results are docs/onnx_vision_towers.md (generated here; the test fails when the
committed file is stale)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from quant_helpers import load_tiny
from tiny_vlms import TINY_FAMILIES, build_tiny_vlm

from vlm_quant.engines.generate import GenerationSettings, prepare_inputs, single_image_request
from vlm_quant.errors import UserError
from vlm_quant.quantize import fidelity, onnx_export
from vlm_quant.quantize.audit import audit_precision, verify_plan
from vlm_quant.quantize.backends import apply_plan
from vlm_quant.quantize.onnxruntime_backend import OrtSettings, ort_modules
from vlm_quant.quantize.presets import resolve_plan

pytest.importorskip("onnxruntime")
CPU = torch.device("cpu")
DOC = Path(__file__).resolve().parents[2] / "docs" / "onnx_vision_towers.md"
REGENERATE = "VLMQ_WRITE_DOCS=1 python -m pytest tests/quantize/test_onnx_vision_towers.py"
# The "dynamic shapes" column costs one extra dynamo export per family, about 60% of this module's time:
# the suite measures it for one family and takes the others' from the committed page; regenerating the
# page (VLMQ_WRITE_DOCS=1) measures it for every family.
DYNAMIC_MEASURED_IN_SUITE = ("qwen2_vl",)
# The page is written from results gathered across the per-family tests: under pytest-xdist they all run
# in one worker because `make test` distributes whole files (`--dist loadfile`); split over workers, the
# page check would see only a part and skip. (`--dist loadgroup` with an `xdist_group` mark does not group
# them with pytest 9.2 + pytest-xdist 3.8: measured, the mark is ignored.)
SIZES = ((640, 426), (480, 640))  # two COCO-like sizes: a tower whose input follows the image needs 2 graphs
_RESULTS: dict[str, dict[str, str]] = {}


@pytest.fixture(autouse=True, scope="module")
def _onnx_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLMQ_ONNX_CACHE", str(tmp_path_factory.mktemp("onnx-cache")))
        yield


@pytest.fixture(scope="module")
def tiny_dirs(tiny_vlm_dirs, tiny_family_dirs, tmp_path_factory):
    """The session's tiny checkpoints, plus any TINY_FAMILIES member the session fixtures do not build."""
    root = tmp_path_factory.mktemp("tiny-more")
    built = {**tiny_vlm_dirs, **tiny_family_dirs}
    return {f: built.get(f) or build_tiny_vlm(f, root / f) for f in TINY_FAMILIES}


def _inputs(loaded, coco_dir):
    image = Image.open(sorted((coco_dir / "val2017").glob("*.jpg"))[0]).convert("RGB")
    settings = GenerationSettings(3)
    return [
        prepare_inputs(
            loaded.processor,
            [single_image_request(image.resize(size), "Describe the image")],
            device=CPU,
            dtype=torch.float32,
            settings=settings,
        )
        for size in SIZES
    ]


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_vision_tower_runs_in_onnx_runtime_or_is_refused_with_the_exporters_reason(
    family, tiny_dirs, coco_dir
):
    loaded = load_tiny(tiny_dirs[family])
    vision_path = loaded.family.roles["vision"][0]
    tower = loaded.model.get_submodule(vision_path)
    inputs = _inputs(loaded, coco_dir)
    example = onnx_export.capture_vision_inputs(loaded.model, vision_path, inputs[0])
    row = {
        "tower": type(tower).__name__,
        "inputs": ", ".join(f"`{k}`" for k in example.tensors),
        "options": ", ".join(f"`{k}={v!r}`" for k, v in sorted(example.options.items())) or "none",
        "dynamic": (
            onnx_export.dynamic_shape_outcome(tower, example.per_image()[0])
            if os.environ.get("VLMQ_WRITE_DOCS") or family in DYNAMIC_MEASURED_IN_SUITE
            else committed_cell(family, "dynamic shapes (dynamo)")
        ),
    }
    _RESULTS[family] = row
    sequences = [fidelity.continue_greedily(loaded.model, loaded.processor, x, 2) for x in inputs]
    reference = [fidelity.capture(loaded.model, loaded.family, s) for s in sequences]
    shapes = {
        part.shape_key()
        for x in inputs
        for part in onnx_export.capture_vision_inputs(loaded.model, vision_path, x).per_image()
    }
    plan = resolve_plan("int8-vision-ort")
    settings = OrtSettings(example, (), (), "minmax", "cpu", {"model": f"tiny-{family}-towers-test"})
    try:
        applied = apply_plan(
            loaded.model, loaded.family, plan, device=CPU, compute_dtype=torch.float32, ort=settings
        )
    except UserError as error:
        assert "could not be exported to ONNX" in str(error) and ": " in str(error).split("ONNX:")[-1]
        row.update(status="refused", exporter="none", graphs="-", reason=str(error).split("ONNX: ")[-1])
        return
    after = [fidelity.capture(loaded.model, loaded.family, s) for s in sequences]
    metrics = fidelity.compare(reference, after)
    assert 0.95 < metrics["fidelity_vision_cosine_token_mean"] < 1.0  # int8 changed the tower, a little
    assert metrics["fidelity_top1_agreement_token_mean"] >= 0.5
    stand_in = ort_modules(loaded.model)[vision_path]
    assert stand_in.graphs_exported == len(shapes)  # one graph per distinct one-image input shape
    precision_map = audit_precision(loaded.model, loaded.family, plan)
    verify_plan(plan, precision_map, dtype=torch.float32)
    assert precision_map.roles()["vision"].realized == "ort-int8"
    nested = [p for p in loaded.family.roles["projector"] if p.startswith(vision_path + ".")]
    for path in nested:  # a projector inside the tower runs in the graph, float32, and the audit says so
        # (a ModuleList such as Qwen3-VL's deepstack mergers is recorded per called child)
        modules = precision_map.modules
        records = [r for name, r in modules.items() if name == path or name.startswith(path + ".")]
        assert records
        inside = f"inside {vision_path}'s graph"
        assert all(r.precision == "fp32" and inside in r.weight_type for r in records)
    settings_logged = applied.roles["vision"].settings
    row.update(
        status="works",
        exporter=settings_logged["ort_exporter"],
        graphs="one per input shape" if len(shapes) > 1 else "one (fixed input shape)",
        reason=settings_logged.get("ort_exporter_failures", "")
        + (f"; graph includes {', '.join(nested)} (kept float32)" if nested else ""),
    )


def committed_cell(family: str, column: str) -> str:
    """The committed page's cell of ``family`` in ``column`` (the cell text as written, unescaped)."""
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    for line in lines[1:]:  # the header; the |---| line does not start with "| "
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\) \| ", line.strip("| "))]
        if cells[0] == family:
            return cells[header.index(column)]
    return "(not on the committed page)"


def render(results: dict[str, dict[str, str]]) -> str:
    lines = [
        "# Vision towers through ONNX Runtime, per family",
        "",
        "Generated by `tests/quantize/test_onnx_vision_towers.py` over `tests/tiny_vlms.TINY_FAMILIES` "
        f"(regenerate: `{REGENERATE}`). Each tiny model's tower is captured at the inputs the model feeds",
        "it for a COCO image, exported (`torch.onnx.export(dynamo=True)`, else the TorchScript tracer with "
        "`grid_thw` baked in), quantized (`int8-vision-ort`) and run in place of the torch tower; the test",
        "checks the vision cosine against torch float32 and the audit. A refused family's `quant=*-ort` run "
        "exits with the exporter's reason. *Dynamic shapes* is what `dynamo=True` makes of the tower with",
        "every float input dimension marked `Dim.AUTO` (measured for every family when the page is",
        f"regenerated; the suite re-measures it for {', '.join(DYNAMIC_MEASURED_IN_SUITE)}); runs export one "
        "graph per input shape either way (metric `ort_graphs_exported`).",
        "",
        "| model type | tower | tensor inputs | options the model passes | status | exporter | graphs "
        "| dynamic shapes (dynamo) | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for family in sorted(results):
        r = results[family]
        cells = [
            family,
            f"`{r['tower']}`",
            r["inputs"],
            r["options"],
            r.get("status", "error"),
            r.get("exporter", "?"),
            r.get("graphs", "?"),
            r["dynamic"],
            r.get("reason", ""),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def test_docs_list_the_results_of_every_family():
    missing = [f for f in TINY_FAMILIES if f not in _RESULTS]
    if missing:
        pytest.skip(f"run with the per-family tests (missing {missing})")
    text = render(_RESULTS)
    if os.environ.get("VLMQ_WRITE_DOCS"):
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text)
    assert DOC.is_file() and DOC.read_text() == text, f"{DOC} is stale; regenerate it: {REGENERATE}"
