"""Sizes and memory in MiB keep three significant digits, so a small model never reads as 0 MiB."""

from __future__ import annotations

import dataclasses

from vlm_quant.study.paper import results_prose as rp
from vlm_quant.study.paper.tex import Stated
from vlm_quant.study.report.tables import cost_table


def test_cost_table_prints_small_and_large_sizes_with_their_digits(caption_report):
    numbers = caption_report.tables.numbers.copy()
    numbers["size_on_disk_mib"] = [0.5504, 12.34, 4515.7, 0.04321, 1.0][: len(numbers)]
    numbers["peak_vram_allocated_mib"] = [0.5504, 12.34, 4515.7, 0.04321, 1.0][: len(numbers)]
    table = cost_table(numbers)
    expected = ["0.550", "12.3", "4516", "0.0432", "1.00"][: len(numbers)]
    assert table["Size on disk (MiB)"].tolist() == expected
    assert table["Peak VRAM (MiB)"].tolist() == expected


def test_the_paper_states_a_small_model_s_size_change_with_decimals(caption_study):
    runs = caption_study.runs.copy()
    base_id = caption_study.report.baseline_run_id
    runs["metrics.size_on_disk_mib"] = [1.204 if rid == base_id else 0.4302 for rid in runs["run_id"]]
    study = dataclasses.replace(caption_study, runs=runs)
    nf4 = study.runs[study.runs["label"] == "nf4"].iloc[0]
    text = rp.cost_change(study, nf4, "size_on_disk_mib", "size on disk", "MiB", Stated())
    assert text == r"cut size on disk by 64.3\% (1.20 $\rightarrow$ 0.430 MiB)"  # was "(1 -> 0 MiB)"
