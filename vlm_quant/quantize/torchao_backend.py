"""torchao: ``quantize_`` with a filter that accepts exactly the module paths our code expanded.

torchao keeps each ``nn.Linear`` and swaps its weight for a tensor subclass (``Int8Tensor`` in torchao
0.15+: int8 ``qdata`` + per-row ``scale``). We never hand torchao a regex or a role: it receives a set of
exact names, and records which names it actually visited so the caller can tell "matched nothing".
"""

from __future__ import annotations

from torch import nn

CONFIGS = {"int8wo": "Int8WeightOnlyConfig", "w8a8": "Int8DynamicActivationInt8WeightConfig"}


def config_for(precision: str):
    """The torchao config object of one of our precisions (defaults of the installed torchao)."""
    import torchao.quantization as tq

    return getattr(tq, CONFIGS[precision])()


def quantize_modules(model: nn.Module, names: list[str], precision: str) -> list[str]:
    """Quantize the ``nn.Linear`` modules called ``names`` in place; returns the names torchao visited."""
    from torchao.quantization import quantize_

    wanted = set(names)
    visited: list[str] = []

    def exactly_these(module: nn.Module, fqn: str) -> bool:
        hit = fqn in wanted and isinstance(module, nn.Linear)
        if hit:
            visited.append(fqn)
        return hit

    quantize_(model, config_for(precision), filter_fn=exactly_these)
    return visited
