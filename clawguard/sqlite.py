"""The SQLite store: the one module that speaks SQL to SQLite and owns its exceptions.

Writes go through one writer task. It drains a queue of jobs and runs each
batch as ONE `BEGIN IMMEDIATE ... COMMIT`, so a batch pays one fsync and one
hop into the database thread, however many spends it holds. Only the calls
that can wait go to that thread: the COMMIT (its fsync) and, when another
process holds the write lock, the BEGIN. The jobs' statements run on the event
loop: they take microseconds, whereas in the thread every sqlite3 step gives
up the GIL and must win it back from the busy loop (under bench/spend.py's
load: 107 us a spend in the thread, 44 us on the loop). Each job runs inside
its own SAVEPOINT, so a job that fails leaves the others in its batch
untouched; no caller hears back before its batch is committed. Reads use a
separate aiosqlite connection: in WAL mode they never wait for the writer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiosqlite

from clawguard import audit, auth, config, errors, migrate, models, money, redact

log = logging.getLogger(__name__)

Job = Callable[[sqlite3.Connection, int], Any]
Clock = Callable[[], int]

# The budget rows of one scope chain (agent, mission, team, tenant ids as ?1..?4).
_CHAIN_WHERE = (
    " WHERE (scope = 'agent' AND scope_id = ?1) OR (scope = 'mission' AND scope_id = ?2)"
    " OR (scope = 'team' AND scope_id = ?3) OR (scope = 'tenant' AND scope_id = ?4)"
)
_CHAIN_ORDER = {scope: index for index, scope in enumerate(models.SCOPES)}
_BUDGET_COLUMNS = (
    "id, scope, scope_id, limit_cents, spent_micros, held_micros, status, mode,"
    " created_at, updated_at"
)
_APPROVAL_COLUMNS = (
    "id, tool_name, agent_id, args_summary, reason, status, task_id, tenant_id, created_at,"
    " expires_at, resolved_at, resolved_by"
)
_GRANT_COLUMNS = (
    "id, agent_id, tool_name, approval_id, created_at, expires_at, revoked_at, revoked_by"
)
_HISTORY_COLUMNS = "id, agent_id, action, tool_name, details, created_at"
_HISTORY_ACTION: dict[str, models.HistoryAction] = {
    "allow_once": "allow-once", "allow_always": "allow-always", "deny": "deny",
}


def connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the durable pragmas."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a spend acknowledged to a caller survives a power cut, not only a crash.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def migrate_database(path: str, busy_timeout_ms: int = 5_000) -> list[int]:
    """Apply pending migrations to the database file; return the versions applied."""
    try:
        conn = connect(path, busy_timeout_ms)
        try:
            return migrate.apply(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise errors.StoreUnavailable(f"cannot migrate {path}: {exc}") from exc


class SQLiteStore:
    """The Store contract on one SQLite file (see store.py)."""

    def __init__(self, settings: config.StorageConfig, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._queue: asyncio.Queue[tuple[Job | SpendJob, asyncio.Future[Any]] | None] = (
            asyncio.Queue()
        )
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clawguard-writer")
        self._writer_conn: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._closing = False
        self._write_fault: str | None = None  # why the last batch failed, until one commits
        self.batch_observer: Callable[[int, float], None] | None = None

    # --- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        path, timeout = self._settings.path, self._settings.busy_timeout_ms
        loop = asyncio.get_running_loop()
        try:
            self._writer_conn = await loop.run_in_executor(self._thread, connect, path, timeout)
            await loop.run_in_executor(self._thread, migrate.apply, self._writer_conn)
            # From here on the writer never waits for a lock on the event loop: see _begin.
            self._writer_conn.execute("PRAGMA busy_timeout = 0")
            self._reader = await aiosqlite.connect(path)
            await self._reader.execute(f"PRAGMA busy_timeout = {int(timeout)}")
            await self._reader.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            await self.close()
            raise errors.StoreUnavailable(f"cannot open {path}: {exc}") from exc
        self._writer_task = asyncio.create_task(self._write_loop(), name="clawguard-writer")

    async def close(self) -> None:
        self._closing = True
        if self._writer_task is not None:
            self._queue.put_nowait(None)  # after every job already queued
            await self._writer_task
            self._writer_task = None
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._writer_conn is not None:
            conn, self._writer_conn = self._writer_conn, None
            await asyncio.get_running_loop().run_in_executor(self._thread, conn.close)
        self._thread.shutdown(wait=True)

    async def ready(self) -> bool:
        try:
            rows = await self._read("SELECT max(version) FROM schema_migrations", ())
        except errors.StoreUnavailable:
            return False
        return bool(rows) and rows[0][0] == migrate.latest_version() and await self.writable()

    async def writable(self) -> bool:
        """Whether writes commit; after a failed one, a probe write finds out if it has cleared."""
        if self._write_fault is None:
            return True
        try:
            await self._write(_probe)
        except errors.StoreUnavailable:
            return False
        return True

    # --- the writer ------------------------------------------------------------

    async def _write(self, job: Job | SpendJob) -> Any:
        if self._closing or self._writer_task is None:
            raise errors.StoreUnavailable("the store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, future))
        return await future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await self._queue.get()
            if item is None:
                return
            # One loop turn first: the handlers already runnable in this turn enqueue their
            # writes too, so the batch is bigger and its fsync and thread hop are shared by
            # more callers (bench/spend.py: about +25% spends per second).
            await asyncio.sleep(0)
            batch = [item]
            stop = False
            while len(batch) < self._settings.batch_max and not self._queue.empty():
                queued = self._queue.get_nowait()
                if queued is None:
                    stop = True
                    break
                batch.append(queued)
            started = loop.time()
            try:
                outcomes = await self._commit_batch([job for job, _ in batch])
            except Exception as exc:  # the whole transaction failed: nothing was written
                log.error("write batch of %d failed: %s", len(batch), exc)
                outcomes = [errors.StoreUnavailable(f"the database cannot be written: {exc}")]
                outcomes *= len(batch)
            failed = next((o for o in outcomes if isinstance(o, errors.StoreUnavailable)), None)
            self._write_fault = None if failed is None else failed.message
            if self.batch_observer is not None:
                self.batch_observer(len(batch), loop.time() - started)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the caller went away; its write stands
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
            if stop:
                return

    async def _commit_batch(self, jobs: list[Job | SpendJob]) -> list[Any]:
        """Run the jobs in one transaction; return each one's result or exception once committed."""
        conn = self._writer_conn
        assert conn is not None
        await self._begin(conn)
        try:
            outcomes = _run_jobs(conn, jobs, self._clock())
            await asyncio.get_running_loop().run_in_executor(self._thread, conn.execute, "COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes

    async def _begin(self, conn: sqlite3.Connection) -> None:
        """Take the write lock: at once on the loop when it is free, as it nearly always is."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            # Another process holds it (`clawguard keys`, a backup): wait in the database
            # thread, up to storage.busy_timeout_ms, so the loop goes on serving.
            await asyncio.get_running_loop().run_in_executor(
                self._thread, _begin_waiting, conn, self._settings.busy_timeout_ms
            )

    # --- reads -------------------------------------------------------------------

    async def _read(self, sql: str, params: Iterable[Any]) -> list[sqlite3.Row]:
        if self._reader is None:
            raise errors.StoreUnavailable("the store is closed")
        try:
            async with self._reader.execute(sql, tuple(params)) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as exc:
            raise errors.StoreUnavailable(f"the database cannot be read: {exc}") from exc

    async def list_budgets(
        self, scope: models.Scope | None, status: models.Status | None
    ) -> list[models.Budget]:
        rows = await self._read(
            f"SELECT {_BUDGET_COLUMNS} FROM budgets"
            " WHERE (?1 IS NULL OR scope = ?1) AND (?2 IS NULL OR status = ?2)"
            " ORDER BY updated_at DESC, rowid DESC",
            (scope, status),
        )
        return [_budget(row) for row in rows]

    async def scope_states(self, scope_ids: models.ScopeIds) -> list[models.ScopeState]:
        rows = await self._read(
            f"SELECT {_BUDGET_COLUMNS} FROM budgets" + _CHAIN_WHERE,
            (scope_ids.agent_id, scope_ids.mission_id, scope_ids.team_id, scope_ids.tenant_id),
        )
        budgets = sorted((_budget(row) for row in rows), key=lambda b: _CHAIN_ORDER[b.scope])
        return [_scope_state(budget, "none") for budget in budgets]

    async def list_audit(
        self, agent_id: str | None, event_type: str | None, since: int | None, limit: int
    ) -> list[models.AuditEntry]:
        rows = await self._read(
            "SELECT seq, event_type, action, agent_id, details, created_at, prev_hash, hash"
            " FROM audit WHERE (?1 IS NULL OR agent_id = ?1) AND (?2 IS NULL OR event_type = ?2)"
            " AND (?3 IS NULL OR created_at >= ?3) ORDER BY seq DESC LIMIT ?4",
            (agent_id, event_type, since, limit),
        )
        return [
            models.AuditEntry(
                id=seq, event_type=etype, action=action, agent_id=agent, details=json.loads(det),
                created_at=created, prev_hash=prev, hash=digest,
            )
            for seq, etype, action, agent, det, created, prev, digest in rows
        ]

    async def budget_levels(self) -> list[tuple[str, str, str, str, int, int]]:
        rows = await self._read(
            "SELECT scope, scope_id, status, mode, spent_micros, limit_cents FROM budgets", ()
        )
        return [tuple(row) for row in rows]

    async def count_pending_approvals(self, now: int) -> int:
        rows = await self._read(
            "SELECT count(*) FROM approvals WHERE status = 'pending' AND expires_at > ?", (now,)
        )
        return int(rows[0][0])

    async def audit_head(self) -> models.AuditHead:
        rows = await self._read("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", ())
        seq, digest = rows[0] if rows else (0, audit.GENESIS)
        return models.AuditHead(seq=seq, hash=digest)

    async def find_key(self, key_hash: str) -> auth.Principal | None:
        rows = await self._read(
            "SELECT id, name, role, leads FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
            (key_hash,),
        )
        return _principal(rows[0]) if rows else None

    async def has_keys(self) -> bool:
        return bool(await self._read("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1", ()))

    # --- writes --------------------------------------------------------------------

    async def set_budget(self, request: models.BudgetSet) -> models.Budget:
        result: models.Budget = await self._write(
            lambda conn, now: _set_budget(conn, now, request)
        )
        return result

    async def delete_budget(self, scope: models.Scope, scope_id: str) -> None:
        await self._write(lambda conn, now: _delete_budget(conn, now, scope, scope_id))

    async def resume_budget(
        self, scope: models.Scope, scope_id: str, grace_cents: int | None
    ) -> models.Resumed:
        result: models.Resumed = await self._write(
            lambda conn, now: _resume_budget(conn, now, scope, scope_id, grace_cents)
        )
        return result

    async def add_key(self, principal: auth.Principal, key_hash: str) -> None:
        await self._write(lambda conn, now: _add_key(conn, now, principal, key_hash))

    async def audit_event(
        self, event_type: models.EventType, action: str, agent_id: str | None,
        details: dict[str, Any],
    ) -> None:
        await self._write(
            lambda conn, now: _append_audit(conn, now, event_type, action, agent_id, details)
        )

    async def record_spend(
        self, request: models.SpendRequest, fingerprint: str
    ) -> models.SpendCharged:
        result: models.SpendCharged = await self._write(SpendJob(request, fingerprint))
        return result

    # --- approvals -------------------------------------------------------------------

    async def open_approval(self, new: models.NewApproval, ttl_ms: int) -> models.Opened:
        result: models.Opened = await self._write(
            lambda conn, now: _open_approval(conn, now, new, ttl_ms)
        )
        return result

    async def get_approval(self, approval_id: str) -> models.Approval | None:
        rows = await self._read(
            f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)
        )
        return _approval(rows[0]) if rows else None

    async def list_pending_approvals(self, now: int) -> list[models.Approval]:
        rows = await self._read(
            f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending'"
            " AND expires_at > ? ORDER BY created_at DESC, rowid DESC",
            (now,),
        )
        return [_approval(row) for row in rows]

    async def resolve_approval(
        self, approval_id: str, decision: models.Decision, resolved_by: str | None,
        sticky_ttl_ms: int, decider: auth.Principal,
    ) -> models.Approval:
        result: models.Approval = await self._write(
            lambda conn, now: _resolve_approval(
                conn, now, approval_id, decision, resolved_by, sticky_ttl_ms, decider
            )
        )
        return result

    async def expire_approvals(self, limit: int) -> list[models.Approval]:
        result: list[models.Approval] = await self._write(
            lambda conn, now: _expire_approvals(conn, now, limit)
        )
        return result

    async def list_grants(self, now: int, agent_id: str | None) -> list[models.Grant]:
        rows = await self._read(
            f"SELECT {_GRANT_COLUMNS} FROM approval_grants WHERE revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > ?1) AND (?2 IS NULL OR agent_id = ?2)"
            " ORDER BY created_at DESC, rowid DESC",
            (now, agent_id),
        )
        return [_grant(row) for row in rows]

    async def revoke_grant(
        self, grant_id: str, revoked_by: str | None, revoker: auth.Principal
    ) -> models.Grant:
        result: models.Grant = await self._write(
            lambda conn, now: _revoke_grant(conn, now, grant_id, revoked_by, revoker)
        )
        return result

    async def list_history(self, agent_id: str | None, limit: int) -> list[models.HistoryRecord]:
        rows = await self._read(
            f"SELECT {_HISTORY_COLUMNS} FROM approval_history"
            " WHERE (?1 IS NULL OR agent_id = ?1) ORDER BY id DESC LIMIT ?2",
            (agent_id, limit),
        )
        return [_history(row) for row in rows]

    async def append_history(
        self, agent_id: str, action: models.HistoryAction, tool_name: str, details: str | None
    ) -> models.HistoryRecord:
        result: models.HistoryRecord = await self._write(
            lambda conn, now: _append_history(conn, now, agent_id, action, tool_name, details)
        )
        return result


# --- inside the batch transaction -------------------------------------------------
# Everything below runs inside the writer's open transaction, on the event loop.


def _run_batch(conn: sqlite3.Connection, jobs: list[Job | SpendJob], now: int) -> list[Any]:
    """One transaction for the whole batch, in one blocking call (for `clawguard keys`)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        outcomes = _run_jobs(conn, jobs, now)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _run_jobs(conn: sqlite3.Connection, jobs: list[Job | SpendJob], now: int) -> list[Any]:
    """Each job all-or-nothing within its savepoint of the open transaction."""
    budgets = _ChargedBudgets()
    outcomes: list[Any] = []
    for job in jobs:
        if not isinstance(job, SpendJob):
            budgets.write_back(conn, now)  # it reads and writes budgets as the spends left them
        conn.execute("SAVEPOINT job")
        try:
            if isinstance(job, SpendJob):
                outcomes.append(_record_spend(conn, now, job, budgets))
            else:
                outcomes.append(job(conn, now))
        except Exception as exc:
            conn.execute("ROLLBACK TO job")
            if isinstance(exc, sqlite3.Error):
                exc = errors.StoreUnavailable(f"the database cannot be written: {exc}")
            outcomes.append(exc)
        conn.execute("RELEASE job")
    budgets.write_back(conn, now)
    return outcomes


def _begin_waiting(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


def _probe(conn: sqlite3.Connection, now: int) -> None:
    conn.execute("INSERT OR REPLACE INTO heartbeat (id, at) VALUES (1, ?)", (now,))


def _append_audit(
    conn: sqlite3.Connection,
    now: int,
    event_type: models.EventType,
    action: str,
    agent_id: str | None,
    details: dict[str, Any],
) -> None:
    last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, audit.GENESIS)
    details_json = audit.canonical(redact.redact(details))
    digest = audit.row_hash(prev_hash, seq, event_type, action, agent_id, details_json, now)
    conn.execute(
        "INSERT INTO audit (seq, event_type, action, agent_id, details, created_at, prev_hash,"
        " hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, event_type, action, agent_id, details_json, now, prev_hash, digest),
    )


def _budget(row: Iterable[Any]) -> models.Budget:
    bid, scope, scope_id, limit, spent, held, status, mode, created, updated = row
    return models.Budget(
        id=bid, scope=scope, scope_id=scope_id, limit_usd_cents=limit,
        spent_usd_cents=money.micros_to_cents(spent), spent_usd_micros=spent,
        held_usd_cents=money.micros_to_cents(held), status=status, mode=mode,
        created_at=created, updated_at=updated,
    )


def _scope_state(budget: models.Budget, crossed: money.Crossed) -> models.ScopeState:
    return models.ScopeState(
        scope=budget.scope, scope_id=budget.scope_id, status=budget.status, mode=budget.mode,
        spent_usd_cents=budget.spent_usd_cents, spent_usd_micros=budget.spent_usd_micros,
        limit_usd_cents=budget.limit_usd_cents, crossed=crossed,
    )


def _find_budget(conn: sqlite3.Connection, scope: str, scope_id: str) -> models.Budget | None:
    row = conn.execute(
        f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE scope = ? AND scope_id = ?",
        (scope, scope_id),
    ).fetchone()
    return None if row is None else _budget(row)


def _require_budget(conn: sqlite3.Connection, scope: str, scope_id: str) -> models.Budget:
    budget = _find_budget(conn, scope, scope_id)
    if budget is None:
        raise errors.NotFound(f"no budget for {scope} {scope_id}")
    return budget


def _agent_of(scope: str, scope_id: str, agent_id: str | None = None) -> str | None:
    return scope_id if scope == "agent" else agent_id


AuditEvent = tuple[models.EventType, str, str | None, dict[str, Any]]


def _budget_details(
    scope: str, scope_id: str, budget_id: str, limit: int, spent: int
) -> dict[str, Any]:
    return {"scope": scope, "scopeId": scope_id, "budgetId": budget_id,
            "limitUsdCents": limit, "spentUsdMicros": spent}


def _paused_event(details: dict[str, Any]) -> AuditEvent:
    """The cap_hit row written the moment a budget becomes paused, whatever paused it."""
    return "cap_hit", "budget.paused", _agent_of(details["scope"], details["scopeId"]), details


def _save_budget(
    conn: sqlite3.Connection, now: int, before: models.Budget, limit: int, mode: money.Mode,
    status: money.Status,
) -> models.Budget:
    """Write a budget row's new limit, mode and status, auditing the moment it becomes paused."""
    spent = before.spent_usd_micros
    conn.execute(
        "UPDATE budgets SET limit_cents = ?, status = ?, mode = ?, updated_at = ? WHERE id = ?",
        (limit, status, mode, now, before.id),
    )
    if status == "paused" and before.status != "paused":
        _append_audit(conn, now, *_paused_event(
            _budget_details(before.scope, before.scope_id, before.id, limit, spent)
        ))
    return before.model_copy(update={
        "limit_usd_cents": limit, "status": status, "mode": mode, "updated_at": now,
    })


def _set_budget(conn: sqlite3.Connection, now: int, request: models.BudgetSet) -> models.Budget:
    existing = _find_budget(conn, request.scope, request.scope_id)
    if existing is None:
        mode: money.Mode = request.mode or "warn"
        budget = models.Budget(
            id="bud_" + secrets.token_hex(8), scope=request.scope, scope_id=request.scope_id,
            limit_usd_cents=request.limit_usd_cents, spent_usd_cents=0, spent_usd_micros=0,
            held_usd_cents=0, status="active", mode=mode, created_at=now, updated_at=now,
        )
        conn.execute(
            f"INSERT INTO budgets ({_BUDGET_COLUMNS}) VALUES (?, ?, ?, ?, 0, 0, ?, ?, ?, ?)",
            (budget.id, budget.scope, budget.scope_id, budget.limit_usd_cents, budget.status,
             budget.mode, now, now),
        )
        previous: dict[str, Any] = {}
    else:
        mode = request.mode or existing.mode  # omitting mode keeps it (Clawboo's trap fixed)
        status = money.status_for(existing.spent_usd_micros, request.limit_usd_cents, mode)
        budget = _save_budget(conn, now, existing, request.limit_usd_cents, mode, status)
        previous = {"previousLimitUsdCents": existing.limit_usd_cents,
                    "previousMode": existing.mode, "previousStatus": existing.status}
    _append_audit(
        conn, now, "budget", "budget.set", _agent_of(budget.scope, budget.scope_id),
        {"scope": budget.scope, "scopeId": budget.scope_id, "budgetId": budget.id,
         "limitUsdCents": budget.limit_usd_cents, "mode": budget.mode, "status": budget.status,
         **previous},
    )
    return budget


def _delete_budget(conn: sqlite3.Connection, now: int, scope: str, scope_id: str) -> None:
    budget = _require_budget(conn, scope, scope_id)
    conn.execute("DELETE FROM budgets WHERE id = ?", (budget.id,))
    _append_audit(
        conn, now, "budget", "budget.deleted", _agent_of(scope, scope_id),
        {"scope": scope, "scopeId": scope_id, "budgetId": budget.id,
         "limitUsdCents": budget.limit_usd_cents, "spentUsdMicros": budget.spent_usd_micros},
    )


def _resume_budget(
    conn: sqlite3.Connection, now: int, scope: str, scope_id: str, grace_cents: int | None
) -> models.Resumed:
    before = _require_budget(conn, scope, scope_id)
    limit, status, will_repause = money.resume(
        before.spent_usd_micros, before.limit_usd_cents, before.mode, grace_cents
    )
    budget = _save_budget(conn, now, before, limit, before.mode, status)
    _append_audit(
        conn, now, "budget", "budget.resumed", _agent_of(scope, scope_id),
        {"scope": scope, "scopeId": scope_id, "budgetId": before.id, "graceUsdCents": grace_cents,
         "previousLimitUsdCents": before.limit_usd_cents, "limitUsdCents": limit,
         "previousStatus": before.status, "status": status, "willRepause": will_repause},
    )
    return models.Resumed(budget=budget, will_repause=will_repause)


class SpendJob:
    """A spend waiting for the writer: charged through the batch's _ChargedBudgets."""

    __slots__ = ("fingerprint", "request")

    def __init__(self, request: models.SpendRequest, fingerprint: str) -> None:
        self.request, self.fingerprint = request, fingerprint


class _BudgetRow:
    __slots__ = ("id", "limit", "mode", "scope", "scope_id", "spent", "status")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.id, self.scope, self.scope_id, self.limit, self.spent, self.status, self.mode = row


class _ChargedBudgets:
    """The budget rows one batch's spends charge: each read once, written back once.

    A batch's spends mostly share their scopes, so each scope chain is read at
    its first spend and each charged row written back at the end of the batch,
    or before any other kind of write, which then sees the table as the spends
    left it (bench/spend.py: two UPDATEs and a SELECT fewer a spend).
    """

    def __init__(self) -> None:
        self._chains: dict[tuple[str | None, ...], list[_BudgetRow]] = {}
        self._rows: dict[str, _BudgetRow] = {}  # one object per row, shared by its chains
        self._charged: dict[str, _BudgetRow] = {}

    def chain(self, conn: sqlite3.Connection, ids: tuple[str | None, ...]) -> list[_BudgetRow]:
        """The budgeted scopes of agent, mission, team and tenant ids, in that order."""
        chain = self._chains.get(ids)
        if chain is None:
            rows = conn.execute(
                "SELECT id, scope, scope_id, limit_cents, spent_micros, status, mode"
                " FROM budgets" + _CHAIN_WHERE, ids,
            )
            chain = [self._rows.setdefault(row[0], _BudgetRow(row)) for row in rows]
            chain.sort(key=lambda row: _CHAIN_ORDER[row.scope])
            self._chains[ids] = chain
        return chain

    def charge(self, row: _BudgetRow, spent: int, status: money.Status) -> None:
        row.spent, row.status = spent, status
        self._charged[row.id] = row

    def write_back(self, conn: sqlite3.Connection, now: int) -> None:
        if self._charged:
            conn.executemany(
                "UPDATE budgets SET spent_micros = ?, status = ?, updated_at = ? WHERE id = ?",
                [(row.spent, row.status, now, row.id) for row in self._charged.values()],
            )
        self._chains.clear()
        self._rows.clear()
        self._charged.clear()


def _record_spend(
    conn: sqlite3.Connection, now: int, job: SpendJob, budgets: _ChargedBudgets
) -> models.SpendCharged:
    """The hot path: few statements and no validation here; the request was validated."""
    request, fingerprint = job.request, job.fingerprint
    cost = request.cost_micros
    if request.idempotency_key is not None:
        seen = conn.execute(
            "SELECT id, fingerprint, cost_micros, scopes FROM spends WHERE idempotency_key = ?",
            (request.idempotency_key,),
        ).fetchone()
        if seen is not None:
            if seen[1] != fingerprint:
                raise errors.IdempotencyConflict(
                    "this idempotencyKey was used with a different body", {"spendId": seen[0]}
                )
            return models.SpendCharged(
                spend=models.SpendRecord(id=seen[0], cost_usd_micros=seen[2], duplicate=True),
                scopes=models.SCOPE_STATES.validate_json(seen[3]),
            )
    chain = budgets.chain(
        conn, (request.agent_id, request.mission_id, request.team_id, request.tenant_id)
    )
    charges: list[tuple[_BudgetRow, int, money.Status]] = []
    states: list[models.ScopeState] = []
    events: list[AuditEvent] = []
    for row in chain:
        scope, scope_id, limit, mode = row.scope, row.scope_id, row.limit, row.mode
        spent = row.spent + cost
        if spent > money.MAX_MICROS:  # checked for every scope before anything is written
            raise errors.Unprocessable(f"the {scope} budget's spend total would overflow")
        crossed = money.crossing(row.spent, spent, limit)
        status = money.status_for(spent, limit, mode)
        charges.append((row, spent, status))
        states.append(models.ScopeState(
            scope=scope, scope_id=scope_id, status=status, mode=mode,
            spent_usd_cents=money.micros_to_cents(spent), spent_usd_micros=spent,
            limit_usd_cents=limit, crossed=crossed,
        ))
        if crossed != "none" or (status == "paused" and row.status != "paused"):  # rare
            details = _budget_details(scope, scope_id, row.id, limit, spent)
            if crossed != "none":
                events.append(("budget", f"budget.crossed_{crossed}", request.agent_id, details
                               | {"crossed": crossed, "mode": mode, "taskId": request.task_id}))
            if status == "paused" and row.status != "paused":
                events.append(_paused_event(details))
    for event_type, action, agent_id, details in events:
        _append_audit(conn, now, event_type, action, agent_id, details)
    spend_id = conn.execute(
        "INSERT INTO spends (idempotency_key, fingerprint, agent_id, mission_id, team_id,"
        " tenant_id, cost_micros, task_id, model, input_tokens, output_tokens, scopes,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (request.idempotency_key, fingerprint, request.agent_id, request.mission_id,
         request.team_id, request.tenant_id, cost, request.task_id, request.model,
         request.input_tokens, request.output_tokens,
         models.SCOPE_STATES.dump_json(states, by_alias=True), now),
    ).lastrowid
    assert spend_id is not None
    if charges:
        conn.executemany(
            "INSERT INTO spend_charges (budget_id, spend_id, micros) VALUES (?, ?, ?)",
            [(row.id, spend_id, cost) for row, _, _ in charges],
        )
    for row, spent, status in charges:  # last: a spend that failed above charged nothing
        budgets.charge(row, spent, status)
    return models.SpendCharged(
        spend=models.SpendRecord(id=spend_id, cost_usd_micros=cost,
                                                 duplicate=False),
        scopes=states,
    )


