"""The paper names the algorithm behind an llm-compressor run (from the recipe the run logged), not only
the library whose compressed-tensors layers every such run holds."""

from __future__ import annotations

import pandas as pd
import pytest

from vlm_quant.study.paper.citations import method_citations
from vlm_quant.study.paper.references import BIBTEX

LIBRARY = r"LLM Compressor (compressed-tensors)~\cite{llmcompressor2024}"


@pytest.mark.parametrize(
    ("realized", "ptq_method", "cited"),
    [
        ("ct-w4a16-dense", "GPTQ", [r"GPTQ~\cite{frantar2023gptq}", LIBRARY]),
        ("ct-w4a16-dense", "AWQ", [r"AWQ~\cite{lin2024awq}", LIBRARY]),
        (
            "ct-w8a8-dense",
            "SmoothQuant+GPTQ",
            [r"SmoothQuant~\cite{xiao2023smoothquant}", r"GPTQ~\cite{frantar2023gptq}", LIBRARY],
        ),
        ("ct-w4a16", None, [LIBRARY]),  # a published checkpoint: no recipe ran here
        ("fp16", "GPTQ", []),  # a param without the layers cites nothing
    ],
)
def test_an_llm_compressor_run_cites_the_algorithms_of_its_recipe(realized, ptq_method, cited):
    row = {"params.realized_precision_language": realized, "params.realized_precision_vision": "fp16"}
    if ptq_method is not None:
        row["params.ptq_method"] = ptq_method
    assert method_citations(pd.DataFrame([row])) == cited


def test_every_cited_key_is_in_the_bibliography():
    for key in ("frantar2023gptq", "lin2024awq", "xiao2023smoothquant", "llmcompressor2024"):
        assert f"{{{key}," in BIBTEX
