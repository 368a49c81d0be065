"""The exception tree of clawguard; no HTTP here (web.py maps these to statuses).

    ClawguardError
     ├── InvalidInput          a request that is malformed or breaks a rule of its shape
     ├── Unauthorized          no key, or a key that is unknown or revoked
     ├── Forbidden             a key whose role may not do this
     │    └── Refused               a decision this key may not make (its audit row attached)
     ├── NotFound              an id or scope that has no row
     ├── Conflict              a request that contradicts stored state
     │    ├── IdempotencyConflict   the same idempotency key with another body
     │    ├── DelegationCap         a run past a delegation cap (depth, children, roots)
     │    ├── BudgetExhausted       a hold that does not fit under a cap (details: scope)
     │    └── BudgetPaused          a hold on a scope whose cap has paused it (details: scope)
     ├── Unprocessable         well-formed, but semantically refused
     ├── QuotaExceeded         a run start past its tenant's quota (retry later)
     ├── RequestTimeout        a client too slow to send its request
     ├── StoreUnavailable      the database cannot be read or written
     └── ConfigError           a setting that stops start-up
"""

from __future__ import annotations

from typing import Any

from clawguard.core import audit


class ClawguardError(Exception):
    """Base of every error clawguard raises on purpose."""

    code = "error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(ClawguardError):
    code = "invalid_input"


class Unauthorized(ClawguardError):
    code = "unauthorized"


class Forbidden(ClawguardError):
    code = "forbidden"


class Refused(Forbidden):
    """Forbidden by a decider: `event` is the verification row to write after the rollback
    (the refused write's transaction is rolled back, and its audit rows with it)."""

    def __init__(self, message: str, details: Any, event: audit.Event) -> None:
        super().__init__(message, details)
        self.event = event


class NotFound(ClawguardError):
    code = "not_found"


class Conflict(ClawguardError):
    code = "conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class DelegationCap(Conflict):
    code = "delegation_cap"


class BudgetExhausted(Conflict):
    code = "budget_exhausted"


class BudgetPaused(Conflict):
    code = "budget_paused"


class Unprocessable(ClawguardError):
    code = "unprocessable"


class QuotaExceeded(ClawguardError):
    """details carry retryAfterMs, which the HTTP layer also says in Retry-After."""

    code = "quota_exceeded"


class RequestTimeout(ClawguardError):
    code = "request_timeout"


class StoreUnavailable(ClawguardError):
    code = "store_unavailable"


class ConfigError(ClawguardError):
    code = "config_error"