def _principal(row: Iterable[Any]) -> auth.Principal:
    key_id, name, role, leads = row
    return auth.Principal(
        key_id=key_id, name=name, role=role,
        leads=None if leads is None else frozenset(json.loads(leads)),
    )


def _add_key(
    conn: sqlite3.Connection, now: int, principal: auth.Principal, key_hash: str
) -> None:
    leads = None if principal.leads is None else json.dumps(sorted(principal.leads))
    conn.execute(
        "INSERT INTO api_keys (id, name, role, key_hash, leads, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (principal.key_id, principal.name, principal.role, key_hash, leads, now),
    )
    _append_audit(conn, now, "verification", "key.created", None,
                  {"keyId": principal.key_id, "name": principal.name, "role": principal.role,
                   "leads": None if principal.leads is None else sorted(principal.leads)})


def _revoke_key(conn: sqlite3.Connection, now: int, key_id: str) -> None:
    changed = conn.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, key_id)
    ).rowcount
    if not changed:
        raise errors.NotFound(f"no active key {key_id}")
    _append_audit(conn, now, "verification", "key.revoked", None, {"keyId": key_id})


class KeyAdmin:
    """Key administration straight on the database file, for `clawguard keys` (no daemon)."""

    def __init__(self, path: str, busy_timeout_ms: int = 5_000) -> None:
        migrate_database(path, busy_timeout_ms)
        self._conn = connect(path, busy_timeout_ms)

    def close(self) -> None:
        self._conn.close()

    def _transaction(self, job: Job) -> Any:
        try:
            [outcome] = _run_batch(self._conn, [job], int(time.time() * 1000))
        except sqlite3.Error as exc:
            raise errors.StoreUnavailable(f"the database cannot be written: {exc}") from exc
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def create(self, principal: auth.Principal, key_hash: str) -> None:
        self._transaction(lambda conn, now: _add_key(conn, now, principal, key_hash))

    def revoke(self, key_id: str) -> None:
        self._transaction(lambda conn, now: _revoke_key(conn, now, key_id))

    def list(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT id, name, role, leads, created_at, revoked_at FROM api_keys ORDER BY created_at"
        )
        return [
            {"id": key_id, "name": name, "role": role,
             "leads": None if leads is None else json.loads(leads),
             "createdAt": created, "revokedAt": revoked}
            for key_id, name, role, leads, created, revoked in rows
        ]


