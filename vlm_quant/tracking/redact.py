"""Secrets never reach the tracking store: every param, tag and text artifact passes through `redact`.

Two layers. Patterns catch the common token shapes wherever they appear (a Hugging Face token in a
dataset id, a password in a database URI, ``token=...`` in a query string, AWS access keys, bearer
tokens). Values catch the rest: the current value of every environment variable whose *name* says it
holds a secret (HF_TOKEN, AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_PASSWORD, ...) is replaced wherever
it appears, whatever its shape.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any

MASK = "[REDACTED]"
# Environment variables whose names say they hold a secret; their values are masked everywhere.
SECRET_ENV_NAME = re.compile(r"(?i)(token|secret|passw(or)?d|credential|api_?key|access_?key|private_?key)")
MIN_SECRET_CHARS = 8  # shorter values ("1", "true") would mask innocent text

PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"hf_[A-Za-z0-9]{20,}"), MASK),  # Hugging Face user access token
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}"), MASK),  # GitHub tokens
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),  # AWS access key id
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"), MASK),  # OpenAI-style secret keys
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {MASK}"),  # Authorization values
    # user:password@host in any URI (postgresql://, https://, s3://, ...): the password goes.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@\"']+):[^@\s/\"']+@"), rf"\1:{MASK}@"),
    # token=..., password=..., api_key=... in query strings, CLI text and key=value lists.
    (
        re.compile(
            r"(?i)\b([a-z0-9_]*(?:token(?!s|izer)|secret|passw(?:or)?d|api_?key|access_?key|signature|credential)"
            r"[a-z0-9_]*)(\s*=\s*)([^\s&;,'\"]+)"
        ),
        rf"\1\2{MASK}",
    ),
)


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of the environment's secret-named variables, longest first (so no prefix is left over)."""
    environ = os.environ if environ is None else environ
    values = {
        value
        for name, value in environ.items()
        if _names_a_secret(name) and len(value.strip()) >= MIN_SECRET_CHARS
    }
    return sorted(values, key=len, reverse=True)


# `redact` runs on every param, tag and artifact string of a run (about a thousand calls): matching each
# environment variable's name once per process, not once per call, took ~1.3 s off every tiny run.
# Values are still read on every call, so a secret exported mid-run is masked from then on.
@lru_cache(maxsize=4096)
def _names_a_secret(name: str) -> bool:
    return SECRET_ENV_NAME.search(name) is not None


def redact(text: str, environ: dict[str, str] | None = None) -> str:
    """``text`` with every secret-looking substring and every secret environment value masked."""
    if not text:
        return text
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_obj(obj: Any, environ: dict[str, str] | None = None) -> Any:
    """Redact every string (keys and values) of a JSON-like structure; other values are kept."""
    if isinstance(obj, str):
        return redact(obj, environ)
    if isinstance(obj, dict):
        return {redact_obj(k, environ): redact_obj(v, environ) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v, environ) for v in obj]
    return obj
