"""API keys on PostgreSQL: added and revoked in a transaction, or by KeyAdmin with no daemon."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

from clawguard.core import errors, principals
from clawguard.store.postgres import audit_log, connection, schema

ADMIN_TIMEOUT_MS = 5_000


def principal_from_row(row: Iterable[Any]) -> principals.Principal:
    key_id, name, role, leads = row
    return principals.Principal(
        key_id=key_id, name=name, role=role,
        leads=None if leads is None else frozenset(json.loads(leads)),
    )


async def add_key(
    conn: connection.Connection, now: int, principal: principals.Principal, key_hash: str
) -> None:
    leads = None if principal.leads is None else json.dumps(sorted(principal.leads))
    await conn.execute(
        "INSERT INTO api_keys (id, name, role, key_hash, leads, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (principal.key_id, principal.name, principal.role, key_hash, leads, now),
    )
    await audit_log.append(conn, now, [principals.key_created(principal)])


async def revoke_key(conn: connection.Connection, now: int, key_id: str) -> None:
    cursor = await conn.execute(
        "UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", (now, key_id)
    )
    if not cursor.rowcount:
        raise errors.NotFound(f"no active key {key_id}")
    await audit_log.append(conn, now, [principals.key_revoked(key_id)])


class KeyAdmin:
    """Key administration straight on the database, for `clawguard keys` (no daemon).

    The same transactions as the daemon's, run on a private event loop, so a key
    and its audit row are written exactly as a running instance writes them.
    """

    def __init__(self, url: str) -> None:
        schema.migrate_database(url)
        self._runner = asyncio.Runner()
        self._db = connection.Database(url, ADMIN_TIMEOUT_MS)
        try:
            self._runner.run(self._db.open())
        except BaseException:
            self._runner.close()
            raise

    def close(self) -> None:
        try:
            self._runner.run(self._db.close())
        finally:
            self._runner.close()

    def create(self, principal: principals.Principal, key_hash: str) -> None:
        now = int(time.time() * 1000)
        self._runner.run(self._db.transaction(lambda conn: add_key(conn, now, principal, key_hash)))

    def revoke(self, key_id: str) -> None:
        now = int(time.time() * 1000)
        self._runner.run(self._db.transaction(lambda conn: revoke_key(conn, now, key_id)))

    def list(self) -> list[dict[str, Any]]:
        rows = self._runner.run(self._db.read(
            "SELECT id, name, role, leads, created_at, revoked_at FROM api_keys"
            " ORDER BY created_at, id"
        ))
        return [
            {"id": key_id, "name": name, "role": role,
             "leads": None if leads is None else json.loads(leads),
             "createdAt": created, "revokedAt": revoked}
            for key_id, name, role, leads, created, revoked in rows
        ]