def _open_read_only(path: str) -> sqlite3.Connection:
    if not Path(path).exists():
        raise errors.StoreUnavailable(f"no database at {path}")
    return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)


def audit_chain(path: str) -> Iterator[audit.Row]:
    """Every audit row in seq order, straight from the file, for verification and export."""
    try:
        conn = _open_read_only(path)
        try:
            cursor = conn.execute(
                "SELECT seq, event_type, action, agent_id, details, created_at, prev_hash, hash"
                " FROM audit ORDER BY seq"
            )
            for row in cursor:
                yield audit.Row(*row)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise errors.StoreUnavailable(f"cannot read the audit log in {path}: {exc}") from exc


# --- approvals (in the writer thread, like everything above) --------------------------


def _approval(row: Iterable[Any]) -> models.Approval:
    (aid, tool, agent, args, reason, status, task, tenant, created, expires, resolved_at,
     resolved_by) = row
    return models.Approval(
        id=aid, tool_name=tool, agent_id=agent, args_summary=args, reason=reason, status=status,
        task_id=task, tenant_id=tenant, created_at=created, expires_at=expires,
        resolved_at=resolved_at, resolved_by=resolved_by,
    )


def _grant(row: Iterable[Any]) -> models.Grant:
    gid, agent, tool, approval_id, created, expires, revoked_at, revoked_by = row
    return models.Grant(
        id=gid, agent_id=agent, tool_name=tool, approval_id=approval_id, created_at=created,
        expires_at=expires, revoked_at=revoked_at, revoked_by=revoked_by,
    )


