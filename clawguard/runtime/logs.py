"""Logging: one JSON object per line for machines, plain lines on a terminal, request ids.

The request id of the request being served (X-Request-Id, or one made up)
rides in a context variable, so every line logged while serving it names it.
Messages pass through redact.py on their way out: a key never reaches a log.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any, Literal

from clawguard.core import redact

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id",
                                                                        default=None)
Format = Literal["auto", "json", "text"]

# Attributes every LogRecord has; anything else was passed in `extra=` and is logged too.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact.redact(record.getMessage()),
        }
        rid = request_id.get()
        if rid is not None:
            entry["requestId"] = rid
        entry |= {k: redact.redact(v) for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            entry["exc"] = redact.redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = redact.redact(super().format(record))
        rid = request_id.get()
        return line if rid is None else f"{line} [request {rid}]"


def configure(level: str = "info", fmt: Format = "auto") -> None:
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
