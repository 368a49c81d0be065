"""The Store contract: the domain verbs every storage engine provides, returning models.

Handlers and domain modules speak only this; SQL lives in the engine (today
the `sqlite` package). Every method raises `errors.StoreUnavailable` when the
database cannot be reached, never a driver exception.
"""

from __future__ import annotations

from typing import Any, Protocol

from clawguard import auth, models


class Store(Protocol):
    async def ready(self) -> bool:
        """The database answers and every known migration is applied."""

    async def writable(self) -> bool:
        """Writes commit (after a failure, checked again by a probe write)."""

    async def set_budget(self, request: models.BudgetSet) -> models.Budget: ...

    async def delete_budget(self, scope: models.Scope, scope_id: str) -> None: ...

    async def resume_budget(
        self, scope: models.Scope, scope_id: str, grace_cents: int | None
    ) -> models.Resumed: ...

    async def list_budgets(
        self, scope: models.Scope | None, status: models.Status | None
    ) -> list[models.Budget]: ...

    async def record_spend(
        self, request: models.SpendRequest, fingerprint: str
    ) -> models.SpendCharged:
        """Charge every named budgeted scope and write one ledger row, all or nothing."""

    async def scope_states(self, scope_ids: models.ScopeIds) -> list[models.ScopeState]: ...

    async def list_audit(
        self, agent_id: str | None, event_type: str | None, since: int | None, limit: int
    ) -> list[models.AuditEntry]: ...

    async def audit_head(self) -> models.AuditHead: ...

    async def find_key(self, key_hash: str) -> auth.Principal | None:
        """The principal of an active (unrevoked) key."""

    async def has_keys(self) -> bool: ...

    async def add_key(self, principal: auth.Principal, key_hash: str) -> None: ...

    async def audit_event(
        self, event_type: models.EventType, action: str, agent_id: str | None,
        details: dict[str, Any],
    ) -> None: ...

    # --- approvals (SPEC section 4) ---------------------------------------------

    async def open_approval(self, new: models.NewApproval, ttl_ms: int) -> models.Opened:
        """A live sticky grant for (agent, tool) short-circuits; else a pending row expiring
        ttl_ms from now. Either way audited, in one transaction."""

    async def get_approval(self, approval_id: str) -> models.Approval | None:
        """The row as stored (callers apply `Approval.as_of`)."""

    async def list_pending_approvals(self, now: int) -> list[models.Approval]:
        """Pending rows not yet past expiry at `now`, newest first."""

    async def resolve_approval(
        self, approval_id: str, decision: models.Decision, resolved_by: str | None,
        sticky_ttl_ms: int, decider: auth.Principal,
    ) -> models.Approval:
        """Decide a pending, unexpired row exactly once: NotFound; Forbidden when `decider`
        may not decide it (auth.Principal.refusal_to_decide); Conflict when it is decided
        or past expiry. allow_always also writes a sticky grant; every decision
        is appended to the history and audited."""

    async def any_approval_due(self, now: int) -> bool:
        """Whether a pending row is past expiry at `now` (a read: no write lock taken)."""

    async def expire_approvals(self, limit: int) -> list[models.Approval]:
        """Mark up to `limit` pending rows past expiry as expired, auditing each once."""

    async def list_grants(self, now: int, agent_id: str | None) -> list[models.Grant]:
        """Live grants at `now` (unrevoked, unexpired), newest first."""

    async def revoke_grant(
        self, grant_id: str, revoked_by: str | None, revoker: auth.Principal
    ) -> models.Grant:
        """NotFound, Forbidden outside the revoker's agents, or Conflict when already revoked."""

    async def list_history(self, agent_id: str | None, limit: int) -> list[models.HistoryRecord]:
        ...

    async def append_history(
        self, agent_id: str, action: models.HistoryAction, tool_name: str, details: str | None
    ) -> models.HistoryRecord: ...

    async def budget_levels(self) -> list[tuple[str, str, str, str, int, int]]:
        """(scope, scopeId, status, mode, spent micros, limit cents) of every budget row."""

    async def count_pending_approvals(self, now: int) -> int: ...

    async def close(self) -> None:
        """Finish every queued write, then close."""
