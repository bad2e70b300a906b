"""The gate in front of a checkpoint's own Python code (``trust_remote_code``), and what a run records of it.

Some checkpoints (Phi-3.5-vision, Bunny) are not built from transformers' classes but from Python files
in their repository, named by ``auto_map`` in ``config.json``. Loading them *executes that code on this
machine*, with the user's rights. vlm-quant therefore:

* refuses such a checkpoint unless ``trust_remote_code=true`` is given, before any weight or code file is
  fetched (only ``config.json`` is read), naming the parameter and the risk;
* with ``trust_remote_code=true``, requires ``revision`` to be a full 40-hex commit hash for a Hub id, so
  the code that runs is the code that was reviewed, not whatever the branch holds today;
* for a local directory (no revision exists) pins the code by content: ``code_sha256`` is the SHA-256 of
  the directory's Python files (names and bytes), logged with the run, so a later run of changed code
  differs in its params.

A model type transformers does not know and no ``auto_map`` is refused too: nothing could build it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm_quant.errors import UserError

COMMIT_HASH = re.compile(r"[0-9a-f]{40}")
# auto_map keys of a model class, in the order tried: image-text-to-text first, then the older names the
# remote-code VLMs register under (Phi-3.5-vision and Bunny: AutoModelForCausalLM).
MODEL_AUTO_CLASSES = ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM")
# Files a random-weights checkpoint copies to build its processor (bundled, or cached with the code).
PROCESSOR_FILES = ("tokenizer_config.json", "preprocessor_config.json")
RISK = (
    "it executes Python files from the model repository on this machine, with your user's rights "
    "(read your files, use the network); read that code before allowing it"
)


@dataclass(frozen=True)
class RemoteCode:
    """What a run records about a checkpoint's own code.

    ``code_files``: the Python files ``auto_map`` names (``modeling_phi3_v.py`` ...); ``code_sha256``: hash
    of every ``*.py`` of a local directory (None for a Hub id, pinned by ``revision`` instead).
    """

    code_files: tuple[str, ...]
    revision: str | None
    code_sha256: str | None


def known_model_type(model_type: str | None) -> bool:
    from transformers import CONFIG_MAPPING

    return model_type in CONFIG_MAPPING


def needs_remote_code(config: dict[str, Any]) -> bool:
    """Whether building this config needs the repository's code: transformers has no class for its
    ``model_type``. (With a known type, transformers uses its own class unless trust_remote_code is on;
    with it on, an ``auto_map`` beside a known type runs too, so `check_remote_code` pins that as well.)"""
    return not known_model_type(config.get("model_type"))


def code_files(config: dict[str, Any]) -> tuple[str, ...]:
    """The Python files ``auto_map`` names (``"modeling_phi3_v.Phi3VForCausalLM"`` -> ``modeling_phi3_v.py``);
    a ``"repo--module.Class"`` reference keeps its module's file name."""
    files = []
    for reference in (config.get("auto_map") or {}).values():
        for item in reference if isinstance(reference, list) else [reference]:
            if isinstance(item, str) and "." in item:
                files.append(item.split("--")[-1].rsplit(".", 1)[0] + ".py")
    return tuple(dict.fromkeys(files))


def directory_code_sha256(directory: Path) -> str:
    """SHA-256 over the names and bytes of every ``*.py`` directly in ``directory`` (sorted by name)."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def read_raw_config(source: str, revision: str | None) -> dict[str, Any] | None:
    """``config.json`` as JSON, read without building anything (no code runs); None when it cannot be
    read here (then the usual loader reports why)."""
    path = Path(source).expanduser()
    if path.is_dir():
        try:
            return json.loads((path / "config.json").read_text())
        except (OSError, ValueError):
            return None
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(source, "config.json", revision=revision)).read_text())
    except Exception:  # noqa: BLE001 - offline, no such repo: the config loader says so with advice
        return None


def check_remote_code(
    model: str,
    config: dict[str, Any] | None,
    *,
    trust_remote_code: bool,
    revision: str | None,
    local_dir: Path | None,
) -> RemoteCode | None:
    """None when ``config`` builds from transformers' own classes; otherwise the checked `RemoteCode`.

    UserError, before any code or weight is fetched: remote code without ``trust_remote_code=true``
    (naming the parameter and the risk), a model type nobody can build, or a Hub id whose ``revision``
    is not a 40-hex commit hash. ``local_dir``: the checkpoint directory when ``model`` is one.
    """
    if config is None:
        return None
    model_type = config.get("model_type")
    files = code_files(config)
    if not needs_remote_code(config) and not (files and trust_remote_code):
        return None  # transformers' own classes build it; an auto_map runs only when trusted
    if not files:
        raise UserError(
            f"Model {model!r} has model_type {model_type!r}, which transformers does not know, and its "
            "config.json names no code of its own (no auto_map): nothing can build it. Upgrade "
            "transformers if the type is newer than this version, or pick another checkpoint."
        )
    if not trust_remote_code:
        raise UserError(
            f"Model {model!r} (model_type {model_type!r}) is built by its own code ({', '.join(files)}), "
            f"not by transformers. Running it needs `-P trust_remote_code=true`: {RISK}. vlm-quant then "
            "also needs `-P revision=<commit hash>` for a Hub model, so the code you read is the code "
            "that runs."
        )
    if local_dir is not None:
        return RemoteCode(files, None, directory_code_sha256(local_dir))
    if not revision or not COMMIT_HASH.fullmatch(revision):
        raise UserError(
            f"trust_remote_code=true runs {model!r}'s own code, so vlm-quant requires revision to be a full "
            f"commit hash (40 hex characters), not {revision or 'the default branch'!r}: a branch or tag can "
            "move to other code after you read it. Find the hash on "
            f"https://huggingface.co/{model}/commits/main "
            f"(the commit you reviewed), or with `huggingface_hub.HfApi().model_info({model!r}).sha`."
        )
    return RemoteCode(files, revision, None)


def auto_model_class(config: Any, *, trust_remote_code: bool):
    """The transformers auto class that builds ``config``'s model: image-text-to-text for transformers'
    own VLMs; for a remote-code checkpoint the first of `MODEL_AUTO_CLASSES` its ``auto_map`` names."""
    import transformers

    auto_map = getattr(config, "auto_map", None) or {}
    if trust_remote_code and not known_model_type(getattr(config, "model_type", None)):
        for name in MODEL_AUTO_CLASSES:
            if name in auto_map and hasattr(transformers, name):
                return getattr(transformers, name)
    return transformers.AutoModelForImageTextToText


@dataclass(frozen=True)
class CachedCode:
    """A remote-code checkpoint's Python files found locally (``directory``) for ``weights=random``."""

    directory: Path
    remote_code: RemoteCode


