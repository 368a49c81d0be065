"""The SQLite store: the one module that speaks SQL to SQLite and owns its exceptions.

Writes go through one writer task. It drains a queue of jobs and runs each
batch as ONE `BEGIN IMMEDIATE ... COMMIT` in one call into the database
thread, because the hop between the event loop and that thread, not SQLite,
is what a spend costs. Each job runs inside its own SAVEPOINT, so a job that
fails leaves the others in its batch untouched; no caller hears back before
its batch is committed. Reads use a separate aiosqlite connection: in WAL
mode they never wait for the writer.
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
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[Any]] | None] = asyncio.Queue()
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

    async def _write(self, job: Job) -> Any:
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
                assert self._writer_conn is not None
                outcomes = await loop.run_in_executor(
                    self._thread, _run_batch, self._writer_conn, [job for job, _ in batch],
                    self._clock(),
                )
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
        result: models.SpendCharged = await self._write(
            lambda conn, now: _record_spend(conn, now, request, fingerprint)
        )
        return result


# --- the database thread --------------------------------------------------------
# Everything below runs in the writer thread, inside the batch transaction.


def _run_batch(conn: sqlite3.Connection, jobs: list[Job], now: int) -> list[Any]:
    """One transaction for the whole batch; each job all-or-nothing within its savepoint."""
    outcomes: list[Any] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for job in jobs:
            conn.execute("SAVEPOINT job")
            try:
                outcomes.append(job(conn, now))
            except Exception as exc:
                conn.execute("ROLLBACK TO job")
                if isinstance(exc, sqlite3.Error):
                    exc = errors.StoreUnavailable(f"the database cannot be written: {exc}")
                outcomes.append(exc)
            conn.execute("RELEASE job")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


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


def _save_budget(
    conn: sqlite3.Connection, now: int, before: models.Budget, limit: int, mode: money.Mode,
    status: money.Status, spent_micros: int | None = None,
) -> models.Budget:
    """Write a budget row's new state, auditing the moment it becomes paused."""
    spent = before.spent_usd_micros if spent_micros is None else spent_micros
    conn.execute(
        "UPDATE budgets SET limit_cents = ?, spent_micros = ?, status = ?, mode = ?,"
        " updated_at = ? WHERE id = ?",
        (limit, spent, status, mode, now, before.id),
    )
    if status == "paused" and before.status != "paused":
        _append_audit(
            conn, now, "cap_hit", "budget.paused", _agent_of(before.scope, before.scope_id),
            {"scope": before.scope, "scopeId": before.scope_id, "budgetId": before.id,
             "limitUsdCents": limit, "spentUsdMicros": spent},
        )
    return before.model_copy(update={
        "limit_usd_cents": limit, "spent_usd_micros": spent,
        "spent_usd_cents": money.micros_to_cents(spent), "status": status, "mode": mode,
        "updated_at": now,
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


def _record_spend(
    conn: sqlite3.Connection, now: int, request: models.SpendRequest, fingerprint: str
) -> models.SpendCharged:
    """The hot path: few statements and no validation here; the request was validated."""
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
    rows = conn.execute(
        "SELECT id, scope, scope_id, limit_cents, spent_micros, status, mode FROM budgets"
        + _CHAIN_WHERE,
        (request.agent_id, request.mission_id, request.team_id, request.tenant_id),
    ).fetchall()
    rows.sort(key=lambda row: _CHAIN_ORDER[row[1]])
    updates, states = [], []
    events: list[tuple[models.EventType, str, str | None, dict[str, Any]]] = []
    for budget_id, scope, scope_id, limit, before, old_status, mode in rows:
        spent = before + cost
        if spent > money.MAX_MICROS:  # checked for every scope before anything is written
            raise errors.Unprocessable(f"the {scope} budget's spend total would overflow")
        crossed = money.crossing(before, spent, limit)
        status = money.status_for(spent, limit, mode)
        updates.append((spent, status, now, budget_id))
        states.append(models.ScopeState(
            scope=scope, scope_id=scope_id, status=status, mode=mode,
            spent_usd_cents=money.micros_to_cents(spent), spent_usd_micros=spent,
            limit_usd_cents=limit, crossed=crossed,
        ))
        details = {"scope": scope, "scopeId": scope_id, "budgetId": budget_id,
                   "limitUsdCents": limit, "spentUsdMicros": spent}
        if crossed != "none":
            events.append(("budget", f"budget.crossed_{crossed}", request.agent_id,
                           details | {"crossed": crossed, "mode": mode, "taskId": request.task_id}))
        if status == "paused" and old_status != "paused":
            events.append(("cap_hit", "budget.paused", _agent_of(scope, scope_id), details))
    if updates:
        conn.executemany(
            "UPDATE budgets SET spent_micros = ?, status = ?, updated_at = ? WHERE id = ?", updates
        )
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
    if updates:
        conn.executemany(
            "INSERT INTO spend_charges (budget_id, spend_id, micros) VALUES (?, ?, ?)",
            [(budget_id, spend_id, cost) for *_, budget_id in updates],
        )
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
