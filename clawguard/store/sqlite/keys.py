"""API keys: added, revoked and marked used inside a write transaction, or by KeyAdmin with no
daemon."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from clawguard.core import errors, principals, records
from clawguard.store import tables
from clawguard.store.sqlite import audit_log, files, writer


def add_key(
    conn: sqlite3.Connection, now: int, principal: principals.Principal, key_hash: str
) -> records.ApiKey:
    conn.execute(
        "INSERT INTO api_keys (id, name, role, key_hash, leads, groups, expires_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (principal.key_id, principal.name, principal.role, key_hash,
         tables.names_json(principal.leads),
         tables.names_json(principal.groups), principal.expires_at, now),
    )
    audit_log.append(conn, now, principals.key_created(principal))
    return principals.key_record(principal, now)


def revoke_key(conn: sqlite3.Connection, now: int, key_id: str) -> records.ApiKey:
    row = conn.execute(
        f"SELECT {tables.KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)
    ).fetchone()
    revoked, event = principals.revoke(
        None if row is None else tables.key_from_row(row), key_id, now
    )
    conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now, key_id))
    audit_log.append(conn, now, event)
    return revoked


def touch_keys(conn: sqlite3.Connection, uses: Mapping[str, int]) -> None:
    """Record when keys were last used; a later time never goes back to an earlier one."""
    conn.executemany(
        "UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, 0), ?) WHERE id = ?",
        [(at, key_id) for key_id, at in uses.items()],
    )


class KeyAdmin:
    """Key administration straight on the database file, for `clawguard keys` (no daemon)."""

    def __init__(self, path: str, busy_timeout_ms: int = 5_000) -> None:
        files.migrate_database(path, busy_timeout_ms)
        self._conn = files.connect(path, busy_timeout_ms)

    def close(self) -> None:
        self._conn.close()

    def _transaction(self, job: writer.Job) -> Any:
        try:
            [outcome] = writer.run_batch(self._conn, [job], int(time.time() * 1000))
        except sqlite3.Error as exc:
            raise errors.StoreUnavailable(f"the database cannot be written: {exc}") from exc
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def create(self, principal: principals.Principal, key_hash: str) -> None:
        self._transaction(lambda conn, now: add_key(conn, now, principal, key_hash))

    def revoke(self, key_id: str) -> None:
        self._transaction(lambda conn, now: revoke_key(conn, now, key_id))

    def list(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            f"SELECT {tables.KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
        )
        return [tables.key_from_row(row).to_json() for row in rows]
