"""Logging: one JSON object per line for machines, plain lines on a terminal, request ids.

The request id of the request being served (X-Request-Id, or one made up)
is the name of the task that serves it (`name_request`), so every line logged
while serving it names it. Messages pass through redact.py on their way out: a
key never reaches a log.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import sys
import time
from typing import Any, Literal

from clawguard.core import redact

# A request id set by hand for what runs in this context (ahead of a served request's).
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id",
                                                                        default=None)
# aiohttp serves each request in a task of its own running this coroutine; a task that
# was not named keeps asyncio's default name.
_REQUEST_CORO = "RequestHandler._handle_request"
_UNNAMED = re.compile(r"Task-\d+")


def name_request(rid: str) -> None:
    """Name the request being served `rid` in what it logs: its task's name, not a context
    variable, whose entry in the task's context (~140 B) a parked approval wait would keep
    for as long as it waits (bench/README.md, "Fourth pass"); the name replaces asyncio's
    default one."""
    task = asyncio.current_task()
    if task is not None:
        task.set_name(rid)


def current_request_id() -> str | None:
    """The request id to log with: set by hand in this context, else the name of the served
    request's task (`name_request`); None outside a request."""
    rid = request_id.get()
    if rid is not None:
        return rid
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop in this thread
        return None
    if task is None or getattr(task.get_coro(), "__qualname__", None) != _REQUEST_CORO:
        return None
    name = task.get_name()
    return None if _UNNAMED.fullmatch(name) else name


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
        rid = current_request_id()
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
        rid = current_request_id()
        return line if rid is None else f"{line} [request {rid}]"


def configure(level: str = "info", fmt: Format = "auto") -> None:
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
