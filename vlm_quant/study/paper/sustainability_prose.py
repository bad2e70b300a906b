"""The paper's and the slides' "Sustainability" section: sentences and one table, every number stated.

Every number goes through :class:`Stated` (so it is in ``numbers.json`` with its source: a run's metric, or
compare's saving of a run). GPU-only quantities a run did not log print ``n/a``; a CPU run's CO2e by place is
codecarbon's CPU + RAM estimate and the prose says so.
"""

from __future__ import annotations

import pandas as pd

from vlm_quant.study.paper.study import Study
from vlm_quant.study.paper.tex import Stated
from vlm_quant.study.report.render import NA, latex_table

TABLE_COLUMNS = (  # (metric, header, spec, scale)
    ("energy_wh_per_1k_images_bs1", "GPU Wh/1k img. (bs 1)", ".3g", 1.0),
    ("energy_j_per_image_optimal", "J/img. best batch", ".3g", 1.0),
    ("flop_per_j", "GFLOP/J", ".3g", 1e-9),
    ("water_l_per_1k_images", "Water L/1k img.", ".3g", 1.0),
    ("scale_energy_kwh_per_1m_images", "kWh/1M img.", ".3g", 1.0),
    ("scale_co2e_t_per_1m_images", "t CO2e/1M img.", ".3g", 1.0),
    ("scale_water_m3_per_1m_images", "m3/1M img.", ".3g", 1.0),
)


def sustainability_sentences(study: Study, stated: Stated) -> list[str]:
    """What the section measured, how, and the place ratio; or why there is nothing to say."""
    if study.cost_refused is not None:
        return ["The runs' costs may not be compared (see Results), so no sustainability number is given."]
    if study.report.sustainability is None:
        return ["No run logged sustainability numbers (runs made before vlm-quant measured them)."]
    gpu = measured_gpu_energy(study)
    # How the GPU quantities are measured, only where some run measured them (a 6-page budget).
    text = [] if not gpu else [
        "GPU energy per 1,000 images at batch 1 follows the AI Energy Score convention (GPU only; "
        "preprocessing, prefill and decode), here over the cost pass's micro-set with a fixed output length "
        "rather than their 1,000-query set. Prefill and decode are split by two kinds of NVML windows of "
        "at least 2\\,s over the same calls (one new token, and the full output); decode energy per token is "
        "their difference. FLOPs are counted once on the unquantized model with PyTorch's FLOP counter: the "
        "work is the same at every precision, so FLOP/J compares how efficiently each configuration does it. "
        "Water follows Li et al.\\ (2023): $W = E\\,\\mathrm{WUE} + E\\,\\mathrm{PUE}\\,\\mathrm{EWIF}$."
    ]
    ratios = [
        (row, study.metric(row, "co2e_place_highest_to_lowest_ratio"))
        for _, row in study.runs.iterrows()
        if study.metric(row, "co2e_place_highest_to_lowest_ratio") is not None
    ]
    if ratios:
        row, ratio = ratios[0]
        value = stated.num(ratio, ".1f", f"metric:{row['run_id']}:co2e_place_highest_to_lowest_ratio")
        text.append(
            f"The same energy emits {value} times more CO$_2$e in the most carbon-intensive of nine "
            "countries than in the least (codecarbon's yearly per-country intensities)."
        )
    if not gpu:
        text.append(
            "No run had a GPU energy counter: the GPU quantities are absent, and CO$_2$e by place is "
            "an estimate from codecarbon's CPU and RAM energy of the whole run."
        )
    return text


def measured_gpu_energy(study: Study) -> bool:
    """Whether some run measured GPU energy at batch 1 (the section's table and figure need it)."""
    return any(study.metric(r, "energy_wh_per_1k_images_bs1") is not None for _, r in study.runs.iterrows())


def sustainability_table(study: Study, stated: Stated) -> str | None:
    """A booktabs float (label ``tab:sustainability``), or None when there is nothing to tabulate (no
    run measured any of its quantities: a table of n/a would take a quarter page of a 6-page paper)."""
    section = study.report.sustainability
    if study.cost_refused is not None or section is None:
        return None
    rows = []
    for _, row in study.runs.iterrows():
        cells = {"Configuration": str(row["label"])}
        for metric, header, spec, scale in TABLE_COLUMNS:
            value = study.metric(row, metric)
            cells[header] = (
                NA if value is None else stated.num(value * scale, spec, f"metric:{row['run_id']}:{metric}")
            )
        cells["Saving vs baseline"] = _saving(section.savings.get(row["run_id"]), row, study, stated)
        rows.append(cells)
    measured = [c for r in rows for h, c in r.items() if h != "Configuration" and c not in (NA, "baseline")]
    if not measured:  # a CPU-only study: every column is GPU-only; the sentences say they are absent
        return None
    return latex_table(
        pd.DataFrame(rows),
        caption="Sustainability (n/a: not measured on this hardware; saving: 95\\% interval over the "
        "per-window repeats).",
        label="tab:sustainability",
        stack_headers=True,
    )


def _saving(saving: tuple | None, row: pd.Series, study: Study, stated: Stated) -> str:
    if row["run_id"] == study.report.baseline_run_id:
        return "baseline"
    if saving is None:
        return NA
    point, low, high = saving
    source = f"compare:energy_saving:{row['run_id']}"
    text = stated.num(point * 100, ".1f", source) + "%"  # latex_table escapes the cell
    if low is not None and high is not None:
        low_text = stated.num(low * 100, ".1f", source + ":low")
        text += f" [{low_text}, {stated.num(high * 100, '.1f', source + ':high')}]"
    return text
