"""Policy documents as JSON text, numbers exact both ways, and RFC 3339 timestamps (no I/O).

Rules are stored and answered verbatim: a `max_value` of 250.10 must come back
as 250.10, so Decimals are written as the digits they hold, never through a float.
"""

from __future__ import annotations

import datetime
import json
import re
from decimal import Decimal
from typing import Any

_DECODER = json.JSONDecoder(parse_float=Decimal)


# A Decimal goes through the C encoder as a marked string, then the mark is replaced by its
# digits. The mark starts with a NUL, which the encoder always escapes as \u0000.
_MARK = "\x00decimal:"
_MARKED = re.compile(r'"\\u0000decimal:([^"\\]+)"')


def dumps(value: Any) -> str:
    """Compact JSON; a Decimal is written as its own digits (finite ones only)."""
    marked = 0

    def number(item: object) -> object:
        nonlocal marked
        if isinstance(item, Decimal):
            marked += 1
            return _MARK + _digits(item)
        if hasattr(item, "items"):  # a read-only mapping
            return dict(item.items())
        raise TypeError(f"{type(item).__name__} is not a JSON value")

    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                      default=number)
    if not marked:
        return text
    text, replaced = _MARKED.subn(r"\1", text)
    if replaced == marked:
        return text
    return _walk(value)  # a string in the document looks like a mark: the slow, exact way


def _digits(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"{value} is not a JSON number")
    return str(value)


def _walk(value: Any) -> str:
    if value is None or isinstance(value, bool | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, Decimal):
        return _digits(value)
    if isinstance(value, dict):
        return "{" + ",".join(
            f"{json.dumps(str(k), ensure_ascii=False)}:{_walk(v)}" for k, v in value.items()
        ) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_walk(item) for item in value) + "]"
    if hasattr(value, "items"):  # a read-only mapping
        return _walk(dict(value.items()))
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def loads(text: str) -> Any:
    return _DECODER.decode(text)


def rfc3339(ms: int) -> str:
    """Epoch milliseconds as `2026-05-14T10:00:00.000Z`."""
    moment = datetime.datetime.fromtimestamp(ms // 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
