"""Policy documents as JSON text, numbers exact both ways, and RFC 3339 timestamps (no I/O).

Rules are stored and answered verbatim: a `max_value` of 250.10 must come back
as 250.10, so Decimals are written as the digits they hold, never through a float.
"""

from __future__ import annotations

import datetime
import json
from decimal import Decimal
from typing import Any

_DECODER = json.JSONDecoder(parse_float=Decimal)


def dumps(value: Any) -> str:
    """Compact JSON; a Decimal is written as its own digits (finite ones only)."""
    if value is None or isinstance(value, bool | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(
            f"{json.dumps(str(k), ensure_ascii=False)}:{dumps(v)}" for k, v in value.items()
        ) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    if hasattr(value, "items"):  # a read-only mapping
        return dumps(dict(value.items()))
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def loads(text: str) -> Any:
    return _DECODER.decode(text)


def rfc3339(ms: int) -> str:
    """Epoch milliseconds as `2026-05-14T10:00:00.000Z`."""
    moment = datetime.datetime.fromtimestamp(ms // 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