def _history(row: Iterable[Any]) -> models.HistoryRecord:
    hid, agent, action, tool, details, created = row
    return models.HistoryRecord(
        id=hid, agent_id=agent, action=action, tool_name=tool, details=details,
        created_at=created,
    )


def _live_grant(
    conn: sqlite3.Connection, now: int, agent_id: str, tool_name: str
) -> models.Grant | None:
    row = conn.execute(
        f"SELECT {_GRANT_COLUMNS} FROM approval_grants WHERE agent_id = ? AND tool_name = ?"
        " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
        (agent_id, tool_name, now),
    ).fetchone()
    return None if row is None else _grant(row)


def _open_approval(
    conn: sqlite3.Connection, now: int, new: models.NewApproval, ttl_ms: int
) -> models.Opened:
    grant = _live_grant(conn, now, new.agent_id, new.tool_name)
    if grant is not None:
        _append_audit(
            conn, now, "approval", "approval.sticky_allowed", new.agent_id,
            {"grantId": grant.id, "toolName": new.tool_name, "grantedBy": grant.approval_id,
             "taskId": new.task_id, "tenantId": new.tenant_id},
        )
        return models.Opened(grant=grant, approval=None)
    approval = models.Approval(
        **new.model_dump(), status="pending", created_at=now, expires_at=now + ttl_ms,
        resolved_at=None, resolved_by=None,
    )
    conn.execute(
        f"INSERT INTO approvals ({_APPROVAL_COLUMNS}, requested_by_key)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (approval.id, approval.tool_name, approval.agent_id, approval.args_summary,
         approval.reason, approval.status, approval.task_id, approval.tenant_id, now,
         approval.expires_at, None, None, new.requested_by_key),
    )
    _append_audit(
        conn, now, "approval", "approval.requested", new.agent_id,
        {"approvalId": approval.id, "toolName": approval.tool_name,
         "argsSummary": approval.args_summary, "reason": approval.reason,
         "taskId": approval.task_id, "tenantId": approval.tenant_id,
         "expiresAt": approval.expires_at},
    )
    return models.Opened(grant=None, approval=approval)


