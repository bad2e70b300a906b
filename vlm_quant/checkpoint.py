"""Save a model as loaded (at its precision) and measure its size on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class SavedCheckpoint:
    """Where the checkpoint went and how big its weight files are (MiB = 2**20 bytes)."""

    path: Path
    weights_mib: float
    total_mib: float


def directory_mib(path: Path, suffixes: tuple[str, ...] | None = None) -> float:
    files = [p for p in path.rglob("*") if p.is_file() and (suffixes is None or p.suffix in suffixes)]
    return sum(p.stat().st_size for p in files) / 2**20


def save_checkpoint(model: Any, processor: Any, out_dir: Path) -> SavedCheckpoint:
    """save_pretrained of model + processor; size counts the weight files only (no tokenizer/config)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return SavedCheckpoint(out_dir, directory_mib(out_dir, WEIGHT_SUFFIXES), directory_mib(out_dir))
