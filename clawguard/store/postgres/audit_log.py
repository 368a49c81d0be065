"""The audit log's rows on PostgreSQL: appended as one chain across instances; read back whole.

A transaction gathers its audit events and appends them last (`append`):
it locks the single `audit_head` row, chains the events to it and moves it.
The head is the last lock any transaction takes, so it never waits for a
row while holding the head, and instances never deadlock on it; the lock
also makes seq one gapless order across every instance. The head's update
also notifies every instance that the chain grew.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence

import psycopg

from clawguard.core import audit, errors
from clawguard.store.postgres import connection, listener

# Set while a batch of writes runs (store/postgres/batch.py): a job's events are held here
# and the batch appends every job's at its end, so the head is still the last lock taken.
deferred: contextvars.ContextVar[list[audit.Event] | None] = contextvars.ContextVar(
    "clawguard_deferred_audit", default=None)


async def append(conn: connection.Connection, now: int, events: Sequence[audit.Event]) -> None:
    """Chain `events` after the head, in order (audit.next_row masks their secrets)."""
    if not events:
        return
    held = deferred.get()
    if held is not None:
        held.extend(events)
        return
    cursor = await conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
    head = await cursor.fetchone()
    assert head is not None, "migration 0001 writes the head row"
    last: tuple[int, str] | None = (head[0], head[1]) if head[0] else None
    rows = []
    for event in events:
        row = audit.next_row(last, event, now)
        rows.append((row.seq, row.event_type, row.action, row.agent_id, row.details_json,
                     row.created_at, row.prev_hash, row.hash))
        last = (row.seq, row.hash)
    # One statement for every row (a batch of decisions appends dozens): columns as arrays.
    await conn.execute(
        "INSERT INTO audit (seq, event_type, action, agent_id, details, created_at, prev_hash,"
        " hash) SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[],"
        " %b::text[], %b::bigint[], %b::text[], %b::text[])",
        [list(column) for column in zip(*rows, strict=True)],
    )
    assert last is not None
    # The notification rides on the head's UPDATE (no extra round trip) and leaves at the
    # commit: every instance's event stream hears that the chain grew (store.watch_audit).
    await conn.execute(
        "UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1"
        " RETURNING pg_notify('clawguard_approvals', %s)",
        (*last, f"{listener.AUDIT_PREFIX}{last[0]}"),
    )


def audit_chain(url: str) -> Iterator[audit.Row]:
    """Every audit row in seq order, streamed by a server-side cursor, for verify and export."""
    try:
        with psycopg.connect(connection.conninfo(url)) as conn, conn.cursor(name="chain") as cur:
            cur.itersize = 2_000
            cur.execute(
                "SELECT seq, event_type, action, agent_id, details, created_at, prev_hash, hash"
                " FROM audit ORDER BY seq"
            )
            for row in cur:
                yield audit.Row(*row)
    except psycopg.Error as exc:
        raise errors.StoreUnavailable(
            f"cannot read the audit log: {connection.unavailable(exc, 'read').message}"
        ) from exc
