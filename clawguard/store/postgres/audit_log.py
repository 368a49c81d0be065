"""The audit log's rows on PostgreSQL: appended as one chain across instances; read back whole.

A transaction gathers its audit events and appends them last (`append`):
it locks the single `audit_head` row, chains the events to it and moves it.
The head is the last lock any transaction takes, so it never waits for a
row while holding the head, and instances never deadlock on it; the lock
also makes seq one gapless order across every instance.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from clawguard.core import audit, errors, records, redact
from clawguard.store.postgres import connection

AuditEvent = tuple[records.EventType, str, str | None, dict[str, Any]]


async def append(conn: connection.Connection, now: int, events: Sequence[AuditEvent]) -> None:
    """Chain `events` (secrets in their details masked first) after the head, in order."""
    if not events:
        return
    cursor = await conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
    head = await cursor.fetchone()
    assert head is not None, "migration 0001 writes the head row"
    seq, prev_hash = head
    rows = []
    for event_type, action, agent_id, details in events:
        seq += 1
        details_json = audit.canonical(redact.redact(details))
        digest = audit.row_hash(prev_hash, seq, event_type, action, agent_id, details_json, now)
        rows.append((seq, event_type, action, agent_id, details_json, now, prev_hash, digest))
        prev_hash = digest
    await cursor.executemany(
        "INSERT INTO audit (seq, event_type, action, agent_id, details, created_at, prev_hash,"
        " hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        rows,
    )
    await conn.execute(
        "UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", (seq, prev_hash)
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
