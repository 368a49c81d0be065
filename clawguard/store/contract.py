"""The Store contract: the domain verbs every storage engine provides, returning models.

Handlers and domain modules speak only this; SQL lives in the engine (today
the `sqlite` package). Every method raises `errors.StoreUnavailable` when the
database cannot be reached, never a driver exception.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from clawguard.core import approvals as approval_rules
from clawguard.core import (
    audit,
    authorize,
    commands,
    guardrails,
    ledger,
    principals,
    records,
    registry,
    runs,
    webhooks,
)
from clawguard.core import gate as gate_rules
from clawguard.core.gate import settings as gate_settings


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

    def watch_audit(self, wake: Callable[[int], None]) -> None:
        """Also call `wake(seq)` after each commit that appended audit rows (up to `seq`), made
        here or by another daemon on the same database; `wake(0)` when some may have gone
        unheard (a dropped notification connection). Callbacks run on the event loop."""

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

    async def scope_states(self, scope_ids: commands.ScopeIds) -> list[records.HeldScope]:
        """The chain's budget rows as they read now (core.budgets.current: window, holds)."""

    # --- holds (core.holds) ----------------------------------------------------------

    async def place_hold(
        self, request: commands.HoldRequest, fingerprint: str, key: str, ttl_ms: int
    ) -> records.Hold:
        """Reserve the request's amount for ttl_ms, deciding on the chain's spend and live holds
        as they are committed (exactly, however many placements race, on every engine), or
        raise BudgetPaused / BudgetExhausted; a `key` already stored answers its hold (or
        IdempotencyConflict for another fingerprint)."""

    async def get_hold(self, hold_id: str) -> records.Hold | None:
        """The row as stored (callers apply `Hold.as_of`)."""

    async def commit_hold(
        self, hold_id: str, request: commands.SpendRequest, fingerprint: str
    ) -> records.SpendCharged:
        """Charge the hold's actual cost as record_spend does and mark it committed, in one
        transaction; a committed hold replays its first commit (IdempotencyConflict for
        another cost); NotFound; Conflict when released or expired."""

    async def release_hold(self, hold_id: str) -> records.Hold:
        """NotFound; Conflict unless held."""

    async def expiries_due(self, now: int) -> tuple[bool, bool]:
        """Whether a held hold, and a running run, are past expiry at `now` (reads only)."""

    async def expire_holds(self, limit: int) -> int:
        """Write `expired` on up to `limit` holds past expiry; how many."""

    async def count_live_holds(self, now: int) -> tuple[int, int]:
        """(how many, micros) of holds counting at `now`."""

    async def list_audit(
        self, agent_id: str | None, event_type: str | None, since: int | None, limit: int
    ) -> list[records.AuditEntry]: ...

    async def audit_head(self) -> records.AuditHead: ...

    async def audit_after(self, after_seq: int, limit: int) -> list[audit.Row]:
        """Up to `limit` audit rows with a seq above `after_seq`, in seq order (the event
        stream's replay and its live reads)."""

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
        a tool grant, or an args grant for `new.args_fingerprint`; never when `new.sticky`
        is false); else a pending row expiring ttl_ms from now, with `new.stages` when given.
        Either way audited, in one transaction."""

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

    async def vote_approval(
        self, approval_id: str, ballot: approval_rules.Ballot, resolved_by: str | None,
        voter: principals.Principal, allow_self: bool | None, sticky_ttl_ms: int,
        grant_scope: records.GrantScope = "tool",
    ) -> records.Approval:
        """One vote, exactly once however many race (core.approvals.vote decides): on an
        approval without stages it is resolve_approval; with stages it is counted in the
        current stage's open gates, and the approval is decided (approved or deny, with its
        history line, grant and audit row) only by the vote that completes or denies it.
        `allow_self`: whether the asker may vote; None: as the stored approval settings'
        allow_self_approval says, read in the vote's own transaction (no read of its own)."""

    async def waive_approval(
        self, approval_id: str, reason: str, resolved_by: str | None,
        admin: principals.Principal,
    ) -> records.Approval:
        """Approve a pending approval with stages without its votes, recorded as a waiver
        (core.approvals.waive): NotFound, or Conflict when decided or without stages."""

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

    async def expire_runs(self, limit: int) -> int:
        """Write `expired` on up to `limit` running runs past their lease; how many."""

    async def quota_overrides(self, tenant_id: str) -> dict[str, int]: ...

    async def set_quota_overrides(
        self, tenant_id: str, patch: dict[str, int | None]
    ) -> dict[str, int]:
        """Apply a checked patch (None removes a key), audited; the overrides after it."""

    # --- authorize: approval settings, receipts, the enforcement check, reports -----------

    async def authorize_reads(self, scope_ids: commands.ScopeIds
                              ) -> tuple[list[records.HeldScope], int]:
        """scope_states and gate_generation in one read: what every authorize reads first."""

    async def get_settings(self) -> gate_settings.Settings:
        """The approval settings in force (the defaults before any PATCH)."""

    async def patch_settings(self, patch: dict[str, object], actor: principals.Principal
                             ) -> gate_settings.Settings:
        """Apply a checked patch (gate_settings.check_patch), audited; moves gate_generation."""

    async def find_receipt(self, idempotency_key: str) -> authorize.Stored | None:
        """The receipt an (owner-prefixed) idempotency key made, with its outcome."""

    async def get_receipt(self, receipt_id: str) -> authorize.Stored | None: ...

    async def write_receipt(self, receipt: authorize.NewReceipt
                            ) -> tuple[authorize.Stored, bool]:
        """Append a receipt and its tool_call audit row; when its idempotency key already made
        one, that one instead (replayed True) or IdempotencyConflict for another request.
        One receipt a key, however many calls race, on every engine."""

    async def append_receipt_outcome(self, receipt_id: str, outcome: dict[str, object]
                                     ) -> authorize.Stored:
        """Append a PENDING receipt's outcome once (authorize.append_outcome): a second
        outcome leaves the first; NotFound; Conflict for a receipt that is not PENDING."""

    async def enforcement_blockers(self, resource_type: authorize.ResourceType,
                                   resource_id: str, now: int) -> authorize.Blockers:
        """Tripped runs whose lease has not run out, live pending approvals (of the agent or
        tenant, or opened by an authorize that named the resource) and, for a tenant, its
        run load and quota overrides; at most authorize.BLOCKING_MAX of each."""

    async def report_figures(self, since: int, now: int) -> authorize.ReportFigures:
        """Receipts made since `since` and the approvals they opened, counted by SQL."""

    async def approval_stats(self, since: int, now: int) -> tuple[
            list[tuple[str, int, int, int]], list[tuple[str, int, int]]]:
        """(tool, total, approved, rejected) largest first and (category, total, approved)
        by name, over the approvals opened by receipts made since `since`, by SQL."""
    # --- webhook deliveries (the audit chain is their outbox; README: Notifications) ----

    async def queue_deliveries(self, webhook: str, names: Collection[str], limit: int) -> int:
        """Scan up to `limit` audit rows past the webhook's cursor, queue a delivery due now
        for each whose public event is among `names` (webhooks.wanted), and move the cursor
        past them, in one transaction; how many rows were scanned (0 writes nothing). A
        webhook without a cursor gets one at the head: it is not told the history."""

    async def claim_deliveries(self, webhook: str, lease_ms: int, limit: int
                               ) -> list[webhooks.Delivery]:
        """Up to `limit` of the webhook's deliveries due now, oldest due first, each leased:
        not due again for `lease_ms` unless its outcome is written. On an engine several
        daemons share, no two claim one delivery while its lease holds."""

    async def delivery_done(self, webhook: str, seq: int) -> None:
        """Delivered: the delivery is removed."""

    async def delivery_failed(self, webhook: str, seq: int, error: str, retry_at: int | None
                              ) -> None:
        """One more failed try: due again at `retry_at`, or given up when None (kept, with
        `error` and the time, out of the queue)."""

    async def delivery_backlog(self, webhook: str) -> webhooks.Backlog: ...

    async def close(self) -> None:
        """Finish every queued write, then close."""
