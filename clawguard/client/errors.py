"""What a clawguard client raises: the daemon's error answers, typed, and the stop signals.

    ClawguardError            status, code, message, details (the daemon's error body)
     ├── InvalidRequest         400 (and 408, 413): the request was malformed
     ├── Unauthorized           401: no key, or an unknown or revoked one
     ├── Forbidden              403: the key's role may not do this
     ├── NotFound               404: no such id or budget
     ├── Conflict               409: contradicts stored state (already decided, ...)
     │    └── IdempotencyConflict   the same idempotency key with another body
     ├── Unprocessable          422: well-formed, semantically refused
     ├── ServerError            500 and any other 5xx but 503 (another 4xx: the base class)
     ├── Unavailable            503: the daemon's store is down (retried first)
     │    └── Unreachable        no answer at all: refused, reset, timed out (retried first)
     ├── BudgetPaused           the kill-switch: preflight refused, or a spend said stop
     └── ApprovalDenied         an approval answered deny, expired or timeout

These are the client's, not the daemon's: a client knows a status and a
body, the daemon knows why. No I/O here.
"""

from __future__ import annotations

from typing import Any

from clawguard.client import records


class ClawguardError(Exception):
    """An answer that is not the one asked for; `status` is None when no HTTP answer came."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "error",
                 details: Any = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details
        self.request_id = request_id

    def __str__(self) -> str:
        where = f"{self.status} {self.code}: " if self.status is not None else ""
        return f"{where}{self.message}"


class InvalidRequest(ClawguardError):
    pass


class Unauthorized(ClawguardError):
    pass


class Forbidden(ClawguardError):
    pass


class NotFound(ClawguardError):
    pass


class Conflict(ClawguardError):
    pass


class IdempotencyConflict(Conflict):
    pass


class Unprocessable(ClawguardError):
    pass


class QuotaExceeded(ClawguardError):
    """429: a tenant quota is used up; `details["retryAfterMs"]` says when to try again."""


class ServerError(ClawguardError):
    pass


class Unavailable(ClawguardError):
    pass


class Unreachable(Unavailable):
    pass


class BudgetPaused(ClawguardError):
    """The kill-switch fired. `outcome` is the recorded spend when it fired on one (the money
    is spent and recorded), None when the preflight refused before the step ran."""

    def __init__(self, reason: str, scopes: list[records.ScopeState],
                 outcome: records.SpendOutcome | None = None) -> None:
        super().__init__(f"the kill-switch fired: {reason}", code="budget_paused")
        self.reason = reason
        self.scopes = scopes
        self.outcome = outcome

    @property
    def paused(self) -> list[records.ScopeState]:
        """The scopes that stopped it."""
        return [state for state in self.scopes if state.status == "paused"]


class ApprovalDenied(ClawguardError):
    """Not allowed: `resolution` is deny, expired, or timeout.

    timeout: no decision came within the caller's wait, including a wait that
    rode out a daemon it could not reach until its deadline (then the last
    connection error is the `__cause__`). The request may still be pending:
    `wait_for_approval(approval_id)` waits on it again.
    """

    def __init__(self, resolution: str, approval_id: str | None) -> None:
        super().__init__(f"approval {approval_id or '(none)'}: {resolution}", code=resolution)
        self.resolution = resolution
        self.approval_id = approval_id


class ActionBlocked(ClawguardError):
    """Authorize did not allow the step: `verdict.decision` is BLOCK, or PENDING when no
    decision came within the wait; `verdict.reasons` say why, `verdict.receipt_id` where it
    is kept."""

    def __init__(self, verdict: records.Verdict) -> None:
        reasons = "; ".join(verdict.reasons) or "no reason given"
        super().__init__(f"{verdict.decision}: {reasons} (receipt {verdict.receipt_id})",
                         code=verdict.decision.lower())
        self.verdict = verdict


_BY_STATUS: dict[int, type[ClawguardError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    408: InvalidRequest,
    409: Conflict,
    413: InvalidRequest,
    422: Unprocessable,
    429: QuotaExceeded,
    503: Unavailable,
}


def from_response(status: int, body: Any, request_id: str | None = None) -> ClawguardError:
    """The typed error for an error answer; `body` is its parsed JSON, or its text."""
    if isinstance(body, dict):
        code = str(body.get("error") or "error")
        message = str(body.get("message") or code)
        details = body.get("details")
    else:
        code, details = "error", None
        message = str(body)[:500] or f"HTTP {status}"
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else ClawguardError)
    if kind is Conflict and code == "idempotency_conflict":
        kind = IdempotencyConflict
    return kind(message, status=status, code=code, details=details, request_id=request_id)
