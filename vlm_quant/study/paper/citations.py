"""The quantization methods the paper cites: those whose layers really ran, read from the audit.

A run logs ``realized_precision_<role>``: the storage type the precision audit found in the role's
linear layers (see `vlm_quant.quantize.audit` and `ptq_layers`). Those names are specific to the
library that wrote the layer, so they say which method ran; the preset's name never does
(``int8-ao`` and ``cpu-fast`` hold torchao layers, ``int8-vision-ort`` an ONNX Runtime tower):

=======================  ==============================================  =====================
realized name            layer that ran                                  cited as
=======================  ==============================================  =====================
``int8``                 bitsandbytes ``Int8Params`` (``Linear8bitLt``)  LLM.int8()
``nf4`` / ``fp4``        bitsandbytes ``Params4bit`` (``Linear4bit``)    NF4 / FP4 (QLoRA)
``int8wo``, ``w8a8``,    a torchao tensor subclass                       torchao
``torchao.<class>``
``ort-*``                an ONNX Runtime session (vision tower)          ONNX Runtime
``ar-w*``                AutoRound's packed ``QuantLinear``              AutoRound
``gptq-w*``              a GPTQ packed linear (prequantized checkpoint)  GPTQ
``awq-w*``               an AWQ ``WQLinear`` (prequantized checkpoint)   AWQ
``ct-*``                 a compressed-tensors linear (llm-compressor)    the run's algorithms
                                                                        + LLM Compressor
=======================  ==============================================  =====================

A compressed-tensors layer looks the same whichever algorithm chose its values, so for ``ct-*`` the
algorithms come from the run's ``ptq_method`` param, which the llm-compressor backend logs from the
recipe that ran (``GPTQ``, ``AWQ``, ``SmoothQuant+GPTQ``); a published checkpoint has none and cites the
library only.

Plain floating-point names (``fp16``, ``bf16``, ``fp32``) cite nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from vlm_quant.study.report.precision_labels import realized_precisions


@dataclass(frozen=True)
class Method:
    """A quantization method (or runtime) as the paper names and cites it."""

    name: str  # as printed
    bibkey: str  # an entry of references.BIBTEX


LLM_INT8 = Method("LLM.int8()", "dettmers2022llmint8")
NF4 = Method("NF4", "dettmers2023qlora")
FP4 = Method("bitsandbytes FP4", "dettmers2023qlora")
TORCHAO = Method("torchao", "or2025torchao")
ONNX_RUNTIME = Method("ONNX Runtime", "onnxruntime")
AUTOROUND = Method("AutoRound", "cheng2023autoround")
GPTQ = Method("GPTQ", "frantar2023gptq")
AWQ = Method("AWQ", "lin2024awq")
SMOOTHQUANT = Method("SmoothQuant", "xiao2023smoothquant")
LLM_COMPRESSOR = Method("LLM Compressor (compressed-tensors)", "llmcompressor2024")
# ``ptq_method`` param value -> method (llmcompressor_backend.SCHEMES names them).
ALGORITHMS = {"GPTQ": GPTQ, "AWQ": AWQ, "SmoothQuant": SMOOTHQUANT}

EXACT = {"int8": LLM_INT8, "nf4": NF4, "fp4": FP4, "int8wo": TORCHAO, "w8a8": TORCHAO}
PREFIXES = (
    ("torchao.", TORCHAO),
    ("ort-", ONNX_RUNTIME),
    ("ar-", AUTOROUND),
    ("gptq-", GPTQ),
    ("awq-", AWQ),
    ("ct-", LLM_COMPRESSOR),
)
ORDER = (LLM_INT8, NF4, FP4, TORCHAO, ONNX_RUNTIME, AUTOROUND, SMOOTHQUANT, GPTQ, AWQ, LLM_COMPRESSOR)


def method_of(precision: str) -> Method | None:
    """The method behind one realized precision name (module docstring's table); None for a float."""
    name = precision.strip()
    return EXACT.get(name) or next((m for prefix, m in PREFIXES if name.startswith(prefix)), None)


def realized_methods(runs: pd.DataFrame) -> list[Method]:
    """The methods whose layers held some role of some run, in `ORDER`. A mixed role
    (``int8 (22/24 linears) + fp32 (2/24 linears)``) counts each of its types."""
    found = set()
    for _, row in runs.iterrows():
        for value in (realized_precisions(row) or {}).values():
            for part in value.split(" + "):
                method = method_of(part.split(" (")[0])
                if method is not None:
                    found.add(method)
                if method is LLM_COMPRESSOR:
                    found.update(_algorithms(row.get("params.ptq_method")))
    return [m for m in ORDER if m in found]


def _algorithms(ptq_method: object) -> list[Method]:
    """The methods named by a run's ``ptq_method`` param (``SmoothQuant+GPTQ`` -> both); none when absent."""
    if not isinstance(ptq_method, str):
        return []
    return [ALGORITHMS[name] for name in ptq_method.split("+") if name in ALGORITHMS]


def method_citations(runs: pd.DataFrame) -> list[str]:
    """``LLM.int8()~\\cite{dettmers2022llmint8}``, one per method that ran (LaTeX)."""
    return [rf"{m.name}~\cite{{{m.bibkey}}}" for m in realized_methods(runs)]