def _resolve_approval(
    conn: sqlite3.Connection, now: int, approval_id: str, decision: models.Decision,
    resolved_by: str | None, sticky_ttl_ms: int, decider: auth.Principal,
) -> models.Approval:
    asked = conn.execute(
        "SELECT agent_id, requested_by_key FROM approvals WHERE id = ?", (approval_id,)
    ).fetchone()
    if asked is None:
        raise errors.NotFound(f"no approval {approval_id}")
    refusal = decider.refusal_to_decide(*asked)
    if refusal is not None:
        raise errors.Forbidden(refusal, {"approvalId": approval_id})
    # The one conditional update that makes a decision: only a pending, unexpired row.
    changed = conn.execute(
        "UPDATE approvals SET status = ?, resolved_at = ?, resolved_by = ?, resolved_by_key = ?,"
        " resolved_by_role = ? WHERE id = ? AND status = 'pending' AND expires_at > ?",
        (decision, now, resolved_by, decider.key_id, decider.role, approval_id, now),
    ).rowcount
    row = conn.execute(
        f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)
    ).fetchone()
    approval = _approval(row)
    if changed == 0:
        status = approval.as_of(now).status
        raise errors.Conflict(
            f"approval {approval_id} is already {status}",
            {"approvalId": approval_id, "status": status},
        )
    grant = None
    if decision == "allow_always":
        grant = _create_grant(conn, now, approval, sticky_ttl_ms)
    _insert_history(
        conn, now, approval.agent_id, _HISTORY_ACTION[decision], approval.tool_name,
        audit.canonical({"approvalId": approval_id, "resolvedBy": resolved_by}),
    )
    _append_audit(
        conn, now, "approval", "approval.resolved", approval.agent_id,
        {"approvalId": approval_id, "toolName": approval.tool_name, "decision": decision,
         "resolvedBy": resolved_by, "resolvedByKey": decider.key_id,
         "resolvedByRole": decider.role, "taskId": approval.task_id,
         "grantId": None if grant is None else grant.id,
         "grantExpiresAt": None if grant is None else grant.expires_at},
    )
    return approval


