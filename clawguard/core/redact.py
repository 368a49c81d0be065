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


# Every audit row masks its details by key, and the keys are nearly always the same few
# field names: a decision's row asks about fifteen of them.
@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    norm = re.sub(r"[^a-z]", "", key.lower())
    return bool(_SECRET_KEY.search(norm)) and not _NOT_SECRET_KEY.search(norm)


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with secret-keyed values and credential-shaped text masked."""
    if isinstance(value, dict):
        return {
            key: MASK if is_secret_key(str(key)) and item is not None else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return _SECRET_VALUE.sub(MASK, value)
    return value
