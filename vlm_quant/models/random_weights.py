"""Real architectures with seeded random weights, built offline from the bundled configs.

``materialize_random_checkpoint`` writes a checkpoint directory that looks like a downloaded Hub
snapshot (``config.json``, ``model.safetensors``, ``generation_config.json``, processor and synthetic
tokenizer files), so ``load_vlm`` reads it through the same ``from_pretrained`` path as real weights
and every quantization config applies identically. Sizes, shapes, dtypes and image-token counts are
the real ones; only the numbers in the weights (and the vocabulary strings) are made up. That is
enough to measure cost (latency, memory, size on disk, energy), not quality.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForImageTextToText
from transformers import initialization as hf_init

from vlm_quant.errors import UserError
from vlm_quant.models.offline_processor import save_offline_processor

BUNDLED_ROOT = Path(__file__).resolve().parent / "bundled"
# Written last into a finished checkpoint; describes how it was made.
MANIFEST_NAME = "vlm_quant_random.json"


def bundled_model_ids() -> list[str]:
    """Hub ids of the bundled checkpoints (directory ``<org>__<name>`` -> ``"<org>/<name>"``), sorted."""
    return sorted(
        path.name.replace("__", "/", 1) for path in BUNDLED_ROOT.iterdir() if (path / "config.json").is_file()
    )


def bundled_config_dir(model_id: str) -> Path:
    """The bundled configuration directory of ``model_id``; UserError listing the bundled ids otherwise."""
    if model_id not in bundled_model_ids():
        raise UserError(
            f"No bundled configuration for model {model_id!r}; random weights exist for: "
            f"{', '.join(bundled_model_ids())}."
        )
    return BUNDLED_ROOT / model_id.replace("/", "__", 1)


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/vlm-quant/random`` (``~/.cache/vlm-quant/random`` when unset)."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "vlm-quant" / "random"


def checkpoint_dir_name(model_id: str, seed: int) -> str:
    """Cache directory name; the transformers version is part of it because init and file layout vary."""
    return f"{model_id.replace('/', '__', 1)}-seed{seed}-tf{transformers.__version__}"


def materialize_random_checkpoint(model_id: str, *, seed: int, cache_dir: Path | None = None) -> Path:
    """Return a directory holding ``model_id``'s real architecture with random weights drawn from ``seed``.

    The directory is reused when it is already complete. Otherwise it is written into a temporary
    sibling directory and renamed into place in one step, so an interrupted run never leaves a
    half-written checkpoint behind. Full size: SmolVLM-256M takes about 10 s and 0.5 GB on disk.
    """
    config_dir = bundled_config_dir(model_id)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    final_dir = cache_root / checkpoint_dir_name(model_id, seed)
    if (final_dir / MANIFEST_NAME).is_file():
        return final_dir
    cache_root.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", suffix=".partial", dir=cache_root))
    try:
        _write_random_checkpoint(config_dir, work_dir, seed=seed)
        _write_manifest(work_dir, model_id=model_id, seed=seed)
        work_dir.chmod(0o755)  # mkdtemp makes it private; a cache is readable like any other
        _move_into_place(work_dir, final_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)  # nothing left to remove after a successful move
    return final_dir


def _move_into_place(work_dir: Path, final_dir: Path) -> None:
    """Rename the finished ``work_dir`` to ``final_dir`` unless another process got there first."""
    if (final_dir / MANIFEST_NAME).is_file():
        return  # a concurrent run finished the same checkpoint: keep it, drop ours
    if final_dir.exists():
        shutil.rmtree(final_dir)  # incomplete leftover (no manifest), e.g. copied by hand
    try:
        os.replace(work_dir, final_dir)
    except OSError:
        if not (final_dir / MANIFEST_NAME).is_file():
            raise


def build_random_model(config_dir: Path, *, seed: int) -> torch.nn.Module:
    """The model of ``config_dir`` at full size, initialised by transformers' own ``_init_weights``.

    The constructor's default torch inits are skipped (``no_init_weights``) and ``init_weights`` then
    runs the model's ``_init_weights`` once, which halves the time of a plain ``from_config``. Weights
    are created directly in the config's dtype (bf16 / fp16) to keep the peak memory at the
    checkpoint's size.
    """
    config = AutoConfig.from_pretrained(config_dir)
    torch.manual_seed(seed)
    with hf_init.no_init_weights():
        model = AutoModelForImageTextToText.from_config(config, dtype=config.dtype or torch.bfloat16)
    model.init_weights()  # _init_weights on every module, then tie the weights the config ties
    return model.eval()


def _write_random_checkpoint(config_dir: Path, out_dir: Path, *, seed: int) -> None:
    """Model weights, real generation config, processor files and synthetic tokenizer into ``out_dir``."""
    model = build_random_model(config_dir, seed=seed)
    model.save_pretrained(out_dir)
    del model
    # The saved generation config is derived from the model config (wrong eos for SmolVLM); the
    # checkpoint's real one replaces it.
    shutil.copyfile(config_dir / "generation_config.json", out_dir / "generation_config.json")
    save_offline_processor(config_dir, out_dir)


def _write_manifest(out_dir: Path, *, model_id: str, seed: int) -> None:
    manifest = {
        "model_id": model_id,
        "weights": "random",
        "seed": seed,
        "init": "transformers _init_weights",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
