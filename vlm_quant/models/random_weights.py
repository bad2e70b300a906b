"""Real architectures with seeded random weights, built from configuration files alone.

``materialize_random_checkpoint`` writes a checkpoint directory that looks like a downloaded Hub
snapshot (``config.json``, ``model.safetensors``, ``generation_config.json``, processor and synthetic
tokenizer files), so ``load_vlm`` reads it through the same ``from_pretrained`` path as real weights
and every quantization config applies identically. Sizes, shapes, dtypes and image-token counts are
the real ones; only the numbers in the weights (and, for the bundled configs, the vocabulary strings)
are made up. That is enough to measure cost (latency, memory, size on disk, energy), not quality. The
configuration comes from the bundled files (offline), a local folder or the Hub (`config_source`).

The cache is shared by concurrent processes (ranks, a sweep's children, two users): one of them
builds an entry under a file lock (``filelock``) into a temporary sibling and renames it into place;
the others wait and reuse it. An entry counts as complete only when its files say so (`entry_problem`:
config readable, every file of the manifest's inventory present at its size, the safetensors files
readable with the recorded number of tensors); anything less is rebuilt, with a log line.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
import transformers
from filelock import FileLock, Timeout
from transformers import AutoConfig
from transformers import initialization as hf_init

from vlm_quant.errors import UserError
from vlm_quant.models.config_source import CONFIG_FILES, ConfigSource, find_config_source
from vlm_quant.models.offline_processor import SYNTHETIC_TOKENIZER_VERSION, save_offline_processor

log = logging.getLogger(__name__)

# Written last into a finished checkpoint; describes how it was made and lists its files and sizes.
MANIFEST_NAME = "vlm_quant_random.json"
# Files every checkpoint holds, whatever the manifest says (weights: model.safetensors or its index).
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
)


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/vlm-quant/random`` (``~/.cache/vlm-quant/random`` when unset)."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "vlm-quant" / "random"


def checkpoint_dir_name(source: ConfigSource, seed: int, code_dir: Path | None = None) -> str:
    """Cache directory name: the model's name, a digest of its configuration files (two folders or Hub
    revisions never share an entry), the seed, the transformers version (init and layout vary), the
    synthetic tokenizer's version and, for a remote-code architecture, the hash of its code
    (`remote_code.directory_code_sha256`)."""
    name = Path(source.model_id).name if source.origin == "local" else source.model_id.replace("/", "__", 1)
    name = f"{name}-{source.key}-seed{seed}-tf{transformers.__version__}-tok{SYNTHETIC_TOKENIZER_VERSION}"
    if code_dir is not None:
        from vlm_quant.models.remote_code import directory_code_sha256

        name += f"-code{directory_code_sha256(code_dir)[:12]}"
    return name


def materialize_random_checkpoint(
    model_id: str,
    *,
    seed: int,
    cache_dir: Path | None = None,
    revision: str | None = None,
    code_dir: Path | None = None,
) -> Path:
    """Return a directory holding ``model_id``'s real architecture with random weights drawn from ``seed``.

    ``model_id``: a bundled id, a local folder holding ``config.json`` (and processor files), or a Hub id
    whose configuration files (not weights) are downloaded at ``revision`` (`config_source`).

    A complete cache entry is reused as it is (complete entries are never modified). Otherwise one
    process at a time, under a file lock next to the entry, writes it into a temporary sibling
    directory and renames it into place, so neither a crash nor a concurrent build ever leaves a
    half-written checkpoint under the final name; a broken entry found there is replaced, with a log
    line saying what was wrong. Full size: SmolVLM-256M takes about 10 s and 0.5 GB on disk.

    ``code_dir``: for a config built by the checkpoint's own code (trust_remote_code, checked by the
    caller: `remote_code.check_random_weights_code`), the folder holding that code (a Hub cache snapshot);
    its Python files go into the checkpoint beside the config, with the processor files it has when the
    bundle lacks them.
    """
    source = find_config_source(model_id, revision=revision)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    final_dir = cache_root / checkpoint_dir_name(source, seed, code_dir)
    if entry_problem(final_dir) is None:
        return final_dir
    cache_root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(cache_root / f".{final_dir.name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process building %s", final_dir)
        lock.acquire()  # flock: released by the OS if that process dies, so this cannot wait forever on it
    try:
        problem = entry_problem(final_dir)  # the process we waited for may have built it
        if problem is None:
            return final_dir
        if final_dir.exists():
            log.warning("random-weights cache entry %s is broken (%s); rebuilding it", final_dir, problem)
        _build_entry(source, cache_root, final_dir, seed=seed, code_dir=code_dir)
    finally:
        lock.release()
    return final_dir


def _build_entry(
    source: ConfigSource, cache_root: Path, final_dir: Path, *, seed: int, code_dir: Path | None
) -> None:
    work_dir = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", suffix=".partial", dir=cache_root))
    try:
        code = {} if code_dir is None else {"code_dir": code_dir}  # the usual call keeps its signature
        _write_random_checkpoint(source, work_dir, seed=seed, **code)
        _write_manifest(work_dir, source, seed=seed)
        work_dir.chmod(0o755)  # mkdtemp makes it private; a cache is readable like any other
        _move_into_place(work_dir, final_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)  # nothing left to remove after a successful move


def _move_into_place(work_dir: Path, final_dir: Path) -> None:
    """Rename the finished ``work_dir`` to ``final_dir`` (under the lock); a broken entry is moved aside."""
    stale = None
    if final_dir.exists():
        stale = final_dir.with_name(f".{final_dir.name}.{os.getpid()}.stale")
        os.replace(final_dir, stale)  # one rename: the name never points at a half-deleted directory
    os.replace(work_dir, final_dir)
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)


def entry_problem(directory: Path) -> str | None:
    """What makes ``directory`` an incomplete checkpoint, or None when its files are all there.

    Checked from the files: the required ones exist, ``config.json`` is JSON, every file of the
    manifest's inventory has its recorded size, and the safetensors files open (their headers match
    their sizes) with the recorded number of tensors. Cheap: headers only, no weights are read.
    """
    if not directory.is_dir():
        return "missing"
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text())
        json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as error:
        return f"unreadable manifest or config: {error}"
    inventory = manifest.get("files")
    if not isinstance(inventory, dict):
        return "the manifest lists no files (written by an older version)"
    weights = [name for name in inventory if name.endswith(".safetensors")]
    missing = [name for name in REQUIRED_FILES if name not in inventory]
    missing += [] if weights else ["*.safetensors"]
    if missing:
        return f"no {', '.join(missing)}"
    for name, size in inventory.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, not {size}"
    try:
        tensors = sum(_tensor_count(directory / name) for name in weights)
    except Exception as error:  # safetensors: header too short, JSON broken, buffer incomplete, ...
        return f"unreadable weights: {error}"
    if tensors != manifest.get("tensors"):
        return f"{tensors} tensors, not {manifest.get('tensors')}"
    return None


def _tensor_count(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as weights:  # validates the header against the file's size
        return len(list(weights.keys()))


def build_random_model(config_dir: Path, *, seed: int, trust_remote_code: bool = False) -> torch.nn.Module:
    """The model of ``config_dir`` at full size, initialised by transformers' own ``_init_weights``.

    The constructor's default torch inits are skipped (``no_init_weights``) and ``init_weights`` then
    runs the model's ``_init_weights`` once, which halves the time of a plain ``from_config``. Weights
    are created directly in the config's dtype (bf16 / fp16) to keep the peak memory at the
    checkpoint's size.
    """
    from vlm_quant.models.remote_code import auto_model_class

    config = AutoConfig.from_pretrained(config_dir, trust_remote_code=trust_remote_code)
    auto_class = auto_model_class(config, trust_remote_code=trust_remote_code)
    torch.manual_seed(seed)
    with hf_init.no_init_weights():
        model = auto_class.from_config(
            config, dtype=config.dtype or torch.bfloat16, trust_remote_code=trust_remote_code
        )
    model.init_weights()  # _init_weights on every module, then tie the weights the config ties
    return model.eval()


def _write_random_checkpoint(
    source: ConfigSource, out_dir: Path, *, seed: int, code_dir: Path | None = None
) -> None:
    """Model weights, real generation config, processor files and tokenizer into ``out_dir``.

    The tokenizer is the real one when the source has its vocabulary files, else a synthetic one with the
    real special tokens at their real ids (`offline_processor`, for the bundled configs). ``code_dir``:
    the architecture's own code (remote code), copied beside the config and built from there.
    """
    config_dir = files_dir = source.directory
    if code_dir is None:
        if not source.has_vocabulary and not (config_dir / "tokenizer_config.json").is_file():
            raise UserError(
                f"weights=random for {source.model_id!r} needs its tokenizer: {config_dir} has neither "
                "vocabulary files (tokenizer.json, vocab.json, tokenizer.model) nor a tokenizer_config.json."
            )
        model = build_random_model(config_dir, seed=seed)
    else:
        for code_file in Path(code_dir).glob("*.py"):
            shutil.copyfile(code_file, out_dir / code_file.name)
        shutil.copyfile(config_dir / "config.json", out_dir / "config.json")
        model = build_random_model(out_dir, seed=seed, trust_remote_code=True)
        if not (config_dir / "tokenizer_config.json").is_file():
            files_dir = Path(code_dir)  # processor files of the cached snapshot
    vocab_size = model.config.get_text_config().vocab_size
    model.save_pretrained(out_dir)
    del model
    # The saved generation config is derived from the model config (wrong eos for SmolVLM); the
    # checkpoint's real one replaces it.
    if (files_dir / "generation_config.json").is_file():
        shutil.copyfile(files_dir / "generation_config.json", out_dir / "generation_config.json")
    if source.has_vocabulary and code_dir is None:
        for name in CONFIG_FILES:
            if name not in ("config.json", "generation_config.json") and (config_dir / name).is_file():
                shutil.copyfile(config_dir / name, out_dir / name)
    else:
        save_offline_processor(files_dir, out_dir, vocab_size=vocab_size)


def _write_manifest(out_dir: Path, source: ConfigSource, *, seed: int) -> None:
    """The manifest, written last: provenance, and the inventory (bytes per file) and tensor count
    that `entry_problem` checks."""
    files = {
        path.relative_to(out_dir).as_posix(): path.stat().st_size
        for path in sorted(out_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }
    manifest = {
        "model_id": source.model_id,
        "config_origin": source.origin,
        "config_revision": source.revision,
        "config_key": source.key,
        "weights": "random",
        "seed": seed,
        "init": "transformers _init_weights",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "files": files,
        "tensors": sum(_tensor_count(out_dir / name) for name in files if name.endswith(".safetensors")),
    }
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
