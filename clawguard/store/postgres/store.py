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
from collections.abc import Callable
from typing import Any, TypeVar

from clawguard.core import audit, commands, errors, principals, records
from clawguard.core import budgets as budget_rules
from clawguard.runtime import config
from clawguard.store import migrations
from clawguard.store.postgres import (
    approvals,
    audit_log,
    budgets,
    connection,
    keys,
    listener,
    schema,
)

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
        self._wake: Callable[[str], None] | None = None
        self._listener = listener.Listener(settings.location, self._heard, self._relistened)
        self._last_heard_ms = 0
        self._catch_ups: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[tuple[budgets.Spend, asyncio.Future[Any]] | None] = (
            asyncio.Queue()
        )
        self._spender: asyncio.Task[None] | None = None
        self._closing = False
        self.batch_observer: Callable[[int, float], None] | None = None

    def watch_decisions(self, wake: Callable[[str], None]) -> None:
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
        instance, _, approval_id = payload.partition(":")
        if instance != self._instance and self._wake is not None:
            self._wake(approval_id)

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
                self._wake(approval_id)

    # --- reads -------------------------------------------------------------------

    async def list_budgets(
        self, scope: records.Scope | None, status: records.Status | None
    ) -> list[records.Budget]:
        rows = await self._db.read(
            f"SELECT {budgets.BUDGET_COLUMNS} FROM budgets"
            " WHERE (%(scope)s::text IS NULL OR scope = %(scope)s)"
            " AND (%(status)s::text IS NULL OR status = %(status)s)"
            " ORDER BY updated_at DESC, row_seq DESC",
            {"scope": scope, "status": status},
        )
        return [budgets.budget_from_row(row) for row in rows]

    async def scope_states(self, scope_ids: commands.ScopeIds) -> list[records.ScopeState]:
        rows = await self._db.read(
            f"SELECT {budgets.BUDGET_COLUMNS} FROM budgets" + budgets.CHAIN_WHERE,
            budgets.chain_params(scope_ids),
        )
        return budget_rules.chain_states(budgets.budget_from_row(row) for row in rows)

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

    async def audit_head(self) -> records.AuditHead:
        rows = await self._db.read("SELECT seq, hash FROM audit_head WHERE id = 1")
        seq, digest = rows[0] if rows and rows[0][0] else (0, audit.GENESIS)
        return records.AuditHead(seq=seq, hash=digest)

    async def find_key(self, key_hash: str) -> principals.Principal | None:
        rows = await self._db.read(
            "SELECT id, name, role, leads FROM api_keys WHERE key_hash = %s"
            " AND revoked_at IS NULL",
            (key_hash,),
        )
        return keys.principal_from_row(rows[0]) if rows else None

    async def has_keys(self) -> bool:
        return bool(await self._db.read(
            "SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1"
        ))

    async def get_approval(self, approval_id: str) -> records.Approval | None:
        rows = await self._db.read(
            f"SELECT {approvals.APPROVAL_COLUMNS} FROM approvals WHERE id = %s", (approval_id,)
        )
        return approvals.approval_from_row(rows[0]) if rows else None

    async def list_pending_approvals(
        self, now: int, limit: int, after: records.PendingKey | None = None,
        agents: frozenset[str] | None = None,
    ) -> list[records.Approval]:
        params = {"now": now, "limit": limit,
                  "agents": None if agents is None else sorted(agents)}
        if after is None:
            rows = await self._db.read(
                f"SELECT {approvals.APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending'"
                " AND expires_at > %(now)s"
                " AND (%(agents)s::text[] IS NULL OR agent_id = ANY(%(agents)s::text[]))"
                " ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
                params,
            )
        else:
            rows = await self._db.read(
                f"SELECT {approvals.APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending'"
                " AND expires_at > %(now)s AND (created_at, id) < (%(at)s, %(id)s)"
                " AND (%(agents)s::text[] IS NULL OR agent_id = ANY(%(agents)s::text[]))"
                " ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
                {**params, "at": after.created_at, "id": after.id},
            )
        return [approvals.approval_from_row(row) for row in rows]

    async def list_grants(self, now: int, agent_id: str | None) -> list[records.Grant]:
        rows = await self._db.read(
            f"SELECT {approvals.GRANT_COLUMNS} FROM approval_grants WHERE revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > %(now)s)"
            " AND (%(agent)s::text IS NULL OR agent_id = %(agent)s)"
            " ORDER BY created_at DESC, row_seq DESC",
            {"now": now, "agent": agent_id},
        )
        return [approvals.grant_from_row(row) for row in rows]

    async def list_history(self, agent_id: str | None, limit: int) -> list[records.HistoryRecord]:
        rows = await self._db.read(
            f"SELECT {approvals.HISTORY_COLUMNS} FROM approval_history"
            " WHERE (%(agent)s::text IS NULL OR agent_id = %(agent)s)"
            " ORDER BY id DESC LIMIT %(limit)s",
            {"agent": agent_id, "limit": limit},
        )
        return [approvals.history_from_row(row) for row in rows]

    # --- writes --------------------------------------------------------------------

    async def set_budget(self, request: commands.BudgetSet) -> records.Budget:
        result: records.Budget = await self._write(
            lambda conn, now: budgets.set_budget(conn, now, request)
        )
        return result

    async def delete_budget(self, scope: records.Scope, scope_id: str) -> None:
        await self._write(lambda conn, now: budgets.delete_budget(conn, now, scope, scope_id))

    async def resume_budget(
        self, scope: records.Scope, scope_id: str, grace_cents: int | None
    ) -> records.Resumed:
        result: records.Resumed = await self._write(
            lambda conn, now: budgets.resume_budget(conn, now, scope, scope_id, grace_cents)
        )
        return result

    async def add_key(self, principal: principals.Principal, key_hash: str) -> None:
        await self._write(lambda conn, now: keys.add_key(conn, now, principal, key_hash))

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
    ) -> records.Approval:
        result: records.Approval = await self._write(
            lambda conn, now: approvals.resolve_approval(
                conn, now, approval_id, decision, resolved_by, sticky_ttl_ms, decider,
                self._instance,
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

    # --- spends, in batches ------------------------------------------------------------

    async def record_spend(
        self, request: commands.SpendRequest, fingerprint: str
    ) -> records.SpendCharged:
        if self._closing or self._spender is None:
            raise errors.StoreUnavailable("the store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((budgets.Spend(request, fingerprint), future))
        result: records.SpendCharged = await future
        return result

    def _charging(self, spends: list[budgets.Spend]) -> connection.Job[list[budgets.Outcome]]:
        return lambda conn: budgets.record_spends(conn, self._clock(), spends)

    async def _spend_loop(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            # One loop turn first, so the handlers runnable in this turn join the batch.
            await asyncio.sleep(0)
            batch = [item]
            stop = False
            while len(batch) < self._settings.batch_max and not self._queue.empty():
                queued = self._queue.get_nowait()
                if queued is None:
                    stop = True
                    break
                batch.append(queued)
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
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the caller went away; its spend stands
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
            if stop:
                return

