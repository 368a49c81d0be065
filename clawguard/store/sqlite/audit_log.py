"""The audit log's rows: appended inside a write transaction, hash-chained; read back whole."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from clawguard.core import audit, errors, records, redact
from clawguard.store.sqlite import files

AuditEvent = tuple[records.EventType, str, str | None, dict[str, Any]]


def append(
    conn: sqlite3.Connection,
    now: int,
    event_type: records.EventType,
    action: str,
    agent_id: str | None,
    details: dict[str, Any],
) -> None:
    """One row, chained to the hash of the row before it; secrets in `details` masked first."""
    last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, audit.GENESIS)
    details_json = audit.canonical(redact.redact(details))
    digest = audit.row_hash(prev_hash, seq, event_type, action, agent_id, details_json, now)
    conn.execute(
        "INSERT INTO audit (seq, event_type, action, agent_id, details, created_at, prev_hash,"
        " hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, event_type, action, agent_id, details_json, now, prev_hash, digest),
    )


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

