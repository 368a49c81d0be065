"""SQLiteStore: the Store contract (clawguard/store.py) on one SQLite file.

Reads go through their own aiosqlite connection: in WAL mode they never wait
for the writer. Writes are jobs handed to the one Writer (writer.py); what a
job does inside its transaction lives with its tables (budgets.py,
approvals.py, keys.py, audit_log.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import aiosqlite

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
from clawguard.store import decisions, migrations, tables
from clawguard.store.sqlite import (
    approvals,
    audit_log,
    budgets,
    deliveries,
    files,
    holds,
    keys,
    policies,
    writer,
)
from clawguard.store.sqlite import authorize as receipts
from clawguard.store.sqlite import runs as run_rows

log = logging.getLogger(__name__)

# How often the database file and its -wal are checked to be the ones opened.
WATCH_SECONDS = 0.5


class SQLiteStore(decisions.DecisionVerbs):
    """The Store contract on one SQLite file."""

    def __init__(self, settings: config.StorageConfig, clock: writer.Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._writer = writer.Writer(settings, clock)
        self._reader: aiosqlite.Connection | None = None
        self._watch: asyncio.Task[None] | None = None
        self._opened: dict[str, files.Identity | None] = {}
        self._reported: str | None = None  # the loss last logged

    @property
    def batch_observer(self) -> Callable[[int, float], None] | None:
        """Called with (jobs, seconds) after every batch the writer commits."""
        return self._writer.batch_observer

    @batch_observer.setter
    def batch_observer(self, observer: Callable[[int, float], None] | None) -> None:
        self._writer.batch_observer = observer

    def watch_decisions(self, wake: Callable[[str, records.Approval | None], None]) -> None:
        """One daemon owns a SQLite file: every decision is made, and heard, here."""

    def watch_audit(self, wake: Callable[[int], None]) -> None:
        """Heard from the writer after its commit. Rows the offline commands append (`keys
        create`) are not announced: the next announced row's read picks them up."""
        self._writer.audit_watchers.append(wake)

    # --- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        path, timeout = self._settings.location, self._settings.busy_timeout_ms
        try:
            await self._writer.open()  # migrates first
            self._reader = await aiosqlite.connect(path)
            await self._reader.execute(f"PRAGMA busy_timeout = {int(timeout)}")
            await self._reader.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            await self.close()
            raise errors.StoreUnavailable(f"cannot open {path}: {exc}") from exc
        self._opened = {name: files.identity(name) for name in (path, path + "-wal")}
        self._writer.check_files = self._check_files
        self._watch = asyncio.create_task(self._watch_files(), name="clawguard-file-watch")

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        await self._writer.close()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None

    async def ready(self) -> bool:
        try:
            rows = await self._read("SELECT max(version) FROM schema_migrations", ())
        except errors.StoreUnavailable:
            return False
        return (
            bool(rows)
            and rows[0][0] == migrations.latest_version("sqlite")
            and await self.writable()
        )

    async def writable(self) -> bool:
        return await self._writer.writable()

    # --- the files under the daemon ------------------------------------------------

    def files_replaced(self) -> str | None:
        """Why the database (or its -wal) at the configured path is no longer the file this
        store opened, or None. Deleted or renamed under a running daemon, SQLite would go on
        committing into the unlinked file: every acknowledged spend lost at the restart."""
        for name, opened in self._opened.items():
            now = files.identity(name)
            if opened is None:  # a -wal not made yet when the store opened
                self._opened[name] = now
            elif now != opened:
                change = "deleted or moved" if now is None else "replaced by another file"
                return f"the database file {name} was {change} while the daemon ran"
        return None

    def _check_files(self) -> str | None:
        """files_replaced(), logged when it changes (at critical when the files are lost)."""
        reason = self.files_replaced()
        if reason != self._reported:
            if reason is not None:
                log.critical("%s: every read and write is refused (503) until it is back in"
                             " place or the daemon restarts on a restored database", reason)
            else:
                log.warning("the database files are back in place: serving again")
            self._reported = reason
        self._writer.lost = reason
        return reason

    async def _watch_files(self) -> None:
        """Between writes too: readiness and the preflight fail closed within WATCH_SECONDS."""
        while True:
            self._check_files()
            await asyncio.sleep(WATCH_SECONDS)

    # --- reads -------------------------------------------------------------------

    async def _read(self, sql: str, params: Iterable[Any]) -> list[sqlite3.Row]:
        if self._reader is None:
            raise errors.StoreUnavailable("the store is closed")
        if self._writer.lost is not None:
            raise errors.StoreUnavailable(self._writer.lost)
        try:
            # One call on the reader's thread: with execute() and fetchall() as two, another
            # request's statement could start between them while this one holds the
            # connection's read transaction open, and read that older snapshot: a row
            # committed before it was asked for went unseen (a hold just placed read 404).
            return list(await self._reader.execute_fetchall(sql, tuple(params)))
        except sqlite3.Error as exc:
            raise errors.StoreUnavailable(f"the database cannot be read: {exc}") from exc

    async def list_budgets(
        self, scope: records.Scope | None, status: records.Status | None
    ) -> list[records.Budget]:
        now = self._clock()
        rows = await self._read(
            f"SELECT {tables.BUDGET_COLUMNS} FROM budgets"
            " WHERE (?1 IS NULL OR scope = ?1) ORDER BY updated_at DESC, rowid DESC", (scope,),
        )
        held = tables.held_by_scope(await self._read(budgets.HELD_ALL, (now,)))
        found = [budget_rules.current(budget, now, held.get((budget.scope, budget.scope_id), 0))
                 for budget in map(tables.budget_from_row, rows)]
        # Filtered after `current`: a row its window has reset reads active whatever is stored.
        return [budget for budget in found if status is None or budget.status == status]

    async def scope_states(self, scope_ids: commands.ScopeIds) -> list[records.HeldScope]:
        now = self._clock()
        ids = (scope_ids.agent_id, scope_ids.mission_id, scope_ids.team_id,
               scope_ids.tenant_id)
        rows = await self._read(
            f"SELECT {tables.BUDGET_COLUMNS} FROM budgets" + budgets.CHAIN_WHERE, ids
        )
        held = tables.held_by_scope(await self._read(budgets.HELD_IN_CHAIN, (*ids, now)))
        return budget_rules.chain_states(
            budget_rules.current(budget, now, held.get((budget.scope, budget.scope_id), 0))
            for budget in map(tables.budget_from_row, rows)
        )

    async def list_audit(
        self, agent_id: str | None, event_type: str | None, since: int | None, limit: int
    ) -> list[records.AuditEntry]:
        rows = await self._read(
            "SELECT seq, event_type, action, agent_id, details, created_at, prev_hash, hash"
            " FROM audit WHERE (?1 IS NULL OR agent_id = ?1) AND (?2 IS NULL OR event_type = ?2)"
            " AND (?3 IS NULL OR created_at >= ?3) ORDER BY seq DESC LIMIT ?4",
            (agent_id, event_type, since, limit),
        )
        return [records.AuditEntry.from_stored(*row) for row in rows]

    async def budget_levels(self) -> list[tuple[str, str, str, str, int, int]]:
        return [(b.scope, b.scope_id, b.status, b.mode, b.spent_usd_micros, b.limit_usd_cents)
                for b in await self.list_budgets(None, None)]

    async def any_approval_due(self, now: int) -> bool:
        rows = await self._read(
            "SELECT 1 FROM approvals WHERE status = 'pending' AND expires_at <= ? LIMIT 1", (now,)
        )
        return bool(rows)

    async def count_pending_approvals(self, now: int) -> int:
        rows = await self._read(
            "SELECT count(*) FROM approvals WHERE status = 'pending' AND expires_at > ?", (now,)
        )
        return int(rows[0][0])

    async def settled_spends(self, after_id: int, before: int, limit: int
                             ) -> list[ledger.SpendRow]:
        rows = await self._read(
            "SELECT id, idempotency_key, fingerprint, cost_micros, created_at FROM spends"
            " WHERE id > ? AND created_at < ? ORDER BY id LIMIT ?", (after_id, before, limit),
        )
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def last_checkpoint(self) -> tuple[int, str] | None:
        rows = await self._read(
            "SELECT details FROM audit WHERE action = ? ORDER BY seq DESC LIMIT 1",
            (ledger.CHECKPOINT,),
        )
        return None if not rows else ledger.checkpoint_end(rows[0][0])

    async def audit_head(self) -> records.AuditHead:
        rows = await self._read("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", ())
        seq, digest = rows[0] if rows else (0, audit.GENESIS)
        return records.AuditHead(seq=seq, hash=digest)

    async def audit_after(self, after_seq: int, limit: int) -> list[audit.Row]:
        rows = await self._read(
            "SELECT seq, event_type, action, agent_id, details, created_at, prev_hash, hash"
            " FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [audit.Row(*row) for row in rows]

    async def spend_summary(
        self, group_by: records.SpendGrouping, since: int | None, until: int | None
    ) -> list[records.SpendGroup]:
        rows = await self._read(
            "SELECT CASE ?1 WHEN 'agent' THEN agent_id WHEN 'mission' THEN mission_id"
            " WHEN 'team' THEN team_id WHEN 'tenant' THEN tenant_id ELSE model END AS grp,"
            " sum(cost_micros), count(*), coalesce(sum(input_tokens), 0),"
            " coalesce(sum(output_tokens), 0) FROM spends"
            " WHERE (?2 IS NULL OR created_at >= ?2) AND (?3 IS NULL OR created_at < ?3)"
            " GROUP BY grp ORDER BY 2 DESC, grp IS NULL, grp",
            (group_by, since, until),
        )
        return [records.SpendGroup(key=key, spent_usd_micros=micros, spends=count,
                                   input_tokens=tokens_in, output_tokens=tokens_out)
                for key, micros, count, tokens_in, tokens_out in rows]

    async def find_key(self, key_hash: str, now: int) -> principals.Principal | None:
        rows = await self._read(
            f"SELECT {tables.PRINCIPAL_COLUMNS} FROM api_keys WHERE key_hash = ?"
            " AND revoked_at IS NULL",
            (key_hash,),
        )
        principal = tables.principal_from_row(rows[0]) if rows else None
        return principal if principal is not None and principal.usable(now) else None

    async def list_keys(self) -> list[records.ApiKey]:
        rows = await self._read(
            f"SELECT {tables.KEY_COLUMNS} FROM api_keys ORDER BY created_at, id", ()
        )
        return [tables.key_from_row(row) for row in rows]

    async def has_keys(self) -> bool:
        return bool(await self._read("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1", ()))

    # --- writes --------------------------------------------------------------------

    async def set_budget(
        self, request: commands.BudgetSet, actor: principals.Principal
    ) -> records.Budget:
        result: records.Budget = await self._writer.write(
            lambda conn, now: budgets.set_budget(conn, now, request, actor)
        )
        return result

    async def delete_budget(
        self, scope: records.Scope, scope_id: str, actor: principals.Principal
    ) -> None:
        await self._writer.write(
            lambda conn, now: budgets.delete_budget(conn, now, scope, scope_id, actor)
        )

    async def resume_budget(
        self, scope: records.Scope, scope_id: str, grace_cents: int | None,
        actor: principals.Principal,
    ) -> records.Resumed:
        result: records.Resumed = await self._writer.write(
            lambda conn, now: budgets.resume_budget(
                conn, now, scope, scope_id, grace_cents, actor
            )
        )
        return result

    async def add_key(self, principal: principals.Principal, key_hash: str) -> records.ApiKey:
        result: records.ApiKey = await self._writer.write(
            lambda conn, now: keys.add_key(conn, now, principal, key_hash)
        )
        return result

    async def revoke_key(self, key_id: str) -> records.ApiKey:
        result: records.ApiKey = await self._writer.write(
            lambda conn, now: keys.revoke_key(conn, now, key_id)
        )
        return result

    async def touch_keys(self, uses: Mapping[str, int]) -> None:
        await self._writer.write(lambda conn, now: keys.touch_keys(conn, uses))

    async def audit_event(self, event: audit.Event) -> None:
        await self._writer.write(lambda conn, now: audit_log.append(conn, now, event))

    async def record_spend(
        self, request: commands.SpendRequest, fingerprint: str, ledger_key: str | None
    ) -> records.SpendCharged:
        job = budgets.SpendJob(request, fingerprint, ledger_key)
        result: records.SpendCharged = await self._writer.write(job)
        return result

    # --- holds -----------------------------------------------------------------------

    async def place_hold(
        self, request: commands.HoldRequest, fingerprint: str, key: str, ttl_ms: int
    ) -> records.Hold:
        result: records.Hold = await self._writer.write(
            lambda conn, now: holds.place_hold(conn, now, request, fingerprint, key, ttl_ms)
        )
        return result

    async def get_hold(self, hold_id: str) -> records.Hold | None:
        rows = await self._read(f"SELECT {tables.HOLD_COLUMNS} FROM holds WHERE id = ?",
                                (hold_id,))
        return tables.hold_from_row(rows[0]) if rows else None

    async def commit_hold(
        self, hold_id: str, request: commands.SpendRequest, fingerprint: str
    ) -> records.SpendCharged:
        result: records.SpendCharged = await self._writer.write(
            lambda conn, now: holds.commit_hold(conn, now, hold_id, request, fingerprint)
        )
        return result

    async def release_hold(self, hold_id: str) -> records.Hold:
        result: records.Hold = await self._writer.write(
            lambda conn, now: holds.release_hold(conn, now, hold_id)
        )
        return result

    async def expiries_due(self, now: int) -> tuple[bool, bool]:
        holds_due = await self._read(
            "SELECT 1 FROM holds WHERE status = 'held' AND expires_at <= ? LIMIT 1", (now,))
        runs_due = await self._read(
            "SELECT 1 FROM runs WHERE status = 'running' AND lease_expires_at <= ? LIMIT 1",
            (now,))
        return bool(holds_due), bool(runs_due)

    async def expire_holds(self, limit: int) -> int:
        result: int = await self._writer.write(
            lambda conn, now: holds.expire_holds(conn, now, limit)
        )
        return result

    async def count_live_holds(self, now: int) -> tuple[int, int]:
        rows = await self._read(
            "SELECT count(*), coalesce(sum(amount_micros), 0) FROM holds"
            " WHERE status = 'held' AND expires_at > ?", (now,)
        )
        return int(rows[0][0]), int(rows[0][1])

    # --- approvals -------------------------------------------------------------------

    async def open_approval(self, new: records.NewApproval, ttl_ms: int) -> records.Opened:
        result: records.Opened = await self._writer.write(
            lambda conn, now: approvals.open_approval(conn, now, new, ttl_ms)
        )
        return result

    async def get_approval(self, approval_id: str) -> records.Approval | None:
        rows = await self._read(
            f"SELECT {tables.APPROVAL_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)
        )
        return tables.approval_from_row(rows[0]) if rows else None

    async def list_pending_approvals(
        self, now: int, limit: int, after: records.PendingKey | None = None,
        agents: frozenset[str] | None = None,
    ) -> list[records.Approval]:
        only = None if agents is None else json.dumps(sorted(agents))
        # `+expires_at`: not an index term, so the planner walks approvals_pending_newest in
        # page order instead of sorting every pending row (there are no ANALYZE statistics).
        if after is None:
            rows = await self._read(
                f"SELECT {tables.APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending'"
                " AND +expires_at > ?"
                " AND (? IS NULL OR agent_id IN (SELECT value FROM json_each(?)))"
                " ORDER BY created_at DESC, id DESC LIMIT ?",
                (now, only, only, limit),
            )
        else:
            rows = await self._read(
                f"SELECT {tables.APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending'"
                " AND +expires_at > ? AND (created_at, id) < (?, ?)"
                " AND (? IS NULL OR agent_id IN (SELECT value FROM json_each(?)))"
                " ORDER BY created_at DESC, id DESC LIMIT ?",
                (now, after.created_at, after.id, only, only, limit),
            )
        return [tables.approval_from_row(row) for row in rows]

    async def _decide(self, request: approval_rules.DecisionRequest) -> records.Approval:
        result: records.Approval = await self._writer.write(
            lambda conn, now: approvals.decide(conn, now, request))
        return result

    async def expire_approvals(self, limit: int) -> list[records.Approval]:
        result: list[records.Approval] = await self._writer.write(
            lambda conn, now: approvals.expire_approvals(conn, now, limit)
        )
        return result

    async def list_grants(self, now: int, agent_id: str | None) -> list[records.Grant]:
        rows = await self._read(
            f"SELECT {tables.GRANT_COLUMNS} FROM approval_grants WHERE revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > ?1) AND (?2 IS NULL OR agent_id = ?2)"
            " ORDER BY created_at DESC, rowid DESC",
            (now, agent_id),
        )
        return [tables.grant_from_row(row) for row in rows]

    async def revoke_grant(
        self, grant_id: str, revoked_by: str | None, revoker: principals.Principal
    ) -> records.Grant:
        result: records.Grant = await self._writer.write(
            lambda conn, now: approvals.revoke_grant(conn, now, grant_id, revoked_by, revoker)
        )
        return result

    async def list_history(self, agent_id: str | None, limit: int) -> list[records.HistoryRecord]:
        rows = await self._read(
            f"SELECT {tables.HISTORY_COLUMNS} FROM approval_history"
            " WHERE (?1 IS NULL OR agent_id = ?1) ORDER BY id DESC LIMIT ?2",
            (agent_id, limit),
        )
        return [tables.history_from_row(row) for row in rows]

    async def append_history(
        self, agent_id: str, action: records.HistoryAction, tool_name: str, details: str | None
    ) -> records.HistoryRecord:
        result: records.HistoryRecord = await self._writer.write(
            lambda conn, now: approvals.append_history(
                conn, now, agent_id, action, tool_name, details
            )
        )
        return result

    # --- guardrail policies, tools, tool policies, role overrides ----------------------

    async def gate_generation(self) -> int:
        rows = await self._read("SELECT generation FROM gate_generation WHERE id = 1", ())
        return int(rows[0][0])

    async def get_guardrail(self, policy_id: str, version: int | None
                            ) -> guardrails.Stored | None:
        rows = await self._read(
            tables.STORED + " WHERE p.id = ?1 AND v.version = coalesce(?2, p.version)",
            (policy_id, version),
        )
        return tables.stored_from_row(rows[0]) if rows else None

    async def list_guardrails(self) -> list[guardrails.Stored]:
        rows = await self._read(
            tables.STORED + " WHERE v.version = p.version AND p.deleted_at IS NULL"
            " ORDER BY p.seq DESC", (),
        )
        return [tables.stored_from_row(row) for row in rows]

    async def guardrail_versions(self, policy_id: str) -> list[guardrails.Version]:
        rows = await self._read(
            f"SELECT {tables.VERSION_COLUMNS} FROM guardrail_versions WHERE policy_id = ?"
            " ORDER BY version DESC", (policy_id,),
        )
        return [tables.version_from_row(row) for row in rows]

    async def create_guardrail(
        self, draft: gate_rules.Draft, idempotency_key: str | None, actor: principals.Principal
    ) -> tuple[guardrails.Stored, bool]:
        result: tuple[guardrails.Stored, bool] = await self._writer.write(
            lambda conn, now: policies.create_guardrail(conn, now, draft, idempotency_key, actor)
        )
        return result

    async def update_guardrail(
        self, policy_id: str, patch: gate_rules.Update, actor: principals.Principal
    ) -> guardrails.Stored:
        result: guardrails.Stored = await self._writer.write(
            lambda conn, now: policies.update_guardrail(conn, now, policy_id, patch, actor)
        )
        return result

    async def rollback_guardrail(
        self, policy_id: str, version: int, message: str | None, actor: principals.Principal
    ) -> guardrails.Rollback:
        result: guardrails.Rollback = await self._writer.write(
            lambda conn, now: policies.rollback_guardrail(
                conn, now, policy_id, version, message, actor)
        )
        return result

    async def delete_guardrail(self, policy_id: str, actor: principals.Principal) -> None:
        await self._writer.write(
            lambda conn, now: policies.delete_guardrail(conn, now, policy_id, actor)
        )

    async def list_tools(self, include_archived: bool) -> list[registry.Tool]:
        rows = await self._read(
            f"SELECT {tables.TOOL_COLUMNS} FROM tools WHERE ?1 OR status <> 'archived'"
            " ORDER BY seq", (include_archived,),
        )
        return [tables.tool_from_row(row) for row in rows]

    async def register_tool(
        self, name: str, categories: list[str], description: str | None,
        actor: principals.Principal,
    ) -> registry.Tool:
        result: registry.Tool = await self._writer.write(
            lambda conn, now: policies.register_tool(conn, now, name, categories, description,
                                                     actor)
        )
        return result

    async def deprecate_tool(
        self, name: str, reason: str, replacement: str | None, actor: principals.Principal
    ) -> registry.Tool:
        result: registry.Tool = await self._writer.write(
            lambda conn, now: policies.deprecate_tool(conn, now, name, reason, replacement, actor)
        )
        return result

    async def archive_tool(self, name: str, actor: principals.Principal) -> registry.Tool:
        result: registry.Tool = await self._writer.write(
            lambda conn, now: policies.archive_tool(conn, now, name, actor)
        )
        return result

    async def list_tool_policies(self) -> list[registry.ToolPolicy]:
        rows = await self._read(
            f"SELECT {tables.TOOL_POLICY_COLUMNS} FROM tool_policies ORDER BY seq", ()
        )
        return [tables.tool_policy_from_row(row) for row in rows]

    async def create_tool_policy(
        self, tool_name: str, allowed: bool, allowed_domains: list[str] | None,
        max_response_size_kb: int | None, actor: principals.Principal,
    ) -> registry.ToolPolicy:
        result: registry.ToolPolicy = await self._writer.write(
            lambda conn, now: policies.create_tool_policy(
                conn, now, tool_name, allowed, allowed_domains, max_response_size_kb, actor)
        )
        return result

    async def delete_tool_policy(self, policy_id: str, actor: principals.Principal) -> None:
        await self._writer.write(
            lambda conn, now: policies.delete_tool_policy(conn, now, policy_id, actor)
        )

    async def list_role_overrides(self) -> list[registry.RoleOverride]:
        rows = await self._read(
            f"SELECT {tables.OVERRIDE_COLUMNS} FROM role_policy_overrides ORDER BY seq", ()
        )
        return [tables.override_from_row(row) for row in rows]

    async def create_role_override(
        self, role: str, tool_name: str, allowed: bool, actor: principals.Principal
    ) -> registry.RoleOverride:
        result: registry.RoleOverride = await self._writer.write(
            lambda conn, now: policies.create_role_override(
                conn, now, role, tool_name, allowed, actor)
        )
        return result

    async def delete_role_override(self, override_id: str, actor: principals.Principal) -> None:
        await self._writer.write(
            lambda conn, now: policies.delete_role_override(conn, now, override_id, actor)
        )

    # --- runs and quotas -------------------------------------------------------------

    async def start_run(
        self, request: commands.RunStart, plan: dict[str, int], rules: runs.Rules
    ) -> runs.Started:
        result: runs.Started | runs.Refused = await self._writer.write(
            lambda conn, now: run_rows.start_run(conn, now, request, plan, rules)
        )
        return runs.outcome(result)

    async def end_run(self, run_id: str) -> records.Run:
        result: records.Run = await self._writer.write(
            lambda conn, now: run_rows.end_run(conn, now, run_id)
        )
        return result

    async def run_events(
        self, run_id: str, events: list[commands.RunEvent], rules: runs.Rules
    ) -> runs.Applied:
        result: runs.Applied = await self._writer.write(
            lambda conn, now: run_rows.run_events(conn, now, run_id, events, rules)
        )
        return result

    async def get_run(self, run_id: str) -> records.Run | None:
        rows = await self._read(
            f"SELECT {tables.RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)
        )
        return tables.run_from_row(rows[0]) if rows else None

    async def list_runs(
        self, status: records.RunStatus | None, agent_id: str | None, now: int, limit: int
    ) -> list[records.Run]:
        rows = await self._read(
            f"SELECT {tables.RUN_COLUMNS} FROM runs WHERE (?2 IS NULL OR agent_id = ?2)"
            " AND (?1 IS NULL"
            " OR (?1 = 'running' AND status = 'running' AND lease_expires_at > ?3)"
            " OR (?1 = 'expired' AND (status = 'expired'"
            "     OR (status = 'running' AND lease_expires_at <= ?3)))"
            " OR (?1 IN ('ended', 'tripped') AND status = ?1))"
            " ORDER BY started_at DESC, rowid DESC LIMIT ?4",
            (status, agent_id, now, limit),
        )
        return [tables.run_from_row(row) for row in rows]

    async def expire_runs(self, limit: int) -> int:
        result: int = await self._writer.write(
            lambda conn, now: run_rows.expire_runs(conn, now, limit)
        )
        return result

    async def count_running_runs(self, now: int) -> int:
        rows = await self._read(
            "SELECT count(*) FROM runs WHERE status = 'running' AND lease_expires_at > ?", (now,)
        )
        return int(rows[0][0])

    async def quota_overrides(self, tenant_id: str) -> dict[str, int]:
        rows = await self._read(
            "SELECT overrides FROM tenant_quotas WHERE tenant_id = ?", (tenant_id,)
        )
        return tables.decode_overrides(rows[0][0] if rows else None)

    async def set_quota_overrides(
        self, tenant_id: str, patch: dict[str, int | None]
    ) -> dict[str, int]:
        result: dict[str, int] = await self._writer.write(
            lambda conn, now: run_rows.set_overrides(conn, now, tenant_id, patch)
        )
        return result

    # --- webhook deliveries ------------------------------------------------------------

    async def queue_deliveries(self, webhook: str, names: Collection[str], limit: int) -> int:
        rows = await self._read(
            "SELECT (SELECT seq FROM notify_cursors WHERE webhook = ?),"
            " (SELECT coalesce(max(seq), 0) FROM audit)", (webhook,),
        )
        cursor, head = rows[0]
        if cursor is not None and cursor >= head:
            return 0  # nothing new: no write
        result: int = await self._writer.write(
            lambda conn, now: deliveries.queue(conn, now, webhook, names, limit)
        )
        return result

    async def claim_deliveries(self, webhook: str, lease_ms: int, limit: int
                               ) -> list[webhooks.Delivery]:
        result: list[webhooks.Delivery] = await self._writer.write(
            lambda conn, now: deliveries.claim(conn, now, webhook, lease_ms, limit)
        )
        return result

    async def delivery_done(self, webhook: str, seq: int) -> None:
        await self._writer.write(lambda conn, now: deliveries.delivered(conn, webhook, seq))

    async def delivery_failed(self, webhook: str, seq: int, error: str, retry_at: int | None
                              ) -> None:
        await self._writer.write(
            lambda conn, now: deliveries.failed(conn, now, webhook, seq, error, retry_at)
        )

    async def delivery_backlog(self, webhook: str) -> webhooks.Backlog:
        rows = await self._read(
            f"SELECT {tables.BACKLOG_COLUMNS} FROM notify_deliveries WHERE webhook = ?",
            (webhook,),
        )
        return tables.backlog_from_row(rows[0])
    # --- authorize: approval settings, receipts, the enforcement check, reports -----------

    async def authorize_reads(self, scope_ids: commands.ScopeIds
                              ) -> tuple[list[records.HeldScope], int]:
        rows = await self._read(
            "SELECT g.generation, " + _PREFIXED_BUDGET_COLUMNS + " FROM gate_generation g"
            " LEFT JOIN budgets b ON (b.scope = 'agent' AND b.scope_id = ?1)"
            " OR (b.scope = 'mission' AND b.scope_id = ?2) OR (b.scope = 'team'"
            " AND b.scope_id = ?3) OR (b.scope = 'tenant' AND b.scope_id = ?4) WHERE g.id = 1",
            (scope_ids.agent_id, scope_ids.mission_id, scope_ids.team_id, scope_ids.tenant_id),
        )
        budgets_read = (tables.budget_from_row(row[1:]) for row in rows if row[1] is not None)
        return budget_rules.chain_states(budgets_read), int(rows[0][0])

    async def get_settings(self) -> gate_settings.Settings:
        rows = await self._read("SELECT document FROM governance_settings WHERE id = 1", ())
        return gate_settings.from_document(documents.loads(rows[0][0]) if rows else None)

    async def patch_settings(self, patch: dict[str, object], actor: principals.Principal
                             ) -> gate_settings.Settings:
        result: gate_settings.Settings = await self._writer.write(
            lambda conn, now: receipts.patch_settings(conn, now, patch, actor)
        )
        return result

    async def find_receipt(self, idempotency_key: str) -> authorize.Stored | None:
        rows = await self._read(f"{tables.RECEIPT} WHERE r.idempotency_key = ?",
                                (idempotency_key,))
        return tables.receipt_from_row(rows[0]) if rows else None

    async def get_receipt(self, receipt_id: str) -> authorize.Stored | None:
        rows = await self._read(f"{tables.RECEIPT} WHERE r.id = ?", (receipt_id,))
        return tables.receipt_from_row(rows[0]) if rows else None

    async def write_receipt(self, receipt: authorize.NewReceipt
                            ) -> tuple[authorize.Stored, bool]:
        result: tuple[authorize.Stored, bool] = await self._writer.write(
            lambda conn, now: receipts.write_receipt(conn, now, receipt)
        )
        return result

    async def append_receipt_outcome(self, receipt_id: str, outcome: dict[str, object]
                                     ) -> authorize.Stored:
        result: authorize.Stored = await self._writer.write(
            lambda conn, now: receipts.append_outcome(conn, now, receipt_id, outcome)
        )
        return result

    async def enforcement_blockers(self, resource_type: authorize.ResourceType,
                                   resource_id: str, now: int) -> authorize.Blockers:
        tripped = await self._read(
            "SELECT id, agent_id, lease_expires_at FROM runs WHERE status = 'tripped'"
            " AND lease_expires_at > ?3 AND CASE ?1 WHEN 'agent' THEN agent_id"
            " WHEN 'mission' THEN mission_id WHEN 'team' THEN team_id ELSE tenant_id END = ?2"
            " ORDER BY started_at DESC, rowid DESC LIMIT ?4",
            (resource_type, resource_id, now, authorize.BLOCKING_MAX),
        )
        pending = await self._read(
            "SELECT a.id, a.agent_id, a.tool_name, a.expires_at FROM approvals a"
            " WHERE a.status = 'pending' AND a.expires_at > ?3"
            " AND ((?1 = 'agent' AND a.agent_id = ?2) OR (?1 = 'tenant' AND a.tenant_id = ?2)"
            " OR a.id IN (SELECT approval_id FROM receipts WHERE approval_id IS NOT NULL"
            " AND CASE ?1 WHEN 'agent' THEN agent_id WHEN 'mission' THEN mission_id"
            " WHEN 'team' THEN team_id ELSE tenant_id END = ?2))"
            " ORDER BY a.created_at, a.id LIMIT ?4",
            (resource_type, resource_id, now, authorize.BLOCKING_MAX),
        )
        load, overrides = None, {}
        if resource_type == "tenant":
            running = await self._read(
                "SELECT count(*), min(lease_expires_at) FROM runs WHERE tenant_id = ?"
                " AND status = 'running' AND lease_expires_at > ?", (resource_id, now))
            hour = await self._read(
                "SELECT count(*), min(started_at) FROM runs WHERE tenant_id = ?"
                " AND started_at > ?", (resource_id, runs.hour_since(now)))
            load = runs.TenantLoad(running[0][0], running[0][1], hour[0][0], hour[0][1])
            overrides = await self.quota_overrides(resource_id)
        return authorize.Blockers([(r[0], r[1], r[2]) for r in tripped],
                                  [(r[0], r[1], r[2], r[3]) for r in pending], load, overrides)

    async def report_figures(self, since: int, now: int) -> authorize.ReportFigures:
        rows = await self._read(
            "SELECT (SELECT count(*) FROM receipts WHERE created_at >= ?1), count(a.id),"
            " coalesce(sum(CASE WHEN " + _APPROVED + " THEN 1 ELSE 0 END), 0),"
            " coalesce(sum(CASE WHEN " + _REJECTED + " THEN 1 ELSE 0 END), 0),"
            " coalesce(sum(CASE WHEN " + _APPROVED + " THEN a.resolved_at - a.created_at"
            " ELSE 0 END), 0)"
            " FROM receipts r JOIN approvals a ON a.id = r.approval_id WHERE r.created_at >= ?1",
            (since, now),
        )
        top = await self._read(
            "SELECT voter, count(*) FROM ("
            "SELECT a.id, json_extract(v.value, '$.keyId') AS voter FROM receipts r"
            " JOIN approvals a ON a.id = r.approval_id, " + _VOTES +
            " WHERE r.created_at >= ?1 AND " + _APPROVED +
            " AND json_extract(v.value, '$.decision') <> 'deny'"
            " UNION SELECT a.id, a.resolved_by_key FROM receipts r"
            " JOIN approvals a ON a.id = r.approval_id WHERE r.created_at >= ?1"
            " AND a.resolved_by_key IS NOT NULL AND " + _APPROVED +
            " AND NOT EXISTS (SELECT 1 FROM " + _VOTES + "))"
            " GROUP BY voter ORDER BY 2 DESC, 1 LIMIT 10",
            (since,),
        )
        total, gated, approved, rejected, approval_ms = rows[0]
        return authorize.ReportFigures(total, gated, approved, rejected, approval_ms,
                                       [(key, count) for key, count in top])

    async def approval_stats(self, since: int, now: int) -> tuple[
            list[tuple[str, int, int, int]], list[tuple[str, int, int]]]:
        by_tool = await self._read(
            "SELECT a.tool_name, count(*),"
            " sum(CASE WHEN " + _APPROVED + " THEN 1 ELSE 0 END),"
            " sum(CASE WHEN " + _REJECTED + " THEN 1 ELSE 0 END)"
            " FROM receipts r JOIN approvals a ON a.id = r.approval_id WHERE r.created_at >= ?1"
            " GROUP BY a.tool_name ORDER BY 2 DESC, 1",
            (since, now),
        )
        by_category = await self._read(
            "SELECT c.value, count(*), sum(CASE WHEN " + _APPROVED + " THEN 1 ELSE 0 END)"
            " FROM receipts r JOIN approvals a ON a.id = r.approval_id, json_each(r.categories) c"
            " WHERE r.created_at >= ?1 GROUP BY c.value ORDER BY c.value",
            (since,),
        )
        return ([(t, n, ok, no) for t, n, ok, no in by_tool],
                [(c, n, ok) for c, n, ok in by_category])


_PREFIXED_BUDGET_COLUMNS = ", ".join(f"b.{c.strip()}" for c in tables.BUDGET_COLUMNS.split(","))

# An approval opened by authorize, counted as approved (a waiver included) or rejected (denied,
# or expired: also a pending row past its expiry at ?2 that the sweep has not written yet).
_APPROVED = "a.status IN ('allow_once', 'allow_always', 'approved')"
_REJECTED = "(a.status IN ('deny', 'expired') OR (a.status = 'pending' AND a.expires_at <= ?2))"
# Every vote of approval a's stages (a vote counting in two gates appears twice: UNION folds it).
_VOTES = ("json_each(coalesce(a.stages, '[]')) s, json_each(s.value, '$.gates') g,"
          " json_each(g.value, '$.votes') v")
