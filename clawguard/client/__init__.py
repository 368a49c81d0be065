"""The Python client of the clawguard API: `Client` (blocking) and `AsyncClient` (asyncio).

One typed method per route, answering the models of `clawguard.client.records`,
and `step()`, which wraps an agent step: preflight, run, record the cost, raise
BudgetPaused when the kill-switch fires; `guarded()` does the same around
`authorize()` (ActionBlocked unless the verdict is ALLOW, after waiting on an
approval). Errors are the typed exceptions of
`clawguard.client.errors`, also reachable from here. It imports nothing of the
daemon, so an agent can use it without the daemon's dependencies being loaded.
"""

from __future__ import annotations

from clawguard.client import errors, records
from clawguard.client.aio import AsyncClient
from clawguard.client.api import Guarded, Step
from clawguard.client.blocking import Client
from clawguard.client.calls import Cents, new_idempotency_key
from clawguard.client.errors import (
    ActionBlocked,
    ApprovalDenied,
    BudgetPaused,
    ClawguardError,
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    QuotaExceeded,
    ServerError,
    Unauthorized,
    Unavailable,
    Unprocessable,
    Unreachable,
)
from clawguard.client.settings import DEFAULT_URL, KEY_ENV, URL_ENV, Retry

__all__ = [
    "DEFAULT_URL",
    "KEY_ENV",
    "URL_ENV",
    "ActionBlocked",
    "ApprovalDenied",
    "AsyncClient",
    "BudgetPaused",
    "Cents",
    "ClawguardError",
    "Client",
    "Conflict",
    "Forbidden",
    "Guarded",
    "IdempotencyConflict",
    "InvalidRequest",
    "NotFound",
    "QuotaExceeded",
    "Retry",
    "ServerError",
    "Step",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "Unreachable",
    "errors",
    "new_idempotency_key",
    "records",
]
