"""`vlm-quant setup spice`: put the two Stanford CoreNLP 3.6.0 jars SPICE needs where it looks for them.

pycocoevalcap ships ``spice-1.0.jar`` and its small dependencies but not CoreNLP (code + models,
~400 MB): its ``Spice()`` downloads ``stanford-corenlp-full-2015-12-09.zip`` on first use, which we
never trigger (`caption_metrics` runs SPICE only when the jars are present). This module installs them
once, from a local folder holding the two jars, from that zip archive (offline), or by downloading the
same archive pycocoevalcap would (online). Each jar is checked to be a readable jar holding what SPICE
loads from it (the CoreNLP pipeline class; the parser models), then SPICE's own manifest is re-read to
confirm nothing it names is missing.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from vlm_quant.errors import UserError

CORENLP_ARCHIVE_URL = "http://nlp.stanford.edu/software/stanford-corenlp-full-2015-12-09.zip"
# jar name -> a path prefix inside it that SPICE needs (checks the jar is the right one, not just a zip)
SPICE_JARS = {
    "stanford-corenlp-3.6.0.jar": "edu/stanford/nlp/pipeline/",
    "stanford-corenlp-3.6.0-models.jar": "edu/stanford/nlp/models/",
}
SETUP_COMMAND = "vlm-quant setup spice"


def spice_lib_dir() -> Path:
    """pycocoevalcap's ``spice/lib`` folder, where spice-1.0.jar's manifest looks for CoreNLP."""
    import pycocoevalcap.spice

    return Path(pycocoevalcap.spice.__file__).parent / "lib"


def check_jar(path: Path) -> None:
    """UserError unless ``path`` is a readable jar holding what SPICE loads from a jar of its name."""
    needed = SPICE_JARS[path.name]
    try:
        with zipfile.ZipFile(path) as jar:
            if not any(name.startswith(needed) for name in jar.namelist()):
                raise UserError(f"{path} holds no {needed}: not the Stanford CoreNLP 3.6.0 jar SPICE needs.")
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{path} is not a readable jar ({exc}); fetch it again.") from exc


def _from_folder(folder: Path, staging: Path) -> None:
    for name in SPICE_JARS:
        found = sorted(folder.rglob(name))
        if not found:
            raise UserError(
                f"{name} not found under {folder}: pass the folder or the CoreNLP 2015-12-09 zip."
            )
        shutil.copyfile(found[0], staging / name)


def _from_archive(archive: Path, staging: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = {Path(m).name: m for m in zipped.namelist() if Path(m).name in SPICE_JARS}
            for name in SPICE_JARS:
                if name not in members:
                    raise UserError(
                        f"{archive} holds no {name} (expected stanford-corenlp-full-2015-12-09.zip)."
                    )
                with zipped.open(members[name]) as source, (staging / name).open("wb") as target:
                    shutil.copyfileobj(source, target)
    except zipfile.BadZipFile as exc:
        raise UserError(f"{archive} is not a zip archive: {exc}") from exc


def _download(url: str, folder: Path) -> Path:
    archive = folder / "corenlp.zip"
    try:
        urllib.request.urlretrieve(url, archive)
    except OSError as exc:
        raise UserError(
            f"could not download {url} ({exc}). Offline? Fetch that zip elsewhere and run "
            f"`{SETUP_COMMAND} --from stanford-corenlp-full-2015-12-09.zip`."
        ) from exc
    return archive


def install_spice_jars(
    source: str | Path | None = None, lib_dir: Path | None = None, url: str = CORENLP_ARCHIVE_URL
) -> list[Path]:
    """Install the CoreNLP jars into ``lib_dir`` (default: pycocoevalcap's) from ``source`` (a folder
    or the zip) or, when None, by downloading ``url``; returns the installed paths, each checked."""
    target = lib_dir or spice_lib_dir()
    with tempfile.TemporaryDirectory(prefix="vlmq-spice-") as tmp:
        staging = Path(tmp)
        if source is None:
            _from_archive(_download(url, staging), staging)
        else:
            path = Path(source).expanduser()
            if path.is_dir():
                _from_folder(path, staging)
            elif path.is_file():
                _from_archive(path, staging)
            else:
                raise UserError(f"--from {path}: no such file or folder.")
        for name in SPICE_JARS:
            check_jar(staging / name)  # checked before anything is written to the target
        try:
            target.mkdir(parents=True, exist_ok=True)
            for name in SPICE_JARS:
                shutil.copyfile(staging / name, target / name)
        except OSError as exc:
            raise UserError(
                f"cannot write the jars into {target} ({exc}): run it in a writable environment."
            ) from exc
    return [target / name for name in SPICE_JARS]
