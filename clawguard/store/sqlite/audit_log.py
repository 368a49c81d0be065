"""The audit log's rows: appended inside a write transaction, hash-chained; read back whole."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from clawguard.core import audit, errors
from clawguard.store.sqlite import files


def append(conn: sqlite3.Connection, now: int, *events: audit.Event) -> None:
    """Rows chained after the last one. SQLite has one writer, inside whose transaction
    this runs, so the head read here is the head the insert follows."""
    for event in events:
        head = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        row = audit.next_row(head, event, now)
        conn.execute(
            "INSERT INTO audit (seq, event_type, action, agent_id, details, created_at,"
            " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (row.seq, row.event_type, row.action, row.agent_id, row.details_json,
             row.created_at, row.prev_hash, row.hash),
        )
        if isinstance(conn, files.Connection):
            conn.appended = row.seq


def audit_chain(path: str) -> Iterator[audit.Row]:
    """Every audit row in seq order, straight from the file, for verification and export."""
    try:
        conn = files.open_read_only(path)
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

