"""API keys: added and revoked inside a write transaction, or by KeyAdmin with no daemon."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from clawguard.core import errors, principals
from clawguard.store.sqlite import audit_log, files, writer


def principal_from_row(row: Iterable[Any]) -> principals.Principal:
    key_id, name, role, leads = row
    return principals.Principal(
        key_id=key_id, name=name, role=role,
        leads=None if leads is None else frozenset(json.loads(leads)),
    )


def add_key(
    conn: sqlite3.Connection, now: int, principal: principals.Principal, key_hash: str
) -> None:
    leads = None if principal.leads is None else json.dumps(sorted(principal.leads))
    conn.execute(
        "INSERT INTO api_keys (id, name, role, key_hash, leads, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (principal.key_id, principal.name, principal.role, key_hash, leads, now),
    )
    audit_log.append(conn, now, principals.key_created(principal))


def revoke_key(conn: sqlite3.Connection, now: int, key_id: str) -> None:
    changed = conn.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, key_id)
    ).rowcount
    if not changed:
        raise errors.NotFound(f"no active key {key_id}")
    audit_log.append(conn, now, principals.key_revoked(key_id))


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
            "SELECT id, name, role, leads, created_at, revoked_at FROM api_keys ORDER BY created_at"
        )
        return [
            {"id": key_id, "name": name, "role": role,
             "leads": None if leads is None else json.loads(leads),
             "createdAt": created, "revokedAt": revoked}
            for key_id, name, role, leads, created, revoked in rows
        ]