def _create_grant(
    conn: sqlite3.Connection, now: int, approval: models.Approval, sticky_ttl_ms: int
) -> models.Grant:
    grant = models.Grant(
        id="grt_" + secrets.token_hex(8), agent_id=approval.agent_id,
        tool_name=approval.tool_name, approval_id=approval.id, created_at=now,
        expires_at=now + sticky_ttl_ms if sticky_ttl_ms > 0 else None, revoked_at=None,
        revoked_by=None,
    )
    # One unrevoked grant per pair: a new one (e.g. after the old expired) supersedes it.
    conn.execute(
        "UPDATE approval_grants SET revoked_at = ?, revoked_by = ? WHERE agent_id = ?"
        " AND tool_name = ? AND revoked_at IS NULL",
        (now, "superseded:" + grant.id, grant.agent_id, grant.tool_name),
    )
    conn.execute(
        f"INSERT INTO approval_grants ({_GRANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
        (grant.id, grant.agent_id, grant.tool_name, grant.approval_id, now, grant.expires_at),
    )
    return grant


def _expire_approvals(conn: sqlite3.Connection, now: int, limit: int) -> list[models.Approval]:
    rows = conn.execute(
        f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending'"
        " AND expires_at <= ? ORDER BY expires_at LIMIT ?",
        (now, limit),
    ).fetchall()
    expired = []
    for row in rows:
        approval = _approval(row).as_of(now)
        conn.execute(
            "UPDATE approvals SET status = 'expired', resolved_at = expires_at"
            " WHERE id = ? AND status = 'pending'",
            (approval.id,),
        )
        _append_audit(
            conn, now, "approval", "approval.expired", approval.agent_id,
            {"approvalId": approval.id, "toolName": approval.tool_name,
             "expiresAt": approval.expires_at, "taskId": approval.task_id},
        )
        expired.append(approval)
    return expired


