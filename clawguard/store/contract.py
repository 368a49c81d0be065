"""The Store contract: the domain verbs every storage engine provides, returning models.

Handlers and domain modules speak only this; SQL lives in the engine (today
the `sqlite` package). Every method raises `errors.StoreUnavailable` when the
database cannot be reached, never a driver exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from clawguard.core import audit, commands, principals, records


class Store(Protocol):
    # Called with (writes, seconds) after every transaction that commits writes (metrics).
    batch_observer: Callable[[int, float], None] | None

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    def watch_decisions(self, wake: Callable[[str], None]) -> None:
        """Call `wake(approval_id)` whenever another daemon on the same database decides or
        expires an approval, so waiters parked here hear it (engines shared by several
        daemons; an engine with a single daemon never calls it)."""

    async def ready(self) -> bool:
        """The database answers and every known migration is applied."""

    async def writable(self) -> bool:
        """Writes commit (after a failure, checked again by a probe write)."""

    async def set_budget(self, request: commands.BudgetSet) -> records.Budget: ...

    async def delete_budget(self, scope: records.Scope, scope_id: str) -> None: ...

    async def resume_budget(
        self, scope: records.Scope, scope_id: str, grace_cents: int | None
    ) -> records.Resumed: ...

    async def list_budgets(
        self, scope: records.Scope | None, status: records.Status | None
    ) -> list[records.Budget]: ...

    async def record_spend(
        self, request: commands.SpendRequest, fingerprint: str
    ) -> records.SpendCharged:
        """Charge every named budgeted scope and write one ledger row, all or nothing."""

    async def scope_states(self, scope_ids: commands.ScopeIds) -> list[records.ScopeState]: ...

    async def list_audit(
        self, agent_id: str | None, event_type: str | None, since: int | None, limit: int
    ) -> list[records.AuditEntry]: ...

    async def audit_head(self) -> records.AuditHead: ...

    async def find_key(self, key_hash: str) -> principals.Principal | None:
        """The principal of an active (unrevoked) key."""

    async def has_keys(self) -> bool: ...

    async def add_key(self, principal: principals.Principal, key_hash: str) -> None: ...

    async def audit_event(self, event: audit.Event) -> None: ...

    # --- approvals --------------------------------------------------------------

    async def open_approval(self, new: records.NewApproval, ttl_ms: int) -> records.Opened:
        """A live sticky grant for (agent, tool) short-circuits; else a pending row expiring
        ttl_ms from now. Either way audited, in one transaction."""

    async def get_approval(self, approval_id: str) -> records.Approval | None:
        """The row as stored (callers apply `Approval.as_of`)."""

    async def list_pending_approvals(
        self, now: int, limit: int, after: records.PendingKey | None = None,
        agents: frozenset[str] | None = None,
    ) -> list[records.Approval]:
        """Up to `limit` pending rows not yet past expiry at `now`, newest first (by creation
        time, then id), those after `after` when given, only of `agents` when given."""

    async def resolve_approval(
        self, approval_id: str, decision: records.Decision, resolved_by: str | None,
        sticky_ttl_ms: int, decider: principals.Principal,
    ) -> records.Approval:
        """Decide a pending, unexpired row exactly once: NotFound; Forbidden when `decider`
        may not decide it (auth.Principal.refusal_to_decide); Conflict when it is decided
        or past expiry. allow_always also writes a sticky grant; every decision
        is appended to the history and audited."""

    async def any_approval_due(self, now: int) -> bool:
        """Whether a pending row is past expiry at `now` (a read: no write lock taken)."""

    async def expire_approvals(self, limit: int) -> list[records.Approval]:
        """Mark up to `limit` pending rows past expiry as expired, auditing each once."""

    async def list_grants(self, now: int, agent_id: str | None) -> list[records.Grant]:
        """Live grants at `now` (unrevoked, unexpired), newest first."""

    async def revoke_grant(
        self, grant_id: str, revoked_by: str | None, revoker: principals.Principal
    ) -> records.Grant:
        """NotFound, Forbidden outside the revoker's agents, or Conflict when already revoked."""

    async def list_history(self, agent_id: str | None, limit: int) -> list[records.HistoryRecord]:
        ...

    async def append_history(
        self, agent_id: str, action: records.HistoryAction, tool_name: str, details: str | None
    ) -> records.HistoryRecord: ...

    async def budget_levels(self) -> list[tuple[str, str, str, str, int, int]]:
        """(scope, scopeId, status, mode, spent micros, limit cents) of every budget row."""

    async def count_pending_approvals(self, now: int) -> int: ...

    async def close(self) -> None:
        """Finish every queued write, then close."""
