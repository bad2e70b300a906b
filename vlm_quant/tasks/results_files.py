"""Reading the official results files that the `score` commands rescore (COCO captions, VQA answers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlm_quant.errors import UserError


def load_json(path: Path) -> Any:
    """Parsed JSON of ``path``; a missing or malformed file is a UserError naming it."""
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from exc


def read_results(path: Path, id_key: str, text_key: str, format_name: str) -> dict[Any, str]:
    """``[{id_key: ..., text_key: ...}, ...]`` -> {id: text}, one text per id; errors name the file and id."""
    entries = load_json(path)
    if not isinstance(entries, list):
        raise UserError(
            f"{path}: expected a JSON list of {{'{id_key}', '{text_key}'}} objects "
            f"({format_name} results format)."
        )
    results: dict[Any, str] = {}
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or id_key not in entry or text_key not in entry:
            raise UserError(f"{path}: entry {n} lacks '{id_key}' or '{text_key}': {str(entry)[:200]}")
        key, text = entry[id_key], entry[text_key]
        if not isinstance(text, str):
            raise UserError(f"{path}: {text_key} of {id_key} {key!r} is not a string: {text!r}")
        if key in results:
            raise UserError(f"{path}: {id_key} {key!r} appears more than once (one {text_key} per id).")
        results[key] = text
    return results