def _revoke_grant(
    conn: sqlite3.Connection, now: int, grant_id: str, revoked_by: str | None,
    revoker: auth.Principal,
) -> models.Grant:
    row = conn.execute(
        f"SELECT {_GRANT_COLUMNS} FROM approval_grants WHERE id = ?", (grant_id,)
    ).fetchone()
    if row is None:
        raise errors.NotFound(f"no grant {grant_id}")
    grant = _grant(row)
    if not revoker.may_decide_for(grant.agent_id):
        raise errors.Forbidden(f"key {revoker.name} may revoke only grants of agents it leads")
    if grant.revoked_at is not None:
        raise errors.Conflict(
            f"grant {grant_id} is already revoked",
            {"grantId": grant_id, "revokedAt": grant.revoked_at},
        )
    conn.execute(
        "UPDATE approval_grants SET revoked_at = ?, revoked_by = ? WHERE id = ?",
        (now, revoked_by, grant_id),
    )
    _append_audit(
        conn, now, "approval", "approval.grant_revoked", grant.agent_id,
        {"grantId": grant_id, "toolName": grant.tool_name, "revokedBy": revoked_by,
         "revokedByKey": revoker.key_id, "grantedBy": grant.approval_id},
    )
    return grant.model_copy(update={"revoked_at": now, "revoked_by": revoked_by})


