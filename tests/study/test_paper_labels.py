"""The paper, slides, tables and appendix describe what ran, never what was asked for.

Stores (report_store.py): 'cpu' runs asked quant=fp16 and computed in float32 (one with bitsandbytes
int8 and NF4 layers); 'labels' runs asked int8-ao, w8a8-ao, int8-vision-ort, cpu-fast and ar-w4 with
the compiled engine, ran static-cache, and the ar-w4 run computed its other roles in bfloat16 against
a float32 baseline; 'labels-random' holds random-weight runs only.
"""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from vlm_quant.study.paper import results_prose as rp
from vlm_quant.study.paper import setup_prose as sp
from vlm_quant.study.paper.build import build_draft, load_study
from vlm_quant.study.paper.tex import Stated

AR_W4 = "ar-w4 (language)"
LLM_INT8 = r"LLM.int8()~\cite{dettmers2022llmint8}"
TORCHAO = r"torchao~\cite{or2025torchao}"
ORT = r"ONNX Runtime~\cite{onnxruntime}"


def plain(tex: str) -> str:
    """The LaTeX without the break hints ``tt`` puts after - . _ / (so values read as logged)."""
    return tex.replace(r"\linebreak[0]", "")


def _study(store, experiment, tmp_path_factory):
    out = tmp_path_factory.mktemp(experiment)
    return load_study(out, experiment=experiment, tracking_uri=store.uri, n_resamples=200)


@pytest.fixture(scope="module")
def labels_study(labels_store, tmp_path_factory):
    return _study(labels_store, "labels", tmp_path_factory)


@pytest.fixture(scope="module")
def cpu_study(cpu_store, tmp_path_factory):
    return _study(cpu_store, cpu_store.experiment, tmp_path_factory)


@pytest.fixture(scope="module")
def labels_paper(labels_study):
    return plain((build_draft(labels_study, "paper", compile=False).folder / "paper.tex").read_text())


def row(study, label):
    return study.runs[study.runs["label"] == label].iloc[0]


def test_a_float32_run_is_called_float32_in_the_methods_and_the_slides(cpu_study):
    text = plain(" ".join(sp.precision_sentences(cpu_study, Stated())))
    fp32 = r"fp32: vision encoder \texttt{fp32}, projector \texttt{fp32}, language model \texttt{fp32}, "
    assert fp32 + r"LM head \texttt{fp32}, computing in \texttt{float32}" in text
    assert r"int8 (language): vision encoder \texttt{fp32}, projector \texttt{fp32}, language model " in text
    assert "fp16" not in text  # every run asked quant=fp16; none computed in it
    slides = plain((build_draft(cpu_study, "slides", compile=False).folder / "slides.tex").read_text())
    assert r"fp32 & \texttt{fp32} & \texttt{fp32} & \texttt{fp32} & \texttt{fp32} & float32 \\" in slides
    assert "fp16" not in slides


def test_static_cache_is_not_called_compiled(labels_study, labels_paper):
    text = plain(" ".join(sp.setup_sentences(labels_study, Stated())))
    assert r"with the \texttt{static-cache} engine (\texttt{compiled} requested)" in text
    assert r"the \texttt{compiled} engine" not in labels_paper
    appendix = labels_study.report.out_dir.joinpath("appendix.md").read_text()
    assert "| engine_resolved | static-cache |" in appendix


@pytest.mark.parametrize(
    ("label", "cited"),
    [
        ("int8wo (language)", [TORCHAO]),  # int8-ao
        ("w8a8 (language)", [TORCHAO]),  # w8a8-ao
        ("ort-int8 (vision)", [ORT]),  # int8-vision-ort
        ("int8wo (language) + ort-int8 (vision)", [TORCHAO, ORT]),  # cpu-fast
        (AR_W4, [r"AutoRound~\cite{cheng2023autoround}"]),
        ("fp32", []),
    ],
)
def test_each_run_cites_the_method_whose_layers_it_held_not_its_preset_name(labels_study, label, cited):
    from vlm_quant.study.paper.citations import method_citations

    one = labels_study.runs[labels_study.runs["label"] == label]
    assert one["params.quant"].iat[0] != "fp16" or label == "fp32"
    assert method_citations(one) == cited


