"""Holds on PostgreSQL, inside a write transaction: place, commit (a spend), release, expire.

Load, decide with clawguard.core.holds, apply: no rule lives here. A
placement's chain of budget rows is locked FOR UPDATE in the spend path's order
(`scope_rank, scope_id`) before it sums the live holds, so placements and
spends on one budget form one serial order across instances and two
instances never both reserve a cap's last room. Placements, commits and
releases share batches (`run_steps`): a batch first locks the budget rows of
every chain its steps name, in that order and in one statement, then runs each
step in its savepoint (store/postgres/batch.py), so a step takes no budget row
it waits for; then a commit locks its hold row, then the audit head. A release
or an expiry locks hold rows only. No transaction takes them in another order.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clawguard.core import budgets, commands, errors, holds, records
from clawguard.store import tables
from clawguard.store.postgres import batch, connection
from clawguard.store.postgres import budgets as budget_rows


@dataclass(frozen=True, slots=True)
class Step:
    """A placement, commit or release waiting for its batch: the chain whose budget rows it
    locks (None: a release locks none), and the job that makes it."""

    chain: commands.ScopeIds | None
    job: batch.Job


async def run_steps(conn: connection.Connection, now: int, steps: Sequence[Step]
                    ) -> list[Any]:
    """Each step's result or domain error, in one transaction (batch.run_jobs), every chain's
    budget rows locked first."""
    await budget_rows.lock_chains(conn, [s.chain for s in steps if s.chain is not None])
    return await batch.run_jobs(conn, now, [step.job for step in steps])


async def _locked(conn: connection.Connection, hold_id: str) -> records.Hold | None:
    cursor = await conn.execute(
        f"SELECT {tables.HOLD_COLUMNS} FROM holds WHERE id = %s FOR UPDATE", (hold_id,)
    )
    row = await cursor.fetchone()
    return None if row is None else tables.hold_from_row(row)


# What a placement reads, in one statement (one round trip, not three): the hold its key
# already placed (a replay), its chain's budget rows, which run_steps has locked, and what
# live holds reserve on each of their scopes.
_PLACEMENT = (
    f"SELECT (SELECT json_build_array({tables.HOLD_COLUMNS}, fingerprint) FROM holds"
    " WHERE idempotency_key = %(key)s),"
    f" (SELECT json_agg(json_build_array({budgets.LEVEL_COLUMNS})) FROM budgets"
    + budget_rows.CHAIN_WHERE + "),"
    " (SELECT json_agg(json_build_array(scope, scope_id, micros))"
    " FROM (" + budget_rows.HELD_IN_CHAIN + ") AS held(scope, scope_id, micros))"
)


async def place_hold(
    conn: connection.Connection, now: int, request: commands.HoldRequest, fingerprint: str,
    key: str, ttl_ms: int,
) -> records.Hold:
    cursor = await conn.execute(
        _PLACEMENT, budget_rows.chain_params(request) | {"key": key, "now": now})
    loaded = await cursor.fetchone()
    assert loaded is not None
    seen, levels, reserved = loaded
    if seen is not None:
        stored = holds.StoredHold(tables.hold_from_row(seen[:13]), seen[13])
        return holds.replay(stored, fingerprint, now)
    chain = budgets.in_chain_order([budgets.Level(*row) for row in levels or ()])
    held = {scope: micros for (scope, _), micros in
            tables.held_by_scope(reserved or ()).items()}
    hold = holds.place(chain, held, request, now, ttl_ms, "hld_" + secrets.token_hex(8))
    # The same key placed by another instance since our read: UniqueViolation, and the
    # transaction runs again and replays it.
    await conn.execute(
        f"INSERT INTO holds ({tables.HOLD_COLUMNS}, idempotency_key, fingerprint)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (*tables.hold_values(hold), key, fingerprint),
    )
    return hold


async def commit_hold(
    conn: connection.Connection, now: int, hold_id: str, request: commands.SpendRequest,
    fingerprint: str,
) -> records.SpendCharged:
    hold = await _locked(conn, hold_id)
    key = holds.commit_key(hold_id)
    if holds.commit(hold, hold_id, now) == "replay":
        cursor = await conn.execute(
            "SELECT id, fingerprint, cost_micros, scopes FROM spends WHERE idempotency_key = %s",
            (key,),
        )
        seen = await cursor.fetchone()
        assert seen is not None, "a committed hold's spend is in the ledger"
        return budgets.replay(budgets.StoredSpend(*seen), fingerprint)
    assert hold is not None
    [outcome] = await budget_rows.record_spends(
        conn, now, [budget_rows.Spend(request, fingerprint, key)]
    )
    if isinstance(outcome, errors.ClawguardError):
        raise outcome
    done = holds.committed(hold, outcome.spend.id, now)
    await conn.execute(
        "UPDATE holds SET status = %s, resolved_at = %s, spend_id = %s WHERE id = %s",
        (done.status, done.resolved_at, done.spend_id, hold_id),
    )
    return outcome


async def release_hold(conn: connection.Connection, now: int, hold_id: str) -> records.Hold:
    released = holds.release(await _locked(conn, hold_id), hold_id, now)
    await conn.execute("UPDATE holds SET status = %s, resolved_at = %s WHERE id = %s",
                       (released.status, released.resolved_at, hold_id))
    return released


async def expire_holds(conn: connection.Connection, now: int, limit: int) -> int:
    """Write `expired` on up to `limit` holds already past expiry (see the SQLite twin)."""
    cursor = await conn.execute(
        "UPDATE holds SET status = 'expired', resolved_at = expires_at WHERE id IN"
        " (SELECT id FROM holds WHERE status = 'held' AND expires_at <= %s"
        " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)",
        (now, limit),
    )
    return cursor.rowcount
