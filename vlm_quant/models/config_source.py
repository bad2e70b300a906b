"""Where a model's configuration files come from, for ``weights=random``: bundled, a local folder, or the Hub.

Random weights need the architecture (``config.json``) and the processor's files (image processor,
chat template, tokenizer), never the weights. Three sources, tried in this order:

* **bundled**: the real configuration files shipped in ``models/bundled/`` (works offline);
* **a local folder** holding ``config.json`` (a downloaded checkpoint, or one's own configs);
* **the Hugging Face Hub**: only the small configuration and tokenizer files are downloaded
  (``snapshot_download`` with ``allow_patterns``), a few MB at most, never the weights.

The random checkpoint built from a source is cached under a key that says which files it came from
(`ConfigSource.key`), so two folders with the same name, or two Hub revisions, never share an entry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from vlm_quant.errors import UserError

BUNDLED_ROOT = Path(__file__).resolve().parent / "bundled"

# The files a random checkpoint is built from: architecture, generation settings, processor, tokenizer.
CONFIG_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "chat_template.json",
    "chat_template.jinja",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)
# A real vocabulary: when present, the random checkpoint keeps the real tokenizer instead of a synthetic one.
VOCABULARY_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


@dataclass(frozen=True)
class ConfigSource:
    """A folder holding a model's configuration files, and where it came from.

    ``origin``: "bundled", "local" or "hub"; ``revision``: the Hub commit hash (hub only); ``key``: a
    short digest of the configuration files' bytes, part of the random checkpoint's cache name.
    """

    model_id: str
    directory: Path
    origin: str
    revision: str | None = None

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        for name in CONFIG_FILES:
            path = self.directory / name
            if path.is_file():
                digest.update(name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()[:12]

    @property
    def has_vocabulary(self) -> bool:
        return any((self.directory / name).is_file() for name in VOCABULARY_FILES)


def bundled_model_ids() -> list[str]:
    """Hub ids of the bundled checkpoints (directory ``<org>__<name>`` -> ``"<org>/<name>"``), sorted."""
    return sorted(
        path.name.replace("__", "/", 1) for path in BUNDLED_ROOT.iterdir() if (path / "config.json").is_file()
    )


def bundled_config_dir(model_id: str) -> Path:
    """The bundled configuration directory of ``model_id``; UserError listing the bundled ids otherwise."""
    if model_id not in bundled_model_ids():
        raise UserError(
            f"No bundled configuration for model {model_id!r}; bundled: {', '.join(bundled_model_ids())}."
        )
    return BUNDLED_ROOT / model_id.replace("/", "__", 1)


def find_config_source(model_id: str, *, revision: str | None = None) -> ConfigSource:
    """The configuration files of ``model_id``: bundled, a local folder, or downloaded from the Hub.

    UserError when none works (not bundled, no such folder, Hub unreachable or no such repository),
    naming the three ways to provide a configuration.
    """
    if model_id in bundled_model_ids() and revision is None:
        return ConfigSource(model_id, bundled_config_dir(model_id), "bundled")
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise UserError(f"Folder {model_id!r} holds no config.json, so its architecture is unknown.")
        return ConfigSource(model_id, folder.resolve(), "local")
    return _from_hub(model_id, revision)


def _from_hub(model_id: str, revision: str | None) -> ConfigSource:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(model_id, revision=revision, allow_patterns=list(CONFIG_FILES))
    except (OSError, ValueError, HfHubHTTPError, LocalEntryNotFoundError) as error:
        raise UserError(
            f"weights=random needs the configuration of {model_id!r}: it is not bundled "
            f"({', '.join(bundled_model_ids())}), not a local folder, and the Hugging Face Hub could not "
            "provide it (offline, HF_HUB_OFFLINE=1, or no such repository/revision): "
            f"{str(error).rstrip('.')}. Pass a folder holding its config.json (and processor/tokenizer "
            "files) as model=, or a bundled id."
        ) from error
    directory = Path(folder)
    if not (directory / "config.json").is_file():
        raise UserError(f"The Hub repository {model_id!r} has no config.json; is it a transformers model?")
    return ConfigSource(model_id, directory, "hub", revision=directory.name)