def cached_code_dir(model_id: str, revision: str, files: tuple[str, ...]) -> Path | None:
    """The local Hugging Face cache snapshot of ``model_id`` at ``revision`` holding every file of
    ``files`` (left there by an earlier trust_remote_code download); None when one is missing."""
    from huggingface_hub import try_to_load_from_cache

    found = [try_to_load_from_cache(model_id, name, revision=revision) for name in files]
    if not files or not all(isinstance(path, str) for path in found):
        return None
    return Path(found[0]).parent


def check_random_weights_code(
    model_id: str, *, trust_remote_code: bool, revision: str | None
) -> CachedCode | None:
    """For ``weights=random`` of a bundled config that is built by the checkpoint's own code: that code,
    found in the local Hugging Face cache at ``revision`` (a commit hash), checked as `check_remote_code`
    checks a download. None when transformers' classes build the config (or it is not bundled: the
    random-weights loader reports that). UserError when the code is not available here: vlm-quant bundles
    third-party configs, never third-party code."""
    from vlm_quant.models.config_source import BUNDLED_ROOT

    config_file = BUNDLED_ROOT / model_id.replace("/", "__", 1) / "config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    remote = check_remote_code(
        model_id, config, trust_remote_code=trust_remote_code, revision=revision, local_dir=None
    )
    if remote is None:
        return None
    directory = cached_code_dir(model_id, remote.revision, remote.code_files)
    if directory is None:
        raise UserError(
            f"weights=random builds {model_id!r} from its bundled config.json, but its architecture is its "
            f"own code ({', '.join(remote.code_files)}), which vlm-quant does not bundle and which is not in "
            f"the local Hugging Face cache at revision {remote.revision}. Fetch it once with network access "
            f"(`huggingface-cli download {model_id} --revision {remote.revision} "
            f"{' '.join(remote.code_files)}`), read it, then rerun."
        )
    bundle = config_file.parent
    missing = [name for name in PROCESSOR_FILES if not any((d / name).is_file() for d in (bundle, directory))]
    if missing:
        raise UserError(
            f"weights=random for {model_id!r}: its code is cached at {directory}, but {', '.join(missing)} "
            "(the tokenizer and image processor settings a random checkpoint copies) is neither bundled nor "
            f"cached there. Fetch it the same way (`huggingface-cli download {model_id} --revision "
            f"{remote.revision} {' '.join(missing)}`)."
        )
    pinned = RemoteCode(remote.code_files, remote.revision, directory_code_sha256(directory))
    return CachedCode(directory, pinned)


def config_with_code(model_id: str, config_file: Path, code_dir: Path) -> Any:
    """The transformers config of ``config_file``, built by the code in ``code_dir`` (trusted by the caller).

    ``from_pretrained`` reads a config beside its code, and building the model later looks that code up
    again by the config's folder, so both are staged in a folder that stays: the random-weights cache's
    ``remote-code-configs/<model>-code<hash>`` (a few files; rewritten identically when it exists)."""
    import shutil

    from transformers import AutoConfig

    from vlm_quant.models.random_weights import default_cache_root

    name = f"{model_id.replace('/', '__', 1)}-code{directory_code_sha256(code_dir)[:12]}"
    folder = default_cache_root() / "remote-code-configs" / name
    folder.mkdir(parents=True, exist_ok=True)
    for code_file in Path(code_dir).glob("*.py"):
        shutil.copyfile(code_file, folder / code_file.name)
    shutil.copyfile(config_file, folder / "config.json")
    return AutoConfig.from_pretrained(folder, trust_remote_code=True)
