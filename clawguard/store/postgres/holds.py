"""Holds on PostgreSQL: placements, commits (a spend) and releases in set-based batches, and
the sweep of expired holds.

Load, decide with clawguard.core.holds, apply: no rule lives here. A batch
(`run_steps`) takes what every step needs in two statements: first every
budget row of every chain its steps name, locked FOR UPDATE in the spend
path's order (`scope_rank, scope_id`), with the commits' ledger keys and ids
(budgets.Charging); then the hold rows its commits and releases name, locked
in id order, the holds already under its placements' keys, and what live
holds reserve on their scopes. Each step is then decided in turn, in memory,
against what the steps before it left (a placement after a release sees the
room it freed), and the batch writes everything in a few statements, the
audit rows last. Placements and spends on one budget so form one serial
order across instances (two never both reserve a cap's last room), and no
transaction takes budget rows, hold rows and the audit head in another order.
A step the rules refuse gets its error and writes nothing; a key another
instance placed since the load fails the INSERT, and the batch runs again
and replays it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clawguard.core import budgets, commands, errors, holds, records
from clawguard.store import tables
from clawguard.store.postgres import audit_log, connection
from clawguard.store.postgres import budgets as budget_rows


@dataclass(frozen=True, slots=True)
class Place:
    request: commands.HoldRequest
    fingerprint: str
    key: str
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class Commit:
    hold_id: str
    request: commands.SpendRequest  # the spend it records (core.holds.spend_of)
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Release:
    hold_id: str


Step = Place | Commit | Release

# The hold rows a batch's commits and releases name, locked in id order; the holds under
# its placements' keys; what live holds reserve on each scope its placements name. Arrays
# go in binary (%b), as the spend batch's do: a %s list of text is escaped element by
# element (the INSERT of 32 placements: 460-570 us of dumping against 130-190).
_HOLDS = (
    f"SELECT (SELECT json_agg(json_build_array({tables.HOLD_COLUMNS}))"
    f" FROM (SELECT {tables.HOLD_COLUMNS} FROM holds WHERE id = ANY(%(hold_ids)b::text[])"
    " ORDER BY id FOR UPDATE) AS locked),"
    f" (SELECT json_agg(json_build_array(idempotency_key, fingerprint, {tables.HOLD_COLUMNS}))"
    " FROM holds WHERE idempotency_key = ANY(%(keys)b::text[])),"
    " (SELECT json_agg(json_build_array(scope, scope_id, micros))"
    " FROM (" + budget_rows.HELD_ON + ") AS held(scope, scope_id, micros))"
)
_INSERT = (
    f"INSERT INTO holds ({tables.HOLD_COLUMNS}, idempotency_key, fingerprint)"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[],"
    " %b::text[], %b::bigint[], %b::text[], %b::bigint[], %b::bigint[], %b::bigint[],"
    " %b::bigint[], %b::text[], %b::text[], %b::text[])"
)
_UPDATE = (
    "UPDATE holds AS h SET status = u.status, resolved_at = u.resolved_at,"
    " spend_id = u.spend_id FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::bigint[])"
    " AS u(id, status, resolved_at, spend_id) WHERE h.id = u.id"
)


class _Batch:
    """The holds of one batch as its steps leave them, and what they write."""

    def __init__(self, charging: budget_rows.Charging, loaded: Sequence[Any]) -> None:
        locked, keyed, reserved = loaded
        self.charging = charging
        self.latest = {hold.id: hold for hold in map(tables.hold_from_row, locked or ())}
        self.keyed = {key: holds.StoredHold(tables.hold_from_row(row), fingerprint)
                      for key, fingerprint, *row in keyed or ()}
        self.held = tables.held_by_scope(reserved or ())
        self.inserts: list[tuple[Any, ...]] = []
        self.updates: dict[str, records.Hold] = {}

    def step(self, step: Step, now: int) -> Any:
        if isinstance(step, Place):
            return self.place(step, now)
        if isinstance(step, Commit):
            return self.commit(step, now)
        return self.release(step, now)

    def place(self, step: Place, now: int) -> records.Hold:
        seen = self.keyed.get(step.key)
        if seen is not None:
            latest = self.latest.get(seen.hold.id, seen.hold)
            return holds.replay(holds.StoredHold(latest, seen.fingerprint), step.fingerprint,
                                now)
        held = {scope: self.held.get((scope, scope_id), 0)
                for scope, scope_id in budget_rows.named_scopes(step.request)}
        hold = holds.place(self.charging.chain(step.request), held, step.request, now,
                           step.ttl_ms, "hld_" + secrets.token_hex(8))
        self._reserve(hold, hold.amount_usd_micros)
        self.keyed[step.key] = holds.StoredHold(hold, step.fingerprint)
        self.latest[hold.id] = hold
        self.inserts.append((*tables.hold_values(hold), step.key, step.fingerprint))
        return hold

    def commit(self, step: Commit, now: int) -> records.SpendCharged:
        hold = self.latest.get(step.hold_id)
        key = holds.commit_key(step.hold_id)
        if holds.commit(hold, step.hold_id, now) == "replay":
            stored = self.charging.stored(key)
            assert stored is not None, "a committed hold's spend is in the ledger"
            return budgets.replay(stored, step.fingerprint)
        assert hold is not None
        outcome = self.charging.charge(budget_rows.Spend(step.request, step.fingerprint, key),
                                       now)
        if isinstance(outcome, errors.ClawguardError):
            raise outcome
        self._resolve(hold, holds.committed(hold, outcome.spend.id, now))
        return outcome

    def release(self, step: Release, now: int) -> records.Hold:
        hold = self.latest.get(step.hold_id)
        released = holds.release(hold, step.hold_id, now)
        assert hold is not None
        self._resolve(hold, released)
        return released

    def _resolve(self, hold: records.Hold, resolved: records.Hold) -> None:
        self._reserve(hold, -hold.amount_usd_micros)  # it was live: it counts no more
        self.latest[hold.id] = self.updates[hold.id] = resolved

    def _reserve(self, hold: records.Hold, micros: int) -> None:
        for scope in budget_rows.named_scopes(hold):
            self.held[scope] = self.held.get(scope, 0) + micros

    async def write(self, conn: connection.Connection, now: int) -> None:
        """The ledger first (a committed hold names its spend), then the holds."""
        await self.charging.write(conn, now)
        if self.inserts:
            await conn.execute(_INSERT, [list(c) for c in zip(*self.inserts, strict=True)])
        if self.updates:
            done = list(self.updates.values())
            await conn.execute(_UPDATE, ([h.id for h in done], [h.status for h in done],
                                         [h.resolved_at for h in done],
                                         [h.spend_id for h in done]))


async def run_steps(conn: connection.Connection, now: int, steps: Sequence[Step]
                    ) -> list[Any]:
    """Each step's result or domain error, in order, in the open transaction."""
    commits = [step for step in steps if isinstance(step, Commit)]
    charging = await budget_rows.Charging.load(
        conn, [step.request for step in steps if not isinstance(step, Release)],
        [holds.commit_key(step.hold_id) for step in commits], len(commits))
    places = [step for step in steps if isinstance(step, Place)]
    cursor = await conn.execute(_HOLDS, {
        "hold_ids": sorted({step.hold_id for step in steps if not isinstance(step, Place)}),
        "keys": [place.key for place in places], "now": now,
        **budget_rows.held_params(place.request for place in places),
    })
    loaded = await cursor.fetchone()
    assert loaded is not None
    batch = _Batch(charging, loaded)
    outcomes: list[Any] = []
    for step in steps:
        try:
            outcomes.append(batch.step(step, now))
        except errors.ClawguardError as exc:
            outcomes.append(exc)
    await batch.write(conn, now)
    await audit_log.append(conn, now, charging.events)
    return outcomes


async def expire_holds(conn: connection.Connection, now: int, limit: int) -> int:
    """Write `expired` on up to `limit` holds already past expiry (see the SQLite twin)."""
    cursor = await conn.execute(
        "UPDATE holds SET status = 'expired', resolved_at = expires_at WHERE id IN"
        " (SELECT id FROM holds WHERE status = 'held' AND expires_at <= %s"
        " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)",
        (now, limit),
    )
    return cursor.rowcount
