"""Webhook deliveries on PostgreSQL: the audit chain scanned into the outbox, claimed, settled.

Several instances deliver from one database. A scan locks its webhook's cursor
row, so two instances never queue the same rows twice (and the key (webhook,
seq) would refuse it anyway); a claim takes due rows `FOR UPDATE SKIP LOCKED`
and leases them, so each is tried by one instance at a time; a lease left by an
instance that died comes due again when it lapses. Audit seqs are handed out
under the audit head's lock, held to commit, so rows become visible in seq
order and a cursor never skips one still being written.
"""

from __future__ import annotations

from collections.abc import Collection

from clawguard.core import webhooks
from clawguard.store import tables
from clawguard.store.postgres import connection


async def queue(conn: connection.Connection, now: int, webhook: str, names: Collection[str],
                limit: int) -> int:
    """As the SQLite engine's: up to `limit` rows scanned past the cursor; a webhook seen
    for the first time starts at the head."""
    cur = await conn.execute(
        "SELECT seq FROM notify_cursors WHERE webhook = %s FOR UPDATE", (webhook,)
    )
    cursor = await cur.fetchone()
    if cursor is None:
        await conn.execute(
            "INSERT INTO notify_cursors (webhook, seq) SELECT %s, seq FROM audit_head"
            " WHERE id = 1 ON CONFLICT (webhook) DO NOTHING", (webhook,)
        )
        return 0
    cur = await conn.execute(
        "SELECT seq, action, created_at FROM audit WHERE seq > %s ORDER BY seq LIMIT %s",
        (cursor[0], limit),
    )
    rows = await cur.fetchall()
    if not rows:
        return 0
    due = set(webhooks.wanted(((seq, action) for seq, action, _ in rows), names))
    queued = [(webhook, seq, created_at, now) for seq, _, created_at in rows if seq in due]
    if queued:
        await cur.executemany(
            "INSERT INTO notify_deliveries (webhook, seq, created_at, next_attempt_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (webhook, seq) DO NOTHING", queued,
        )
    await conn.execute(
        "UPDATE notify_cursors SET seq = %s WHERE webhook = %s", (rows[-1][0], webhook)
    )
    return len(rows)


async def claim(conn: connection.Connection, now: int, webhook: str, lease_ms: int,
                limit: int) -> list[webhooks.Delivery]:
    cur = await conn.execute(
        "WITH due AS (SELECT webhook, seq FROM notify_deliveries"
        " WHERE webhook = %(webhook)s AND failed_at IS NULL AND next_attempt_at <= %(now)s"
        " ORDER BY next_attempt_at, seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
        " UPDATE notify_deliveries d SET next_attempt_at = %(until)s FROM due, audit a"
        " WHERE d.webhook = due.webhook AND d.seq = due.seq AND a.seq = d.seq"
        f" RETURNING {tables.DELIVERY_COLUMNS}",
        {"webhook": webhook, "now": now, "limit": limit, "until": now + lease_ms},
    )
    rows = await cur.fetchall()
    return sorted((tables.delivery_from_row(webhook, row) for row in rows),
                  key=lambda delivery: delivery.seq)


async def delivered(conn: connection.Connection, webhook: str, seq: int) -> None:
    await conn.execute(
        "DELETE FROM notify_deliveries WHERE webhook = %s AND seq = %s", (webhook, seq)
    )


async def failed(conn: connection.Connection, now: int, webhook: str, seq: int, error: str,
                 retry_at: int | None) -> None:
    await conn.execute(
        "UPDATE notify_deliveries SET attempts = attempts + 1, last_error = %(error)s,"
        " next_attempt_at = coalesce(%(retry)s::bigint, next_attempt_at),"
        " failed_at = CASE WHEN %(retry)s::bigint IS NULL THEN %(now)s::bigint END"
        " WHERE webhook = %(webhook)s AND seq = %(seq)s",
        {"error": error[:1000], "retry": retry_at, "now": now, "webhook": webhook, "seq": seq},
    )
