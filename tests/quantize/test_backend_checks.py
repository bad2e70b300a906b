"""Plans that cannot run fail before any download, with a message naming the fix."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch
from quant_helpers import CPU, load_tiny, quantized

from vlm_quant.errors import UserError
from vlm_quant.quantize import backends, bitsandbytes_backend
from vlm_quant.quantize.backends import apply_plan, check_plan_runnable
from vlm_quant.quantize.presets import resolve_plan


def test_unquantized_plans_need_no_backend(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes -> ImportError
    monkeypatch.setitem(sys.modules, "torchao", None)
    check_plan_runnable(resolve_plan("fp16"), CPU)
    check_plan_runnable(resolve_plan("bf16"), CPU)


@pytest.mark.parametrize(
    "module, quant, fragment",
    [
        (
            "bitsandbytes",
            "int8",
            r"needs bitsandbytes, which is not installed.*pip install 'bitsandbytes>=0.48'",
        ),
        ("bitsandbytes", "nf4", r"language=nf4 needs bitsandbytes"),
        ("torchao", "int8-ao", r"needs torchao, which is not installed.*pip install 'torchao>=0.13'"),
    ],
)
def test_missing_backend_names_the_pip_package(monkeypatch, module, quant, fragment):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(UserError, match=fragment):
        check_plan_runnable(resolve_plan(quant), CPU)


def test_bitsandbytes_before_its_cpu_kernels_is_cuda_only(monkeypatch):
    """bitsandbytes 0.45.5 fails on CPU (measured); our floor is 0.48, so a lowered floor shows the rule."""
    import bitsandbytes

    monkeypatch.setitem(
        backends.BACKENDS,
        "bitsandbytes",
        dataclasses.replace(backends.BACKENDS["bitsandbytes"], min_version="0.40.0"),
    )
    monkeypatch.setattr(bitsandbytes, "__version__", "0.45.5")
    with pytest.raises(
        UserError, match=r"bitsandbytes 0.45.5 runs vision=int8 only on CUDA GPUs.*device=cuda"
    ):
        check_plan_runnable(resolve_plan("int8-vision"), CPU)


def test_too_old_backend_asks_for_an_upgrade(monkeypatch):
    import torchao

    monkeypatch.setattr(torchao, "__version__", "0.9.0")
    with pytest.raises(UserError, match=r"torchao 0.9.0 is too old.*pip install -U 'torchao>=0.13'"):
        check_plan_runnable(resolve_plan("w8a8-ao"), CPU)


def test_a_backend_path_that_fails_on_this_device_is_caught_by_the_probe(monkeypatch):
    def cuda_only(old, settings):
        raise RuntimeError(
            "All input tensors need to be on the same GPU, but found some tensors to not be on a GPU"
        )

    monkeypatch.setattr(bitsandbytes_backend, "nf4_linear", cuda_only)
    with pytest.raises(
        UserError, match=r"precision nf4 \(bitsandbytes .*\) does not run on cpu.*same GPU.*device=cuda"
    ):
        check_plan_runnable(resolve_plan("nf4"), CPU)


def test_unsupported_device_is_refused():
    with pytest.raises(UserError, match="device 'meta' is not supported"):
        check_plan_runnable(resolve_plan("int8"), torch.device("meta"))


def test_tied_lm_head_is_not_quantized(tiny_vlm_dirs):
    """Qwen2-VL ties lm_head to the token embeddings: quantizing it would store the matrix twice."""
    with pytest.raises(UserError, match=r"lm_head=int8 is not possible.*tied to the token embeddings"):
        quantized(tiny_vlm_dirs["qwen2_vl"], "int8", "lm_head=int8")


def test_untied_lm_head_can_be_quantized(tiny_vlm_dirs):
    loaded, _, applied = quantized(tiny_vlm_dirs["llava"], "fp16", "lm_head=int8wo")
    assert applied.roles["lm_head"].module_names == ("lm_head",)
    assert type(loaded.model.lm_head.weight).__name__ == "Int8Tensor"


def test_a_quantized_role_without_linear_layers_is_an_error(tiny_vlm_dirs):
    loaded = load_tiny(tiny_vlm_dirs["idefics3"])
    family = loaded.family
    # A layout whose projector is only the final norm (no nn.Linear): nothing to quantize.
    roles = {
        **family.roles,
        "vision": ("model.vision_model", "model.connector"),
        "projector": ("model.text_model.norm",),
    }
    odd = dataclasses.replace(family, layout=dataclasses.replace(family.layout, prefixes=roles))
    with pytest.raises(UserError, match=r"role 'projector' .* has no nn.Linear module"):
        apply_plan(
            loaded.model,
            odd,
            resolve_plan("fp16", "projector=int8"),
            device="cpu",
            compute_dtype=torch.float32,
        )


def test_torchao_filter_that_matches_nothing_is_an_error(tiny_vlm_dirs, monkeypatch):
    from vlm_quant.quantize import torchao_backend

    monkeypatch.setattr(torchao_backend, "quantize_modules", lambda model, names, precision: [])
    with pytest.raises(RuntimeError, match=r"did not visit 14 of 14 requested modules"):
        quantized(tiny_vlm_dirs["idefics3"], "int8-ao")


def test_swapped_layers_keep_their_accelerate_hooks(tiny_vlm_dirs):
    """Models dispatched over several devices route activations through hooks on their modules."""
    from accelerate.hooks import ModelHook, add_hook_to_module

    class Marker(ModelHook):
        pass

    loaded = load_tiny(tiny_vlm_dirs["idefics3"])
    name = "model.text_model.layers.0.mlp.up_proj"
    add_hook_to_module(loaded.model.get_submodule(name), Marker())
    plan = resolve_plan("nf4")
    apply_plan(loaded.model, loaded.family, plan, device="cpu", compute_dtype=torch.float32)
    swapped = loaded.model.get_submodule(name)
    assert type(swapped).__name__ == "Linear4bit" and isinstance(swapped._hf_hook, Marker)