def test_the_paper_cites_no_llm_int8_where_no_bitsandbytes_layer_ran(labels_paper):
    assert "dettmers2022llmint8" not in labels_paper
    assert f"Quantization methods: {TORCHAO}, {ORT}, AutoRound~\\cite{{cheng2023autoround}}." in labels_paper


def test_a_bitsandbytes_run_cites_llm_int8_and_nf4_whatever_its_preset(cpu_study):
    # Every cpu run asked quant=fp16; two of them hold bitsandbytes int8 / NF4 layers (the audit).
    tex = (build_draft(cpu_study, "paper", compile=False).folder / "paper.tex").read_text()
    assert f"Quantization methods: {LLM_INT8}, NF4~\\cite{{dettmers2023qlora}}." in tex


def test_the_run_computed_in_another_dtype_is_marked_and_the_prose_says_so(labels_study, labels_paper):
    tables = labels_study.report.tables
    marked = [c for c in tables.quality["Configuration"] if "‖" in c]
    assert marked == [AR_W4 + "¶‖"]  # ¶: every run fell back from compiled to static-cache
    assert any(line.startswith("‖ ") and "mixes" in line for line in tables.quality_legend)
    quality_tex = labels_study.report.out_dir.joinpath("results_quality.tex").read_text()
    assert AR_W4 + r"$^\P$$^\|$" in quality_tex
    said = (
        AR_W4 + r"$^\|$ computed its unquantized roles in \texttt{bfloat16}, the baseline in "
        r"\texttt{float32}: its quality change mixes this compute-dtype change into the quantization effect."
    )
    assert said in labels_paper
    assert rp.describe(labels_study, row(labels_study, AR_W4)) == AR_W4 + " (other roles bf16, baseline fp32)"
    assert rp.describe(labels_study, row(labels_study, "int8wo (language)")) == "int8wo (language)"
    slides = (build_draft(labels_study, "slides", compile=False).folder / "slides.tex").read_text()
    # the deck's configurations table: realized roles, compute dtype, the marks
    cells = r" & \texttt{bf16} & \texttt{bf16} & \texttt{ar-w4} & \texttt{bf16} & bfloat16"
    assert AR_W4 + r"$^\P$$^\|$" + cells in slides
    assert said in plain(slides)


def test_a_front_with_every_configuration_caveated_is_said_empty_not_left_blank(labels_study, monkeypatch):
    # The ar-w4 run computed in bf16 against an fp32 baseline: dtype is a cost param, so the gate refuses
    # the costs and no front is stated at all.
    assert labels_study.cost_refused is not None and rp.pareto_sentences(labels_study) == []
    # Were the costs comparable, a front of caveated runs only is said to be empty, never left blank.
    monkeypatch.setattr(type(labels_study), "cost_refused", property(lambda self: None))
    points = pd.DataFrame({"label": ["int8wo (language)", AR_W4], "pareto": [False, False]})  # all hollow
    monkeypatch.setattr(
        type(labels_study), "pareto_plot",
        lambda self, metric: SimpleNamespace(data={"points": points}) if metric == "latency_ms_p50" else None,
    )
    assert rp.pareto_sentences(labels_study) == [
        "On the CIDEr-versus-median latency plane no configuration is on the Pareto front: each carries "
        "a caveat (marked in the tables) and is drawn hollow."
    ]


def test_random_weight_runs_are_counted_as_cost_only_runs_in_the_abstract(labels_store, tmp_path_factory):
    study = _study(labels_store, "labels-random", tmp_path_factory)
    stated = Stated()
    abstract = " ".join(sp.abstract_sentences(study, stated))
    assert "2 random-weight configurations measured as cost-only runs" in abstract
    assert "precision configuration" not in abstract and " 0 " not in abstract
    assert [n.value for n in stated.numbers if n.source == "count:random_runs"] == [2]
    # nor an empty quality table: the paper inputs the cost table alone and says so
    tex = (build_draft(study, "paper", compile=False).folder / "paper.tex").read_text()
    assert "results_quality" not in tex and "tables/results_cost.tex" in tex
    assert "give the quality" not in tex


def test_the_abstract_counts_pretrained_and_random_runs_apart(caption_study):
    abstract = " ".join(sp.abstract_sentences(caption_study, Stated()))
    assert "4 precision configurations on 24 samples" in abstract
    assert "and 1 random-weight configuration measured as cost-only run " in abstract
