"""The Store contract: the domain verbs every storage engine provides, returning models.

Handlers and domain modules speak only this; SQL lives in the engine modules
(today `sqlite.py`). Every method raises `errors.StoreUnavailable` when the
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

    async def close(self) -> None:
        """Finish every queued write, then close."""
