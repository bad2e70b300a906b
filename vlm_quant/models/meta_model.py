"""The model's architecture without its weights: built on the meta device from its config.

A plan's structural checks (which roles own linear layers, their widths, whether ``lm_head`` is tied to
the token embeddings, the family's module layout) need the model's modules but none of its numbers.
On the meta device every parameter is a shape without storage, so the full architecture of a 7B model
is built from ``config.json`` alone in about 0.05 s and no memory (measured on the bundled configs,
2-core CPU; the first build of a process also pays ~1 s of lazy imports), and no weight is downloaded.
"""

from __future__ import annotations

import torch
from torch import nn

from vlm_quant.models.remote_code import auto_model_class


def build_meta_model(config, *, trust_remote_code: bool = False) -> nn.Module:
    """The architecture of ``config`` with every parameter on the meta device (shapes only, tied as the
    config ties them: ``lm_head.weight is embed_tokens.weight`` when ``tie_word_embeddings``).

    A remote-code config (trusted) is built by the auto class its ``auto_map`` names (`auto_model_class`)."""
    auto_class = auto_model_class(config, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = auto_class.from_config(config, trust_remote_code=trust_remote_code)
    return model.eval()
