"""The Store contract: the domain verbs every storage engine provides, returning models.

Handlers and domain modules speak only this; SQL lives in the engine (today
the `sqlite` package). Every method raises `errors.StoreUnavailable` when the
database cannot be reached, never a driver exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from clawguard.core import audit, commands, guardrails, ledger, principals, records, registry, runs
from clawguard.core import gate as gate_rules


class Store(Protocol):
    # Called with (writes, seconds) after every transaction that commits writes (metrics).
    batch_observer: Callable[[int, float], None] | None

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    def watch_decisions(self, wake: Callable[[str, records.Approval | None], None]) -> None:
        """Call `wake(approval_id, row)` whenever another daemon on the same database decides
        or expires an approval, so waiters parked here hear it: `row` is the decided row when
        the notification carried it, else None (read it). Engines shared by several daemons;
        an engine with a single daemon never calls it."""

    async def ready(self) -> bool:
        """The database answers and every known migration is applied."""

    async def writable(self) -> bool:
        """Writes commit (after a failure, checked again by a probe write)."""

    # `actor`: the key making the change, named in its audit row.
    async def set_budget(
        self, request: commands.BudgetSet, actor: principals.Principal
    ) -> records.Budget: ...

    async def delete_budget(
        self, scope: records.Scope, scope_id: str, actor: principals.Principal
    ) -> None: ...

    async def resume_budget(
        self, scope: records.Scope, scope_id: str, grace_cents: int | None,
        actor: principals.Principal,
    ) -> records.Resumed: ...

    async def list_budgets(
        self, scope: records.Scope | None, status: records.Status | None
    ) -> list[records.Budget]: ...

    async def record_spend(
        self, request: commands.SpendRequest, fingerprint: str, ledger_key: str | None
    ) -> records.SpendCharged:
        """Charge every named budgeted scope and write one ledger row, all or nothing; a
        `ledger_key` already stored replays (core.budgets.replay) instead."""

    async def scope_states(self, scope_ids: commands.ScopeIds) -> list[records.ScopeState]: ...

    async def list_audit(
        self, agent_id: str | None, event_type: str | None, since: int | None, limit: int
    ) -> list[records.AuditEntry]: ...

    async def audit_head(self) -> records.AuditHead: ...

    async def settled_spends(self, after_id: int, before: int, limit: int
                             ) -> list[ledger.SpendRow]:
        """Ledger rows with an id above `after_id`, made before `before`, in id order."""

    async def last_checkpoint(self) -> tuple[int, str] | None:
        """(last spend id, digest) of the newest ledger checkpoint in the audit log."""

    async def spend_summary(
        self, group_by: records.SpendGrouping, since: int | None, until: int | None
    ) -> list[records.SpendGroup]:
        """The ledger's spends in [since, until) grouped by one field, summed by SQL, largest
        first (ties by key; spends that do not name the field form the group None, last)."""

    async def find_key(self, key_hash: str, now: int) -> principals.Principal | None:
        """The principal of a usable key: unrevoked and unexpired at `now`."""

    async def has_keys(self) -> bool: ...

    async def add_key(self, principal: principals.Principal, key_hash: str) -> records.ApiKey:
        ...

    async def list_keys(self) -> list[records.ApiKey]:
        """Every key, oldest first; never a key's value or hash."""

    async def revoke_key(self, key_id: str) -> records.ApiKey:
        """NotFound for no such key, Conflict when already revoked (principals.revoke)."""

    async def touch_keys(self, uses: Mapping[str, int]) -> None:
        """Set lastUsedAt from {key id: epoch ms}, never moving one back (one write a flush)."""

    async def audit_event(self, event: audit.Event) -> None: ...

    # --- approvals --------------------------------------------------------------

    async def open_approval(self, new: records.NewApproval, ttl_ms: int) -> records.Opened:
        """A live sticky grant for (agent, tool) short-circuits (core.approvals.matching_grant:
        a tool grant, or an args grant for `new.args_fingerprint`); else a pending row
        expiring ttl_ms from now. Either way audited, in one transaction."""

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
        grant_scope: records.GrantScope = "tool",
    ) -> records.Approval:
        """Decide a pending, unexpired row exactly once: NotFound; Refused (a Forbidden
        carrying its verification event, unwritten) when `decider` may not decide it
        (principals.Principal.refusal_to_decide); Conflict when it is decided
        or past expiry. allow_always also writes a sticky grant for the tool or, with
        `grant_scope` args, for the row's argument fingerprint only; every decision
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
        """NotFound, Refused (as for resolve_approval) outside the revoker's agents, or
        Conflict when already revoked."""

    async def list_history(self, agent_id: str | None, limit: int) -> list[records.HistoryRecord]:
        ...

    async def append_history(
        self, agent_id: str, action: records.HistoryAction, tool_name: str, details: str | None
    ) -> records.HistoryRecord: ...

    async def budget_levels(self) -> list[tuple[str, str, str, str, int, int]]:
        """(scope, scopeId, status, mode, spent micros, limit cents) of every budget row."""

    async def count_pending_approvals(self, now: int) -> int: ...

    # --- the action gate's documents (every write below moves gate_generation) -------

    async def gate_generation(self) -> int:
        """A number every write of policies, tools, tool policies or overrides changes."""

    async def get_guardrail(self, policy_id: str, version: int | None
                            ) -> guardrails.Stored | None:
        """The policy at `version` (None: its current one), deleted or not."""

    async def list_guardrails(self) -> list[guardrails.Stored]:
        """Every undeleted policy at its current version, newest first."""

    async def guardrail_versions(self, policy_id: str) -> list[guardrails.Version]:
        """Every version of the policy, deleted or not, newest first ([]: no such policy)."""

    async def create_guardrail(
        self, draft: gate_rules.Draft, idempotency_key: str | None, actor: principals.Principal
    ) -> tuple[guardrails.Stored, bool]:
        """The new policy at version 1, or (replayed=True) the one this key already made;
        guardrails.create and guardrails.replay decide."""

    async def update_guardrail(
        self, policy_id: str, patch: gate_rules.Update, actor: principals.Principal
    ) -> guardrails.Stored: ...

    async def rollback_guardrail(
        self, policy_id: str, version: int, message: str | None, actor: principals.Principal
    ) -> guardrails.Rollback: ...

    async def delete_guardrail(self, policy_id: str, actor: principals.Principal) -> None: ...

    async def list_tools(self, include_archived: bool) -> list[registry.Tool]:
        """Registration order."""

    async def register_tool(
        self, name: str, categories: list[str], description: str | None,
        actor: principals.Principal,
    ) -> registry.Tool: ...

    async def deprecate_tool(
        self, name: str, reason: str, replacement: str | None, actor: principals.Principal
    ) -> registry.Tool: ...

    async def archive_tool(self, name: str, actor: principals.Principal) -> registry.Tool: ...

    async def list_tool_policies(self) -> list[registry.ToolPolicy]: ...

    async def create_tool_policy(
        self, tool_name: str, allowed: bool, allowed_domains: list[str] | None,
        max_response_size_kb: int | None, actor: principals.Principal,
    ) -> registry.ToolPolicy: ...

    async def delete_tool_policy(self, policy_id: str, actor: principals.Principal) -> None: ...

    async def list_role_overrides(self) -> list[registry.RoleOverride]: ...

    async def create_role_override(
        self, role: str, tool_name: str, allowed: bool, actor: principals.Principal
    ) -> registry.RoleOverride: ...

    async def delete_role_override(self, override_id: str, actor: principals.Principal
                                   ) -> None: ...

    # --- runs and quotas -----------------------------------------------------------

    async def start_run(
        self, request: commands.RunStart, plan: dict[str, int], rules: runs.Rules
    ) -> runs.Started:
        """Start a run (or replay its idempotency key) unless a delegation cap or the tenant's
        quota (plan defaults under its overrides) refuses it: then the refusal is audited and
        raised (DelegationCap, QuotaExceeded) once that commits. Counted exactly, however
        many starts race, on every engine."""

    async def end_run(self, run_id: str) -> records.Run:
        """NotFound; Conflict when expired or tripped; an ended run is answered as it is."""

    async def run_events(
        self, run_id: str, events: list[commands.RunEvent], rules: runs.Rules
    ) -> runs.Applied:
        """Apply breaker events in order, store the counters, renew the lease or trip the run
        (audited once). NotFound; Conflict when the run is not running."""

    async def get_run(self, run_id: str) -> records.Run | None:
        """The row as stored (callers apply `Run.as_of`)."""

    async def list_runs(
        self, status: records.RunStatus | None, agent_id: str | None, now: int, limit: int
    ) -> list[records.Run]:
        """Newest first; `status` as the rows read at `now` (a lapsed lease is expired)."""

    async def count_running_runs(self, now: int) -> int: ...

    async def quota_overrides(self, tenant_id: str) -> dict[str, int]: ...

    async def set_quota_overrides(
        self, tenant_id: str, patch: dict[str, int | None]
    ) -> dict[str, int]:
        """Apply a checked patch (None removes a key), audited; the overrides after it."""

    async def close(self) -> None:
        """Finish every queued write, then close."""
