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
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from clawguard.core import approvals as approval_rules
from clawguard.core import (
    audit,
    authorize,
    commands,
    documents,
    errors,
    guardrails,
    ledger,
    principals,
    records,
    registry,
    runs,
    webhooks,
)
from clawguard.core import budgets as budget_rules
from clawguard.core import gate as gate_rules
from clawguard.core.gate import settings as gate_settings
from clawguard.runtime import config
from clawguard.store import batches, decisions, migrations, tables
from clawguard.store.postgres import (
    approvals,
    audit_log,
    batch,
    budgets,
    connection,
    deliveries,
    holds,
    keys,
    listener,
    policies,
    schema,
)
from clawguard.store.postgres import authorize as receipts
from clawguard.store.postgres import runs as run_rows

log = logging.getLogger(__name__)

T = TypeVar("T")
J = TypeVar("J")
Clock = Callable[[], int]
# How far back the catch-up after a LISTEN reconnect looks, beyond the drop itself.
_CATCH_UP_SLACK_MS = 1_000


@dataclass(eq=False)
class _Lane(Generic[J]):
    """Writes of one kind, queued for PostgresStore._drain, and the task draining them:
    `running` makes the transaction job of a batch (`pipelined`: connection.Database)."""

    what: str
    running: Callable[[list[J]], connection.Job[list[Any]]]
    pipelined: bool = False
    queue: asyncio.Queue[tuple[J, asyncio.Future[Any]] | None] = field(
        default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class PostgresStore(decisions.DecisionVerbs):
    """The Store contract on one PostgreSQL database."""

    def __init__(self, settings: config.StorageConfig, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._db = connection.Database(settings.location, settings.busy_timeout_ms,
                                       settings.pool_size)
        self._instance = secrets.token_hex(4)  # tells our own notifications from others'
        self._own_prefix = self._instance + ":"
        self._wake: Callable[[str, records.Approval | None], None] | None = None
        self._audit_watchers: list[Callable[[int], None]] = []
        self._listener = listener.Listener(settings.location, self._heard, self._relistened)
        self._last_heard_ms = 0
        self._catch_ups: set[asyncio.Task[None]] = set()
        # The writes every instance makes many of at once, each kind drained a batch at a
        # time, one transaction a batch (_drain).
        self._spends = _Lane("spend", self._charging, pipelined=True)
        self._decisions = _Lane("decision", self._deciding, pipelined=True)
        self._holds = _Lane("hold", self._holding)
        self._writes = _Lane("write", self._running)
        self._lanes: tuple[_Lane[Any], ...] = (self._spends, self._decisions, self._holds,
                                               self._writes)
        self._closing = False
        self.batch_observer: Callable[[int, float], None] | None = None

    def watch_decisions(self, wake: Callable[[str, records.Approval | None], None]) -> None:
        self._wake = wake

    def watch_audit(self, wake: Callable[[int], None]) -> None:
        """Heard through LISTEN, for this instance's own appends too (a few ms after commit)."""
        self._audit_watchers.append(wake)

    # --- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(schema.migrate_database, self._settings.location)
        await self._db.open()
        await self._listener.start()
        for lane in self._lanes:
            lane.task = asyncio.create_task(self._drain(lane), name=f"clawguard-{lane.what}s")

    async def close(self) -> None:
        self._closing = True
        for lane in self._lanes:
            if lane.task is not None:
                lane.queue.put_nowait(None)  # after every write already queued
                await lane.task
                lane.task = None
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

    async def _write(
        self, job: Callable[[connection.Connection, int], Any], pipelined: bool = False
    ) -> Any:
        started = time.perf_counter()
        result = await self._db.transaction(lambda conn: job(conn, self._clock()), pipelined)
        if self.batch_observer is not None:
            self.batch_observer(1, time.perf_counter() - started)
        return result

    async def _batched(self, job: batch.Job) -> Any:
        """`job` in a transaction shared with the other writes waiting now (batch.py): for
        the writes every instance makes many of at once, approval openings and receipts."""
        return await self._queued(self._writes, job)

    async def _queued(self, lane: _Lane[J], write: J) -> Any:
        """`write`'s outcome, once `lane`'s batch that took it has committed."""
        if self._closing or lane.task is None:
            raise errors.StoreUnavailable("the store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        lane.queue.put_nowait((write, future))
        return await future

    def _running(self, jobs: list[batch.Job]) -> connection.Job[list[Any]]:
        return lambda conn: batch.run_jobs(conn, self._clock(), jobs)

    def _holding(self, steps: list[holds.Step]) -> connection.Job[list[Any]]:
        return lambda conn: holds.run_steps(conn, self._clock(), steps)

    # --- notifications -------------------------------------------------------------

    def _heard(self, payload: str) -> None:
        self._last_heard_ms = self._clock()
        if payload.startswith(listener.AUDIT_PREFIX):
            seq = payload[len(listener.AUDIT_PREFIX):]
            for watcher in self._audit_watchers:
                watcher(int(seq) if seq.isdigit() else 0)
            return
        if self._wake is None or payload.startswith(self._own_prefix):
            return  # our own decisions woke our waiters already; no need to read the row
        _, approval_id, approval = listener.read(payload)
        self._wake(approval_id, approval)

    def _relistened(self, times_before: int) -> None:
        """Back after a drop: what was decided meanwhile was announced to no one here."""
        if times_before:
            for watcher in self._audit_watchers:
                watcher(0)
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
        now = self._clock()
        rows = await self._db.read(
            f"SELECT {tables.BUDGET_COLUMNS} FROM budgets"
            " WHERE (%(scope)s::text IS NULL OR scope = %(scope)s)"
            " ORDER BY updated_at DESC, row_seq DESC",
            {"scope": scope},
        )
        held = tables.held_by_scope(await self._db.read(budgets.HELD_ALL, {"now": now}))
        found = [budget_rules.current(budget, now, held.get((budget.scope, budget.scope_id), 0))
                 for budget in map(tables.budget_from_row, rows)]
        # Filtered after `current`: a row its window has reset reads active whatever is stored.
        return [budget for budget in found if status is None or budget.status == status]

    async def scope_states(self, scope_ids: commands.ScopeIds) -> list[records.HeldScope]:
        now = self._clock()
        params = budgets.chain_params(scope_ids)
        rows = await self._db.read(
            f"SELECT {tables.BUDGET_COLUMNS} FROM budgets" + budgets.CHAIN_WHERE, params
        )
        held = tables.held_by_scope(await self._db.read(
            budgets.HELD_ON, budgets.held_params([scope_ids]) | {"now": now}))
        return budget_rules.chain_states(
            budget_rules.current(budget, now, held.get((budget.scope, budget.scope_id), 0))
            for budget in map(tables.budget_from_row, rows)
        )

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

    async def audit_after(self, after_seq: int, limit: int) -> list[audit.Row]:
        rows = await self._db.read(
            "SELECT seq, event_type, action, agent_id, details, created_at, prev_hash, hash"
            " FROM audit WHERE seq > %s ORDER BY seq LIMIT %s",
            (after_seq, limit),
        )
        return [audit.Row(*row) for row in rows]

    async def budget_levels(self) -> list[tuple[str, str, str, str, int, int]]:
        return [(b.scope, b.scope_id, b.status, b.mode, b.spent_usd_micros, b.limit_usd_cents)
                for b in await self.list_budgets(None, None)]

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
        result: records.Opened = await self._batched(
            lambda conn, now: approvals.open_approval(conn, now, new, ttl_ms)
        )
        return result

    async def _decide(self, request: approval_rules.DecisionRequest) -> records.Approval:
        result: records.Approval = await self._queued(self._decisions, request)
        return result

    def _deciding(self, requests: list[approval_rules.DecisionRequest]
                  ) -> connection.Job[list[Any]]:
        return lambda conn: approvals.decide_all(conn, self._clock(), requests, self._instance)

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

    # --- authorize: approval settings, receipts, the enforcement check, reports -----------

    async def authorize_reads(self, scope_ids: commands.ScopeIds
                              ) -> tuple[list[records.HeldScope], int]:
        rows = await self._db.read(
            "SELECT g.generation, " + _PREFIXED_BUDGET_COLUMNS + " FROM gate_generation g"
            " LEFT JOIN budgets b ON (b.scope = 'agent' AND b.scope_id = %(agent)s)"
            " OR (b.scope = 'mission' AND b.scope_id = %(mission)s) OR (b.scope = 'team'"
            " AND b.scope_id = %(team)s) OR (b.scope = 'tenant' AND b.scope_id = %(tenant)s)"
            " WHERE g.id = 1",
            budgets.chain_params(scope_ids),
        )
        budgets_read = (tables.budget_from_row(row[1:]) for row in rows if row[1] is not None)
        return budget_rules.chain_states(budgets_read), int(rows[0][0])

    async def get_settings(self) -> gate_settings.Settings:
        rows = await self._db.read("SELECT document FROM governance_settings WHERE id = 1")
        return gate_settings.from_document(documents.loads(rows[0][0]) if rows else None)

    async def patch_settings(self, patch: dict[str, object], actor: principals.Principal
                             ) -> gate_settings.Settings:
        result: gate_settings.Settings = await self._write(
            lambda conn, now: receipts.patch_settings(conn, now, patch, actor)
        )
        return result

    async def find_receipt(self, idempotency_key: str) -> authorize.Stored | None:
        rows = await self._db.read(f"{tables.RECEIPT} WHERE r.idempotency_key = %s",
                                   (idempotency_key,))
        return tables.receipt_from_row(rows[0]) if rows else None

    async def get_receipt(self, receipt_id: str) -> authorize.Stored | None:
        rows = await self._db.read(f"{tables.RECEIPT} WHERE r.id = %s", (receipt_id,))
        return tables.receipt_from_row(rows[0]) if rows else None

    async def write_receipt(self, receipt: authorize.NewReceipt
                            ) -> tuple[authorize.Stored, bool]:
        result: tuple[authorize.Stored, bool] = await self._batched(
            lambda conn, now: receipts.write_receipt(conn, now, receipt)
        )
        return result

    async def append_receipt_outcome(self, receipt_id: str, outcome: dict[str, object]
                                     ) -> authorize.Stored:
        result: authorize.Stored = await self._batched(
            lambda conn, now: receipts.append_outcome(conn, now, receipt_id, outcome)
        )
        return result

    async def enforcement_blockers(self, resource_type: authorize.ResourceType,
                                   resource_id: str, now: int) -> authorize.Blockers:
        params = {"type": resource_type, "id": resource_id, "now": now,
                  "limit": authorize.BLOCKING_MAX}
        tripped = await self._db.read(
            "SELECT id, agent_id, lease_expires_at FROM runs WHERE status = 'tripped'"
            " AND lease_expires_at > %(now)s AND CASE %(type)s::text WHEN 'agent' THEN agent_id"
            " WHEN 'mission' THEN mission_id WHEN 'team' THEN team_id ELSE tenant_id END"
            " = %(id)s ORDER BY started_at DESC, row_seq DESC LIMIT %(limit)s",
            params,
        )
        pending = await self._db.read(
            "SELECT a.id, a.agent_id, a.tool_name, a.expires_at FROM approvals a"
            " WHERE a.status = 'pending' AND a.expires_at > %(now)s"
            " AND ((%(type)s::text = 'agent' AND a.agent_id = %(id)s)"
            " OR (%(type)s::text = 'tenant' AND a.tenant_id = %(id)s)"
            " OR a.id IN (SELECT approval_id FROM receipts WHERE approval_id IS NOT NULL"
            " AND CASE %(type)s::text WHEN 'agent' THEN agent_id WHEN 'mission' THEN mission_id"
            " WHEN 'team' THEN team_id ELSE tenant_id END = %(id)s))"
            " ORDER BY a.created_at, a.id LIMIT %(limit)s",
            params,
        )
        load, overrides = None, {}
        if resource_type == "tenant":
            running = await self._db.read(
                "SELECT count(*), min(lease_expires_at) FROM runs WHERE tenant_id = %s"
                " AND status = 'running' AND lease_expires_at > %s", (resource_id, now))
            hour = await self._db.read(
                "SELECT count(*), min(started_at) FROM runs WHERE tenant_id = %s"
                " AND started_at > %s", (resource_id, runs.hour_since(now)))
            load = runs.TenantLoad(running[0][0], running[0][1], hour[0][0], hour[0][1])
            overrides = await self.quota_overrides(resource_id)
        return authorize.Blockers([(r[0], r[1], r[2]) for r in tripped],
                                  [(r[0], r[1], r[2], r[3]) for r in pending], load, overrides)

    async def report_figures(self, since: int, now: int) -> authorize.ReportFigures:
        params = {"since": since, "now": now}
        rows = await self._db.read(
            "SELECT (SELECT count(*) FROM receipts WHERE created_at >= %(since)s), count(a.id),"
            " coalesce(sum(CASE WHEN " + _APPROVED + " THEN 1 ELSE 0 END), 0),"
            " coalesce(sum(CASE WHEN " + _REJECTED + " THEN 1 ELSE 0 END), 0),"
            " coalesce(sum(CASE WHEN " + _APPROVED + " THEN a.resolved_at - a.created_at"
            " ELSE 0 END), 0)"
            " FROM receipts r JOIN approvals a ON a.id = r.approval_id"
            " WHERE r.created_at >= %(since)s",
            params,
        )
        top = await self._db.read(
            "SELECT voter, count(*) FROM ("
            "SELECT a.id, v.value->>'keyId' AS voter FROM receipts r"
            " JOIN approvals a ON a.id = r.approval_id CROSS JOIN LATERAL " + _VOTES +
            " WHERE r.created_at >= %(since)s AND " + _APPROVED +
            " AND v.value->>'decision' <> 'deny'"
            " UNION SELECT a.id, a.resolved_by_key FROM receipts r"
            " JOIN approvals a ON a.id = r.approval_id WHERE r.created_at >= %(since)s"
            " AND a.resolved_by_key IS NOT NULL AND " + _APPROVED +
            " AND NOT EXISTS (SELECT 1 FROM " + _VOTES + ")) t"
            " GROUP BY voter ORDER BY 2 DESC, 1 LIMIT 10",
            params,
        )
        total, gated, approved, rejected, approval_ms = rows[0]
        return authorize.ReportFigures(int(total), int(gated), int(approved), int(rejected),
                                       int(approval_ms), [(k, int(n)) for k, n in top])

    async def approval_stats(self, since: int, now: int) -> tuple[
            list[tuple[str, int, int, int]], list[tuple[str, int, int]]]:
        params = {"since": since, "now": now}
        by_tool = await self._db.read(
            "SELECT a.tool_name, count(*),"
            " sum(CASE WHEN " + _APPROVED + " THEN 1 ELSE 0 END),"
            " sum(CASE WHEN " + _REJECTED + " THEN 1 ELSE 0 END)"
            " FROM receipts r JOIN approvals a ON a.id = r.approval_id"
            " WHERE r.created_at >= %(since)s GROUP BY a.tool_name ORDER BY 2 DESC, 1",
            params,
        )
        by_category = await self._db.read(
            "SELECT c.value, count(*), sum(CASE WHEN " + _APPROVED + " THEN 1 ELSE 0 END)"
            " FROM receipts r JOIN approvals a ON a.id = r.approval_id"
            " CROSS JOIN LATERAL jsonb_array_elements_text(r.categories::jsonb) AS c(value)"
            " WHERE r.created_at >= %(since)s GROUP BY c.value ORDER BY c.value",
            params,
        )
        return ([(t, int(n), int(ok), int(no)) for t, n, ok, no in by_tool],
                [(c, int(n), int(ok)) for c, n, ok in by_category])

    # --- holds -------------------------------------------------------------------------

    async def place_hold(
        self, request: commands.HoldRequest, fingerprint: str, key: str, ttl_ms: int
    ) -> records.Hold:
        result: records.Hold = await self._queued(
            self._holds, holds.Place(request, fingerprint, key, ttl_ms))
        return result

    async def get_hold(self, hold_id: str) -> records.Hold | None:
        rows = await self._db.read(f"SELECT {tables.HOLD_COLUMNS} FROM holds WHERE id = %s",
                                   (hold_id,))
        return tables.hold_from_row(rows[0]) if rows else None

    async def commit_hold(
        self, hold_id: str, request: commands.SpendRequest, fingerprint: str
    ) -> records.SpendCharged:
        result: records.SpendCharged = await self._queued(
            self._holds, holds.Commit(hold_id, request, fingerprint))
        return result

    async def release_hold(self, hold_id: str) -> records.Hold:
        result: records.Hold = await self._queued(self._holds, holds.Release(hold_id))
        return result

    async def expiries_due(self, now: int) -> tuple[bool, bool]:
        holds_due = await self._db.read(
            "SELECT 1 FROM holds WHERE status = 'held' AND expires_at <= %s LIMIT 1", (now,))
        runs_due = await self._db.read(
            "SELECT 1 FROM runs WHERE status = 'running' AND lease_expires_at <= %s LIMIT 1",
            (now,))
        return bool(holds_due), bool(runs_due)

    async def expire_holds(self, limit: int) -> int:
        result: int = await self._write(
            lambda conn, now: holds.expire_holds(conn, now, limit)
        )
        return result

    async def count_live_holds(self, now: int) -> tuple[int, int]:
        rows = await self._db.read(
            "SELECT count(*), coalesce(sum(amount_micros), 0)::bigint FROM holds"
            " WHERE status = 'held' AND expires_at > %s", (now,)
        )
        return int(rows[0][0]), int(rows[0][1])

    async def expire_runs(self, limit: int) -> int:
        result: int = await self._write(
            lambda conn, now: run_rows.expire_runs(conn, now, limit)
        )
        return result

    # --- spends, in batches ------------------------------------------------------------

    async def record_spend(
        self, request: commands.SpendRequest, fingerprint: str, ledger_key: str | None
    ) -> records.SpendCharged:
        result: records.SpendCharged = await self._queued(
            self._spends, budgets.Spend(request, fingerprint, ledger_key))
        return result

    def _charging(self, spends: list[budgets.Spend]) -> connection.Job[list[budgets.Outcome]]:
        return lambda conn: budgets.record_spends(conn, self._clock(), spends)

    async def _drain(self, lane: _Lane[J]) -> None:
        """Take the writes waiting in `lane` a batch at a time, one transaction a batch."""
        what = lane.what
        while True:
            taken = await batches.next_batch(lane.queue, self._settings.batch_max)
            if taken is None:
                return
            writes, stop = taken
            started = time.perf_counter()
            outcomes: list[Any]
            try:
                outcomes = await self._db.transaction(
                    lane.running([item for item, _ in writes]), lane.pipelined)
            except errors.ClawguardError as exc:
                outcomes = [exc] * len(writes)
            except Exception as exc:  # never leave a caller waiting
                log.exception("a %s batch of %d failed", what, len(writes))
                outcomes = [errors.StoreUnavailable(f"the {what} batch failed: {exc}")]
                outcomes *= len(writes)
            else:
                if self.batch_observer is not None:
                    self.batch_observer(len(writes), time.perf_counter() - started)
            batches.answer(writes, outcomes)
            if stop:
                return

    # --- webhook deliveries ------------------------------------------------------------

    async def queue_deliveries(self, webhook: str, names: Collection[str], limit: int) -> int:
        rows = await self._db.read(
            "SELECT (SELECT seq FROM notify_cursors WHERE webhook = %s),"
            " (SELECT seq FROM audit_head WHERE id = 1)", (webhook,),
        )
        cursor, head = rows[0]
        if cursor is not None and cursor >= head:
            return 0  # nothing new: no write
        result: int = await self._write(
            lambda conn, now: deliveries.queue(conn, now, webhook, names, limit)
        )
        return result

    async def claim_deliveries(self, webhook: str, lease_ms: int, limit: int
                               ) -> list[webhooks.Delivery]:
        result: list[webhooks.Delivery] = await self._write(
            lambda conn, now: deliveries.claim(conn, now, webhook, lease_ms, limit)
        )
        return result

    async def delivery_done(self, webhook: str, seq: int) -> None:
        await self._write(lambda conn, now: deliveries.delivered(conn, webhook, seq))

    async def delivery_failed(self, webhook: str, seq: int, error: str, retry_at: int | None
                              ) -> None:
        await self._write(
            lambda conn, now: deliveries.failed(conn, now, webhook, seq, error, retry_at)
        )

    async def delivery_backlog(self, webhook: str) -> webhooks.Backlog:
        rows = await self._db.read(
            f"SELECT {tables.BACKLOG_COLUMNS} FROM notify_deliveries WHERE webhook = %s",
            (webhook,),
        )
        return tables.backlog_from_row(rows[0])


_PREFIXED_BUDGET_COLUMNS = ", ".join(f"b.{c.strip()}" for c in tables.BUDGET_COLUMNS.split(","))

# An approval opened by authorize, counted as approved (a waiver included) or rejected (denied,
# or expired: also a pending row past its expiry that the sweep has not written yet).
_APPROVED = "a.status IN ('allow_once', 'allow_always', 'approved')"
_REJECTED = ("(a.status IN ('deny', 'expired')"
             " OR (a.status = 'pending' AND a.expires_at <= %(now)s))")
# Every vote of approval a's stages (a vote counting in two gates appears twice: UNION folds it).
_VOTES = ("jsonb_array_elements(coalesce(a.stages, '[]')::jsonb) s(value)"
          " CROSS JOIN LATERAL jsonb_array_elements(s.value->'gates') g(value)"
          " CROSS JOIN LATERAL jsonb_array_elements(g.value->'votes') v(value)")
