"""Masking of secrets before anything is stored: by key name, and by value shape."""

from __future__ import annotations

import functools
import re
from typing import Any

MASK = "***"

# Keys that name a secret; token *counts* (inputTokens, max_tokens) are not secrets.
_SECRET_KEY = re.compile(r"token|secret|passw|apikey|auth|credential|privatekey|cookie")
_NOT_SECRET_KEY = re.compile(r"tokens$|tokencount|^author$|authors?name")
# Values that look like a credential wherever they appear.
_SECRET_VALUE = re.compile(
    r"(?i)\b(bearer\s+[a-z0-9._~+/=-]{8,}|sk-[a-z0-9_-]{16,}|gh[pousr]_[a-z0-9]{20,}"
    r"|xox[abpr]-[a-z0-9-]{10,}|akia[0-9a-z]{16})"
)


# No shorter text can match _SECRET_VALUE ("bearer" and a space and 8, or "xoxb-" and 10):
# most values (ids, names, statuses) are judged by their length alone.
SHORTEST_SECRET_VALUE = 15

_NOT_LETTERS = re.compile(r"[^a-z]")


# Keys repeat (every audit row and receipt has the same few): each is judged once.
@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    norm = _NOT_LETTERS.sub("", key.lower())
    return bool(_SECRET_KEY.search(norm)) and not _NOT_SECRET_KEY.search(norm)


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with secret-keyed values and credential-shaped text masked."""
    if isinstance(value, dict):
        return {
            key: MASK if item is not None and is_secret_key(str(key)) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, str):
        return _SECRET_VALUE.sub(MASK, value) if len(value) >= SHORTEST_SECRET_VALUE else value
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value
