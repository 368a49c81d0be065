"""Holds inside a write transaction: place, commit (a spend), release, expire.

Load, decide with clawguard.core.holds, apply: no rule lives here. The one
writer serialises every placement, so the spend and holds a placement is
decided on are those it commits against.
"""

from __future__ import annotations

import secrets
import sqlite3

from clawguard.core import budgets, commands, holds, records
from clawguard.store import tables
from clawguard.store.sqlite import budgets as budget_rows


def _find(conn: sqlite3.Connection, hold_id: str) -> records.Hold | None:
    row = conn.execute(f"SELECT {tables.HOLD_COLUMNS} FROM holds WHERE id = ?",
                       (hold_id,)).fetchone()
    return None if row is None else tables.hold_from_row(row)


def place_hold(
    conn: sqlite3.Connection, now: int, request: commands.HoldRequest, fingerprint: str,
    key: str, ttl_ms: int,
) -> records.Hold:
    seen = conn.execute(f"SELECT {tables.HOLD_COLUMNS}, fingerprint FROM holds"
                        " WHERE idempotency_key = ?", (key,)).fetchone()
    if seen is not None:
        stored = holds.StoredHold(tables.hold_from_row(seen[:13]), seen[13])
        return holds.replay(stored, fingerprint, now)
    ids = (request.agent_id, request.mission_id, request.team_id, request.tenant_id)
    chain = budgets.in_chain_order([
        budgets.Level(*row) for row in conn.execute(
            f"SELECT {budgets.LEVEL_COLUMNS} FROM budgets" + budget_rows.CHAIN_WHERE, ids)
    ])
    held = {scope: micros for (scope, _), micros in tables.held_by_scope(
        conn.execute(budget_rows.HELD_IN_CHAIN, (*ids, now))).items()}
    hold = holds.place(chain, held, request, now, ttl_ms, "hld_" + secrets.token_hex(8))
    conn.execute(
        f"INSERT INTO holds ({tables.HOLD_COLUMNS}, idempotency_key, fingerprint)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*tables.hold_values(hold), key, fingerprint),
    )
    return hold


def commit_hold(
    conn: sqlite3.Connection, now: int, hold_id: str, request: commands.SpendRequest,
    fingerprint: str,
) -> records.SpendCharged:
    hold = _find(conn, hold_id)
    key = holds.commit_key(hold_id)
    if holds.commit(hold, hold_id, now) == "replay":
        seen = conn.execute(
            "SELECT id, fingerprint, cost_micros, scopes FROM spends WHERE idempotency_key = ?",
            (key,),
        ).fetchone()
        assert seen is not None, "a committed hold's spend is in the ledger"
        return budgets.replay(budgets.StoredSpend(*seen), fingerprint)
    assert hold is not None
    charged = budget_rows.ChargedBudgets()
    spent = budget_rows.record_spend(
        conn, now, budget_rows.SpendJob(request, fingerprint, key), charged)
    charged.write_back(conn, now)
    done = holds.committed(hold, spent.spend.id, now)
    conn.execute("UPDATE holds SET status = ?, resolved_at = ?, spend_id = ? WHERE id = ?",
                 (done.status, done.resolved_at, done.spend_id, hold_id))
    return spent


def release_hold(conn: sqlite3.Connection, now: int, hold_id: str) -> records.Hold:
    released = holds.release(_find(conn, hold_id), hold_id, now)
    conn.execute("UPDATE holds SET status = ?, resolved_at = ? WHERE id = ?",
                 (released.status, released.resolved_at, hold_id))
    return released


def expire_holds(conn: sqlite3.Connection, now: int, limit: int) -> int:
    """Write `expired` on up to `limit` holds already past expiry (they stopped counting then:
    records.Hold.as_of), resolved at their expiry."""
    return conn.execute(
        "UPDATE holds SET status = 'expired', resolved_at = expires_at WHERE id IN"
        " (SELECT id FROM holds WHERE status = 'held' AND expires_at <= ? LIMIT ?)",
        (now, limit),
    ).rowcount
