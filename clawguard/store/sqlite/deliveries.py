"""Webhook deliveries on SQLite: the audit chain scanned into the outbox, claimed, settled.

Each function runs inside the one writer's transaction, so a scan, a claim or an
outcome is all or nothing and nothing interleaves with it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

from clawguard.core import webhooks
from clawguard.store import tables


def queue(conn: sqlite3.Connection, now: int, webhook: str, names: Collection[str],
          limit: int) -> int:
    """Scan up to `limit` audit rows past the webhook's cursor into deliveries due now and
    move the cursor past them; how many rows were scanned. A webhook seen for the first
    time starts at the head: it is told what happens from now on, not the history."""
    cursor = conn.execute(
        "SELECT seq FROM notify_cursors WHERE webhook = ?", (webhook,)
    ).fetchone()
    if cursor is None:
        conn.execute(
            "INSERT INTO notify_cursors (webhook, seq)"
            " SELECT ?, coalesce(max(seq), 0) FROM audit", (webhook,)
        )
        return 0
    rows = conn.execute(
        "SELECT seq, action, created_at FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
        (cursor[0], limit),
    ).fetchall()
    if not rows:
        return 0
    due = set(webhooks.wanted(((seq, action) for seq, action, _ in rows), names))
    conn.executemany(
        "INSERT OR IGNORE INTO notify_deliveries (webhook, seq, created_at, next_attempt_at)"
        " VALUES (?, ?, ?, ?)",
        [(webhook, seq, created_at, now) for seq, _, created_at in rows if seq in due],
    )
    conn.execute("UPDATE notify_cursors SET seq = ? WHERE webhook = ?", (rows[-1][0], webhook))
    return len(rows)


def claim(conn: sqlite3.Connection, now: int, webhook: str, lease_ms: int,
          limit: int) -> list[webhooks.Delivery]:
    """Up to `limit` deliveries due at `now`, each leased for `lease_ms`: not due again
    before then, unless its outcome is written first."""
    rows = conn.execute(
        f"SELECT {tables.DELIVERY_COLUMNS} FROM notify_deliveries d JOIN audit a ON a.seq = d.seq"
        " WHERE d.webhook = ? AND d.failed_at IS NULL AND d.next_attempt_at <= ?"
        " ORDER BY d.next_attempt_at, d.seq LIMIT ?", (webhook, now, limit),
    ).fetchall()
    claimed = [tables.delivery_from_row(webhook, row) for row in rows]
    conn.executemany(
        "UPDATE notify_deliveries SET next_attempt_at = ? WHERE webhook = ? AND seq = ?",
        [(now + lease_ms, webhook, delivery.seq) for delivery in claimed],
    )
    return claimed


def delivered(conn: sqlite3.Connection, webhook: str, seq: int) -> None:
    conn.execute("DELETE FROM notify_deliveries WHERE webhook = ? AND seq = ?", (webhook, seq))


def failed(conn: sqlite3.Connection, now: int, webhook: str, seq: int, error: str,
           retry_at: int | None) -> None:
    """One more failed try: due again at `retry_at`, or given up (None)."""
    conn.execute(
        "UPDATE notify_deliveries SET attempts = attempts + 1, last_error = ?,"
        " next_attempt_at = coalesce(?, next_attempt_at),"
        " failed_at = CASE WHEN ? IS NULL THEN ? END WHERE webhook = ? AND seq = ?",
        (error[:1000], retry_at, retry_at, now, webhook, seq),
    )
