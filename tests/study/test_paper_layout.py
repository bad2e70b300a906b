"""The paper's pages as a reader sees them: no text below 8 pt, no page before the references half empty.

One compiled paper of six configurations of mixed precisions (long per-role labels, a random-weight
run, a run without NVML energy), measured with `pdf_layout` (pdftohtml's font sizes and text
positions); plus the table splitting on the LaTeX strings, without TeX.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from latex_checks import check_booktabs, table_floats
from pdf_layout import column_fill, document_text, pdf_pages
from report_store import N_SAMPLES, _images, _params, _power, caption_rows, cost_metrics, environment

from vlm_quant.study.paper.build import build_draft, load_study
from vlm_quant.study.paper.document import FIT, place_tables
from vlm_quant.study.report import table_parts
from vlm_quant.study.report.render import latex_table

MIN_PT = 7.95  # 8 pt, less pdftohtml's rounding to a third of a point
MARGIN_PT = 56.693  # the default layout's 2 cm
SIX = (  # quant, realized precision per role (the label's source), cost scale, NVML energy, weights
    ("fp16", {}, 1.0, True, "pretrained"),
    ("int8", {}, 1.3, True, "pretrained"),
    (
        "nf4",
        {f"realized_precision_{r}": "fp16" for r in ("vision", "projector", "lm_head")},
        0.9,
        False,
        "pretrained",
    ),
    (
        "int4",
        {"realized_precision_vision": "int8", "realized_precision_lm_head": "fp16"},
        0.8,
        True,
        "pretrained",
    ),
    (
        "int8-ao",
        {"realized_precision_vision": "int8 (22/24 linears) + fp16 (2/24 linears)"},
        0.85,
        True,
        "pretrained",
    ),
    ("fp16", {}, 1.0, True, "random"),
)
needs_tex = pytest.mark.tex
needs_poppler = pytest.mark.skipif(
    not (shutil.which("latexmk") or shutil.which("pdflatex"))
    or not all(map(shutil.which, ("pdftohtml", "pdfinfo"))),
    reason="needs TeX and poppler (Debian: apt-get install latexmk texlive-latex-extra poppler-utils)",
)


def _six_config_store(writer, tmp_path):
    data_dir = tmp_path / "data"
    _images(data_dir, N_SAMPLES)
    exp = writer.experiment("six-mixed")
    rng = np.random.default_rng(11)
    base = rng.uniform(0.3, 1.6, N_SAMPLES)
    words = [f"a dog on a bench number {i}" for i in range(N_SAMPLES)]
    for i, (quant, realized, scale, energy, weights) in enumerate(SIX):
        scores = base + rng.normal(-0.05 * i, 0.1, N_SAMPLES) if i else base
        predictions = [w if (j + i) % 3 else f"a cat {j}" for j, w in enumerate(words)] if i else words
        metrics = {
            "cider": float(np.mean(scores)),
            **{m: 0.5 for m in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "spice")},
            **cost_metrics(scale, energy=energy),
            **(
                {"fidelity_vision_cosine": 0.99, "fidelity_logits_kl": 0.01, "fidelity_top1_agreement": 0.97}
                if i
                else {}
            ),
        }
        writer.run(
            exp,
            f"{quant}-{weights}",
            params=_params(quant, weights, data_dir, **realized),
            metrics=metrics,
            rows=caption_rows(scores, predictions),
            env=environment(),
            power=_power(200 * scale) if energy else [],
            tags=None if energy else {"vlm_quant.energy_absent_reason": "NVML unavailable"},
        )
    return load_study(tmp_path / "report", experiment="six-mixed", tracking_uri=writer.uri, n_resamples=200)


@needs_tex
@needs_poppler
def test_no_text_below_8pt_and_no_half_empty_page_before_the_references(store_writer, tmp_path):
    study = _six_config_store(store_writer, tmp_path)
    pdf = build_draft(study, "paper").compiled.pdf
    pages = pdf_pages(pdf)
    references = next(p.number for p in pages if any(r.text.strip() == "References" for r in p.runs))
    for page in pages:
        text = document_text(page)
        assert text, f"page {page.number} holds no text"
        small = [(round(r.size, 1), r.text) for r in text if r.size < MIN_PT]
        assert not small, f"page {page.number}: text below 8 pt: {small[:5]}"
        # nor pushed off the text block (a table too wide for the page runs into the margin)
        outside = [r.text for r in text if r.left < MARGIN_PT - 2 or r.right > page.width - MARGIN_PT + 2]
        assert not outside, f"page {page.number}: text outside the text block: {outside[:5]}"
        if page.number < references:
            left, right = column_fill(page, MARGIN_PT)
            assert (left + right) / 2 >= 0.5, (
                f"page {page.number} is less than half filled: {left:.2f}, {right:.2f}"
            )
    # the tables really are in it, at a readable size: every split part and every cost header
    tex = (study.report.out_dir / "paper" / "tables" / "results_cost.tex").read_text()
    assert len(re.findall(r"\\label\{tab:cost", tex)) >= 3


# A cost table as the report prints it: 14 columns, energy headers naming their window.
COST = pd.DataFrame(
    {
        "Configuration": ["fp16", "int8-ao (language, projector, lm_head) + int8+fp16 (vision)"],
        "TTFT p50 (ms)": ["40.0", "52.0"],
        "Decode p50 (ms/token)": ["5.50", "7.15"],
        "Latency p50 (ms/image)": ["100.0", "130.0"],
        "Throughput (images/s)": ["10.00", "7.69"],
        "Throughput (tokens/s)": ["180.0", "138.5"],
        "Peak VRAM (MiB)": ["1500", "1950"],
        "Size on disk (MiB)": ["520", "676"],
        "Energy, cost pass at batch 8 (J/image)": ["30.00", "n/a (no NVML)"],
        "CO2e, quality pass (kg)": ["4.20e-06", "n/a (no NVML)"],
        "CPU+RAM energy, run (Wh, est.)": ["n/a (not logged)", "0.412 (est., constant)"],
        "Fidelity vision cos": ["n/a (not logged)", "0.9900"],
        "Fidelity KL (nats)": ["n/a (not logged)", "0.0100"],
        "Fidelity top-1": ["n/a (not logged)", "0.97"],
    }
)


def test_a_wide_table_splits_by_topic_into_parts_of_at_most_seven_columns_losing_none():
    parts = table_parts.split_columns(COST, table_parts.cost_topic)
    assert all(columns[0] == "Configuration" and 2 <= len(columns) <= 8 for _, columns in parts)
    shown = [c for _, columns in parts for c in columns[1:]]
    assert sorted(shown) == sorted(COST.columns[1:])  # every column once, none lost
    topics = {c: topic for topic, columns in parts for c in columns[1:]}
    assert {topics[c] for c in COST.columns[1:6]} == {"time"}
    assert {topics[c] for c in COST.columns[6:8]} == {"memory & size"}
    assert {topics[c] for c in COST.columns[8:11]} == {"energy"}  # whatever window the header names
    assert {topics[c] for c in COST.columns[11:]} == {"fidelity"}
    assert [c for _, columns in parts for c in columns[1:]] == list(COST.columns[1:])  # reading order kept


def test_a_part_fits_a_column_when_its_labels_are_short_else_the_page():
    def widest(frame):
        parts = table_parts.split_columns(frame, table_parts.cost_topic)
        return {
            t: max(sum(table_parts.column_pt(c, frame[c].tolist()) for c in cs) for u, cs in parts if u == t)
            for t, _ in parts
        }

    short, long = widest(COST.iloc[:1]), widest(COST)
    slack = table_parts.FIT_SLACK
    assert (
        short["time"] <= table_parts.COLUMN_PT * slack
        and short["memory & size"] <= table_parts.COLUMN_PT * slack
    )
    assert table_parts.COLUMN_PT * slack < long["time"] <= table_parts.PAGE_PT * slack


def test_the_paper_sets_narrow_tables_in_a_column_wide_ones_across_the_page_never_below_8pt():
    def floats(frame):
        return latex_table(
            frame, caption="c", label="tab:x", raw_columns=("Configuration",), stack_headers=True
        )

    narrow = floats(COST.iloc[:1, :3])
    wide = floats(COST.iloc[:, [0, 8, 9, 10]])
    out = place_tables(narrow + wide)
    assert out.count(r"\begin{table}[tbp]") == 1 and out.count(r"\begin{table*}[tp]") == 1
    assert out.count(FIT + r"\begin{tabular}") == 2 and r"\resizebox" not in out
    assert out.count("{") == out.count("}")
    assert r"\shortstack{TTFT p50\\ {}(ms)}" in out  # header over two lines: name, then unit
    appendix = place_tables(wide, two_column=False)
    assert r"\begin{table}[h!]" in appendix and "table*" not in appendix


def test_the_report_writes_each_part_as_its_own_booktabs_float(caption_report):
    tex = (caption_report.out_dir / "results_cost.tex").read_text()
    parts = table_floats(tex)
    assert len(parts) >= 3
    headers = []
    for part in parts:
        rows = check_booktabs(part)
        assert len(rows) == 1 + 5  # header + every run
        headers += rows[0].removesuffix(r"\\").split(" & ")[1:]
    assert len(headers) == len(caption_report.tables.cost.columns) - 1  # every cost column, once