def _insert_history(
    conn: sqlite3.Connection, now: int, agent_id: str, action: models.HistoryAction,
    tool_name: str, details: str | None,
) -> models.HistoryRecord:
    history_id = conn.execute(
        "INSERT INTO approval_history (agent_id, action, tool_name, details, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (agent_id, action, tool_name, details, now),
    ).lastrowid
    assert history_id is not None
    return models.HistoryRecord(
        id=history_id, agent_id=agent_id, action=action, tool_name=tool_name, details=details,
        created_at=now,
    )


def _append_history(
    conn: sqlite3.Connection, now: int, agent_id: str, action: models.HistoryAction,
    tool_name: str, details: str | None,
) -> models.HistoryRecord:
    record = _insert_history(conn, now, agent_id, action, tool_name, details)
    _append_audit(
        conn, now, "approval", "approval.history_recorded", agent_id,
        {"historyId": record.id, "action": action, "toolName": tool_name},
    )
    return record


def ledger_check(path: str) -> list[tuple[str, int, int]]:
    """(budget id, spent, sum of its charges) for every budget row: the invariant, for tests."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute(
            "SELECT b.id, b.spent_micros, coalesce(sum(c.micros), 0) FROM budgets b"
            " LEFT JOIN spend_charges c ON c.budget_id = b.id GROUP BY b.id"
        ))
    finally:
        conn.close()
