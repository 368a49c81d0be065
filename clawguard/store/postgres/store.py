"""PostgresStore: the Store contract on one PostgreSQL database shared by several daemons.

Every write is one transaction (connection.Database.transaction); what it
does inside lives with its tables (budgets.py, approvals.py, keys.py,
audit_log.py). Spends queue and commit in batches, one transaction a batch,
as the SQLite writer's do: a spend's transaction holds its budget rows'
locks until its commit, so one transaction per spend would let through one
spend per commit on a shared budget; a batch shares the locks and the commit
(README "Running several instances" has the figures). Nothing but API keys
(in http.access) is cached: budgets, approvals and idempotency keys are read
from the database by every request.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from clawguard.core import (
    audit,
    commands,
    errors,
    guardrails,
    ledger,
    principals,
    records,
    registry,
    runs,
)
from clawguard.core import budgets as budget_rules
from clawguard.core import gate as gate_rules
from clawguard.runtime import config
from clawguard.store import batches, migrations, tables
from clawguard.store.postgres import (
    approvals,
    audit_log,
    budgets,
    connection,
    keys,
    listener,
    policies,
    schema,
)
from clawguard.store.postgres import runs as run_rows

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], int]
# How far back the catch-up after a LISTEN reconnect looks, beyond the drop itself.
_CATCH_UP_SLACK_MS = 1_000


class PostgresStore:
    """The Store contract on one PostgreSQL database."""

    def __init__(self, settings: config.StorageConfig, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._db = connection.Database(settings.location, settings.busy_timeout_ms,
                                       settings.pool_size)
        self._instance = secrets.token_hex(4)  # tells our own notifications from others'
        self._wake: Callable[[str, records.Approval | None], None] | None = None
        self._listener = listener.Listener(settings.location, self._heard, self._relistened)
        self._last_heard_ms = 0
        self._catch_ups: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[tuple[budgets.Spend, asyncio.Future[Any]] | None] = (
            asyncio.Queue()
        )
        self._spender: asyncio.Task[None] | None = None
        self._closing = False
        self.batch_observer: Callable[[int, float], None] | None = None

    def watch_decisions(self, wake: Callable[[str, records.Approval | None], None]) -> None:
        self._wake = wake

    # --- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(schema.migrate_database, self._settings.location)
        await self._db.open()
        await self._listener.start()
        self._spender = asyncio.create_task(self._spend_loop(), name="clawguard-spends")

    async def close(self) -> None:
        self._closing = True
        if self._spender is not None:
            self._queue.put_nowait(None)  # after every spend already queued
            await self._spender
            self._spender = None
        await self._listener.stop()
        await self._db.close()

    async def ready(self) -> bool:
        try:
            rows = await self._db.read("SELECT max(version) FROM schema_migrations")
        except errors.StoreUnavailable:
            return False
        return (
            bool(rows)
            and rows[0][0] == migrations.latest_version("postgres")
            and await self.writable()
        )

    async def writable(self) -> bool:
        return await self._db.writable()

    async def _write(self, job: Callable[[connection.Connection, int], Any]) -> Any:
        started = time.perf_counter()
        result = await self._db.transaction(lambda conn: job(conn, self._clock()))
        if self.batch_observer is not None:
            self.batch_observer(1, time.perf_counter() - started)
        return result

    # --- notifications -------------------------------------------------------------

    def _heard(self, payload: str) -> None:
        self._last_heard_ms = self._clock()
        instance, approval_id, approval = listener.read(payload)
        if instance != self._instance and self._wake is not None:
            self._wake(approval_id, approval)

    def _relistened(self, times_before: int) -> None:
        """Back after a drop: what was decided meanwhile was announced to no one here."""
        if times_before and self._wake is not None:
            since = self._last_heard_ms - _CATCH_UP_SLACK_MS
            task = asyncio.get_running_loop().create_task(self._catch_up(since))
            self._catch_ups.add(task)
            task.add_done_callback(self._catch_ups.discard)

    async def _catch_up(self, since: int) -> None:
        try:
            rows = await self._db.read(
                "SELECT id FROM approvals WHERE resolved_at >= %s", (since,)
            )
        except errors.StoreUnavailable as exc:
            log.warning("cannot catch up on decisions after a reconnect: %s", exc.message)
            return
        for (approval_id,) in rows:
            if self._wake is not None:
                self._wake(approval_id, None)

    # --- reads -------------------------------------------------------------------

    async def list_budgets(
        self, scope: records.Scope | None, status: records.Status | None
    ) -> list[records.Budget]:
        rows = await self._db.read(
            f"SELECT {tables.BUDGET_COLUMNS} FROM budgets"
            " WHERE (%(scope)s::text IS NULL OR scope = %(scope)s)"
            " AND (%(status)s::text IS NULL OR status = %(status)s)"
            " ORDER BY updated_at DESC, row_seq DESC",
            {"scope": scope, "status": status},
        )
        return [tables.budget_from_row(row) for row in rows]

    async def scope_states(self, scope_ids: commands.ScopeIds) -> list[records.ScopeState]:
        rows = await self._db.read(
            f"SELECT {tables.BUDGET_COLUMNS} FROM budgets" + budgets.CHAIN_WHERE,
            budgets.chain_params(scope_ids),
        )
        return budget_rules.chain_states(tables.budget_from_row(row) for row in rows)

    async def list_audit(
        self, agent_id: str | None, event_type: str | None, since: int | None, limit: int
    ) -> list[records.AuditEntry]:
        rows = await self._db.read(
            "SELECT seq, event_type, action, agent_id, details, created_at, prev_hash, hash"
            " FROM audit WHERE (%(agent)s::text IS NULL OR agent_id = %(agent)s)"
            " AND (%(event)s::text IS NULL OR event_type = %(event)s)"
            " AND (%(since)s::bigint IS NULL OR created_at >= %(since)s)"
            " ORDER BY seq DESC LIMIT %(limit)s",
            {"agent": agent_id, "event": event_type, "since": since, "limit": limit},
        )
        return [records.AuditEntry.from_stored(*row) for row in rows]

    async def budget_levels(self) -> list[tuple[str, str, str, str, int, int]]:
        rows = await self._db.read(
            "SELECT scope, scope_id, status, mode, spent_micros, limit_cents FROM budgets"
        )
        return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def any_approval_due(self, now: int) -> bool:
        rows = await self._db.read(
            "SELECT 1 FROM approvals WHERE status = 'pending' AND expires_at <= %s LIMIT 1",
            (now,),
        )
        return bool(rows)

    async def count_pending_approvals(self, now: int) -> int:
        rows = await self._db.read(
            "SELECT count(*) FROM approvals WHERE status = 'pending' AND expires_at > %s", (now,)
        )
        return int(rows[0][0])

    async def settled_spends(self, after_id: int, before: int, limit: int
                             ) -> list[ledger.SpendRow]:
        rows = await self._db.read(
            "SELECT id, idempotency_key, fingerprint, cost_micros, created_at FROM spends"
            " WHERE id > %s AND created_at < %s ORDER BY id LIMIT %s", (after_id, before, limit),
        )
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def last_checkpoint(self) -> tuple[int, str] | None:
        rows = await self._db.read(
            "SELECT details FROM audit WHERE action = %s ORDER BY seq DESC LIMIT 1",
            (ledger.CHECKPOINT,),
        )
        return None if not rows else ledger.checkpoint_end(rows[0][0])

    async def audit_head(self) -> records.AuditHead:
        rows = await self._db.read("SELECT seq, hash FROM audit_head WHERE id = 1")
        seq, digest = rows[0] if rows and rows[0][0] else (0, audit.GENESIS)
        return records.AuditHead(seq=seq, hash=digest)

    async def spend_summary(
        self, group_by: records.SpendGrouping, since: int | None, until: int | None
    ) -> list[records.SpendGroup]:
        # COLLATE "C": keys ordered by their bytes, as SQLite orders them.
        rows = await self._db.read(
            "SELECT grp, sum(cost_micros)::bigint, count(*), coalesce(sum(input_tokens), 0)"
            "::bigint, coalesce(sum(output_tokens), 0)::bigint FROM (SELECT CASE %(by)s::text"
            " WHEN 'agent' THEN agent_id WHEN 'mission' THEN mission_id WHEN 'team' THEN"
            " team_id WHEN 'tenant' THEN tenant_id ELSE model END AS grp, cost_micros,"
            " input_tokens, output_tokens FROM spends"
            " WHERE (%(since)s::bigint IS NULL OR created_at >= %(since)s)"
            " AND (%(until)s::bigint IS NULL OR created_at < %(until)s)) AS s"
            ' GROUP BY grp ORDER BY 2 DESC, grp IS NULL, grp COLLATE "C"',
            {"by": group_by, "since": since, "until": until},
        )
        return [records.SpendGroup(key=key, spent_usd_micros=micros, spends=count,
                                   input_tokens=tokens_in, output_tokens=tokens_out)
                for key, micros, count, tokens_in, tokens_out in rows]

    async def find_key(self, key_hash: str, now: int) -> principals.Principal | None:
        rows = await self._db.read(
            f"SELECT {tables.PRINCIPAL_COLUMNS} FROM api_keys WHERE key_hash = %s"
            " AND revoked_at IS NULL",
            (key_hash,),
        )
        principal = tables.principal_from_row(rows[0]) if rows else None
        return principal if principal is not None and principal.usable(now) else None

    async def list_keys(self) -> list[records.ApiKey]:
        rows = await self._db.read(
            f"SELECT {tables.KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
        )
        return [tables.key_from_row(row) for row in rows]

    async def has_keys(self) -> bool:
        return bool(await self._db.read(
            "SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1"
        ))

    async def get_approval(self, approval_id: str) -> records.Approval | None:
        rows = await self._db.read(
            f"SELECT {tables.APPROVAL_COLUMNS} FROM approvals WHERE id = %s", (approval_id,)
        )
        return tables.approval_from_row(rows[0]) if rows else None

    async def list_pending_approvals(
        self, now: int, limit: int, after: records.PendingKey | None = None,
        agents: frozenset[str] | None = None,
    ) -> list[records.Approval]:
        params = {"now": now, "limit": limit,
                  "agents": None if agents is None else sorted(agents)}
        if after is None:
            rows = await self._db.read(
                f"SELECT {tables.APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending'"
                " AND expires_at > %(now)s"
                " AND (%(agents)s::text[] IS NULL OR agent_id = ANY(%(agents)s::text[]))"
                " ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
                params,
            )
        else:
            rows = await self._db.read(
                f"SELECT {tables.APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending'"
                " AND expires_at > %(now)s AND (created_at, id) < (%(at)s, %(id)s)"
                " AND (%(agents)s::text[] IS NULL OR agent_id = ANY(%(agents)s::text[]))"
                " ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
                {**params, "at": after.created_at, "id": after.id},
            )
        return [tables.approval_from_row(row) for row in rows]

    async def list_grants(self, now: int, agent_id: str | None) -> list[records.Grant]:
        rows = await self._db.read(
            f"SELECT {tables.GRANT_COLUMNS} FROM approval_grants WHERE revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > %(now)s)"
            " AND (%(agent)s::text IS NULL OR agent_id = %(agent)s)"
            " ORDER BY created_at DESC, row_seq DESC",
            {"now": now, "agent": agent_id},
        )
        return [tables.grant_from_row(row) for row in rows]

    async def list_history(self, agent_id: str | None, limit: int) -> list[records.HistoryRecord]:
        rows = await self._db.read(
            f"SELECT {tables.HISTORY_COLUMNS} FROM approval_history"
            " WHERE (%(agent)s::text IS NULL OR agent_id = %(agent)s)"
            " ORDER BY id DESC LIMIT %(limit)s",
            {"agent": agent_id, "limit": limit},
        )
        return [tables.history_from_row(row) for row in rows]

    # --- writes --------------------------------------------------------------------

    async def set_budget(
        self, request: commands.BudgetSet, actor: principals.Principal
    ) -> records.Budget:
        result: records.Budget = await self._write(
            lambda conn, now: budgets.set_budget(conn, now, request, actor)
        )
        return result

    async def delete_budget(
        self, scope: records.Scope, scope_id: str, actor: principals.Principal
    ) -> None:
        await self._write(
            lambda conn, now: budgets.delete_budget(conn, now, scope, scope_id, actor)
        )

    async def resume_budget(
        self, scope: records.Scope, scope_id: str, grace_cents: int | None,
        actor: principals.Principal,
    ) -> records.Resumed:
        result: records.Resumed = await self._write(
            lambda conn, now: budgets.resume_budget(
                conn, now, scope, scope_id, grace_cents, actor
            )
        )
        return result

    async def add_key(self, principal: principals.Principal, key_hash: str) -> records.ApiKey:
        result: records.ApiKey = await self._write(
            lambda conn, now: keys.add_key(conn, now, principal, key_hash)
        )
        return result

    async def revoke_key(self, key_id: str) -> records.ApiKey:
        result: records.ApiKey = await self._write(
            lambda conn, now: keys.revoke_key(conn, now, key_id)
        )
        return result

    async def touch_keys(self, uses: Mapping[str, int]) -> None:
        await self._write(lambda conn, now: keys.touch_keys(conn, uses))

    async def audit_event(self, event: audit.Event) -> None:
        await self._write(lambda conn, now: audit_log.append(conn, now, [event]))

    async def open_approval(self, new: records.NewApproval, ttl_ms: int) -> records.Opened:
        result: records.Opened = await self._write(
            lambda conn, now: approvals.open_approval(conn, now, new, ttl_ms)
        )
        return result

    async def resolve_approval(
        self, approval_id: str, decision: records.Decision, resolved_by: str | None,
        sticky_ttl_ms: int, decider: principals.Principal,
        grant_scope: records.GrantScope = "tool",
    ) -> records.Approval:
        result: records.Approval = await self._write(
            lambda conn, now: approvals.resolve_approval(
                conn, now, approval_id, decision, resolved_by, sticky_ttl_ms, decider,
                grant_scope, self._instance,
            )
        )
        return result

    async def expire_approvals(self, limit: int) -> list[records.Approval]:
        result: list[records.Approval] = await self._write(
            lambda conn, now: approvals.expire_approvals(conn, now, limit, self._instance)
        )
        return result

    async def revoke_grant(
        self, grant_id: str, revoked_by: str | None, revoker: principals.Principal
    ) -> records.Grant:
        result: records.Grant = await self._write(
            lambda conn, now: approvals.revoke_grant(conn, now, grant_id, revoked_by, revoker)
        )
        return result

    async def append_history(
        self, agent_id: str, action: records.HistoryAction, tool_name: str, details: str | None
    ) -> records.HistoryRecord:
        result: records.HistoryRecord = await self._write(
            lambda conn, now: approvals.append_history(
                conn, now, agent_id, action, tool_name, details
            )
        )
        return result

    # --- guardrail policies, tools, tool policies, role overrides ----------------------

    async def gate_generation(self) -> int:
        rows = await self._db.read("SELECT generation FROM gate_generation WHERE id = 1")
        return int(rows[0][0])

    async def get_guardrail(self, policy_id: str, version: int | None
                            ) -> guardrails.Stored | None:
        rows = await self._db.read(
            tables.STORED + " WHERE p.id = %(id)s"
            " AND v.version = coalesce(%(version)s::integer, p.version)",
            {"id": policy_id, "version": version},
        )
        return tables.stored_from_row(rows[0]) if rows else None

    async def list_guardrails(self) -> list[guardrails.Stored]:
        rows = await self._db.read(
            tables.STORED + " WHERE v.version = p.version AND p.deleted_at IS NULL"
            " ORDER BY p.seq DESC",
        )
        return [tables.stored_from_row(row) for row in rows]

    async def guardrail_versions(self, policy_id: str) -> list[guardrails.Version]:
        rows = await self._db.read(
            f"SELECT {tables.VERSION_COLUMNS} FROM guardrail_versions WHERE policy_id = %s"
            " ORDER BY version DESC", (policy_id,),
        )
        return [tables.version_from_row(row) for row in rows]

    async def create_guardrail(
        self, draft: gate_rules.Draft, idempotency_key: str | None, actor: principals.Principal
    ) -> tuple[guardrails.Stored, bool]:
        result: tuple[guardrails.Stored, bool] = await self._write(
            lambda conn, now: policies.create_guardrail(conn, now, draft, idempotency_key, actor)
        )
        return result

    async def update_guardrail(
        self, policy_id: str, patch: gate_rules.Update, actor: principals.Principal
    ) -> guardrails.Stored:
        result: guardrails.Stored = await self._write(
            lambda conn, now: policies.update_guardrail(conn, now, policy_id, patch, actor)
        )
        return result

    async def rollback_guardrail(
        self, policy_id: str, version: int, message: str | None, actor: principals.Principal
    ) -> guardrails.Rollback:
        result: guardrails.Rollback = await self._write(
            lambda conn, now: policies.rollback_guardrail(
                conn, now, policy_id, version, message, actor)
        )
        return result

    async def delete_guardrail(self, policy_id: str, actor: principals.Principal) -> None:
        await self._write(
            lambda conn, now: policies.delete_guardrail(conn, now, policy_id, actor)
        )

    async def list_tools(self, include_archived: bool) -> list[registry.Tool]:
        rows = await self._db.read(
            f"SELECT {tables.TOOL_COLUMNS} FROM tools WHERE %s OR status <> 'archived'"
            " ORDER BY seq", (include_archived,),
        )
        return [tables.tool_from_row(row) for row in rows]

    async def register_tool(
        self, name: str, categories: list[str], description: str | None,
        actor: principals.Principal,
    ) -> registry.Tool:
        result: registry.Tool = await self._write(
            lambda conn, now: policies.register_tool(conn, now, name, categories, description,
                                                     actor)
        )
        return result

    async def deprecate_tool(
        self, name: str, reason: str, replacement: str | None, actor: principals.Principal
    ) -> registry.Tool:
        result: registry.Tool = await self._write(
            lambda conn, now: policies.deprecate_tool(conn, now, name, reason, replacement, actor)
        )
        return result

    async def archive_tool(self, name: str, actor: principals.Principal) -> registry.Tool:
        result: registry.Tool = await self._write(
            lambda conn, now: policies.archive_tool(conn, now, name, actor)
        )
        return result

    async def list_tool_policies(self) -> list[registry.ToolPolicy]:
        rows = await self._db.read(
            f"SELECT {tables.TOOL_POLICY_COLUMNS} FROM tool_policies ORDER BY seq"
        )
        return [tables.tool_policy_from_row(row) for row in rows]

    async def create_tool_policy(
        self, tool_name: str, allowed: bool, allowed_domains: list[str] | None,
        max_response_size_kb: int | None, actor: principals.Principal,
    ) -> registry.ToolPolicy:
        result: registry.ToolPolicy = await self._write(
            lambda conn, now: policies.create_tool_policy(
                conn, now, tool_name, allowed, allowed_domains, max_response_size_kb, actor)
        )
        return result

    async def delete_tool_policy(self, policy_id: str, actor: principals.Principal) -> None:
        await self._write(
            lambda conn, now: policies.delete_tool_policy(conn, now, policy_id, actor)
        )

    async def list_role_overrides(self) -> list[registry.RoleOverride]:
        rows = await self._db.read(
            f"SELECT {tables.OVERRIDE_COLUMNS} FROM role_policy_overrides ORDER BY seq"
        )
        return [tables.override_from_row(row) for row in rows]

    async def create_role_override(
        self, role: str, tool_name: str, allowed: bool, actor: principals.Principal
    ) -> registry.RoleOverride:
        result: registry.RoleOverride = await self._write(
            lambda conn, now: policies.create_role_override(
                conn, now, role, tool_name, allowed, actor)
        )
        return result

    async def delete_role_override(self, override_id: str, actor: principals.Principal) -> None:
        await self._write(
            lambda conn, now: policies.delete_role_override(conn, now, override_id, actor)
        )


    # --- runs and quotas -------------------------------------------------------------

    async def start_run(
        self, request: commands.RunStart, plan: dict[str, int], rules: runs.Rules
    ) -> runs.Started:
        result: runs.Started | runs.Refused = await self._write(
            lambda conn, now: run_rows.start_run(conn, now, request, plan, rules)
        )
        return runs.outcome(result)

    async def end_run(self, run_id: str) -> records.Run:
        result: records.Run = await self._write(
            lambda conn, now: run_rows.end_run(conn, now, run_id)
        )
        return result

    async def run_events(
        self, run_id: str, events: list[commands.RunEvent], rules: runs.Rules
    ) -> runs.Applied:
        result: runs.Applied = await self._write(
            lambda conn, now: run_rows.run_events(conn, now, run_id, events, rules)
        )
        return result

    async def get_run(self, run_id: str) -> records.Run | None:
        rows = await self._db.read(
            f"SELECT {tables.RUN_COLUMNS} FROM runs WHERE id = %s", (run_id,)
        )
        return tables.run_from_row(rows[0]) if rows else None

    async def list_runs(
        self, status: records.RunStatus | None, agent_id: str | None, now: int, limit: int
    ) -> list[records.Run]:
        rows = await self._db.read(
            f"SELECT {tables.RUN_COLUMNS} FROM runs"
            " WHERE (%(agent)s::text IS NULL OR agent_id = %(agent)s)"
            " AND (%(status)s::text IS NULL"
            " OR (%(status)s = 'running' AND status = 'running' AND lease_expires_at > %(now)s)"
            " OR (%(status)s = 'expired' AND (status = 'expired'"
            "     OR (status = 'running' AND lease_expires_at <= %(now)s)))"
            " OR (%(status)s IN ('ended', 'tripped') AND status = %(status)s))"
            " ORDER BY started_at DESC, row_seq DESC LIMIT %(limit)s",
            {"status": status, "agent": agent_id, "now": now, "limit": limit},
        )
        return [tables.run_from_row(row) for row in rows]

    async def count_running_runs(self, now: int) -> int:
        rows = await self._db.read(
            "SELECT count(*) FROM runs WHERE status = 'running' AND lease_expires_at > %s", (now,)
        )
        return int(rows[0][0])

    async def quota_overrides(self, tenant_id: str) -> dict[str, int]:
        rows = await self._db.read(
            "SELECT overrides FROM tenant_quotas WHERE tenant_id = %s", (tenant_id,)
        )
        return tables.decode_overrides(rows[0][0] if rows else None)

    async def set_quota_overrides(
        self, tenant_id: str, patch: dict[str, int | None]
    ) -> dict[str, int]:
        result: dict[str, int] = await self._write(
            lambda conn, now: run_rows.set_overrides(conn, now, tenant_id, patch)
        )
        return result

    # --- spends, in batches ------------------------------------------------------------

    async def record_spend(
        self, request: commands.SpendRequest, fingerprint: str, ledger_key: str | None
    ) -> records.SpendCharged:
        if self._closing or self._spender is None:
            raise errors.StoreUnavailable("the store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((budgets.Spend(request, fingerprint, ledger_key), future))
        result: records.SpendCharged = await future
        return result

    def _charging(self, spends: list[budgets.Spend]) -> connection.Job[list[budgets.Outcome]]:
        return lambda conn: budgets.record_spends(conn, self._clock(), spends)

    async def _spend_loop(self) -> None:
        while True:
            taken = await batches.next_batch(self._queue, self._settings.batch_max)
            if taken is None:
                return
            batch, stop = taken
            spends = [spend for spend, _ in batch]
            started = time.perf_counter()
            outcomes: list[Any]
            try:
                outcomes = await self._db.transaction(self._charging(spends))
            except errors.ClawguardError as exc:
                outcomes = [exc] * len(batch)
            except Exception as exc:  # never leave a caller waiting
                log.exception("a spend batch of %d failed", len(batch))
                outcomes = [errors.StoreUnavailable(f"the spend batch failed: {exc}")]
                outcomes *= len(batch)
            else:
                if self.batch_observer is not None:
                    self.batch_observer(len(batch), time.perf_counter() - started)
            batches.answer(batch, outcomes)
            if stop:
                return

