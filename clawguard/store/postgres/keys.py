"""API keys on PostgreSQL: added, revoked and marked used in a transaction, or by KeyAdmin with
no daemon."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from clawguard.core import principals, records
from clawguard.store import tables
from clawguard.store.postgres import audit_log, connection, schema

ADMIN_TIMEOUT_MS = 5_000


async def add_key(
    conn: connection.Connection, now: int, principal: principals.Principal, key_hash: str
) -> records.ApiKey:
    await conn.execute(
        "INSERT INTO api_keys (id, name, role, key_hash, leads, groups, expires_at, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (principal.key_id, principal.name, principal.role, key_hash,
         tables.names_json(principal.leads),
         tables.names_json(principal.groups), principal.expires_at, now),
    )
    await audit_log.append(conn, now, [principals.key_created(principal)])
    return principals.key_record(principal, now)


async def revoke_key(conn: connection.Connection, now: int, key_id: str) -> records.ApiKey:
    cursor = await conn.execute(
        f"SELECT {tables.KEY_COLUMNS} FROM api_keys WHERE id = %s FOR UPDATE", (key_id,)
    )
    row = await cursor.fetchone()
    revoked, event = principals.revoke(
        None if row is None else tables.key_from_row(row), key_id, now
    )
    await conn.execute("UPDATE api_keys SET revoked_at = %s WHERE id = %s", (now, key_id))
    await audit_log.append(conn, now, [event])
    return revoked


async def touch_keys(conn: connection.Connection, uses: Mapping[str, int]) -> None:
    """Record when keys were last used; a later time never goes back to an earlier one
    (another instance may have written a later one)."""
    ids = sorted(uses)  # one lock order for every instance
    await conn.execute(
        "UPDATE api_keys k SET last_used_at = greatest(k.last_used_at, v.at)"
        " FROM unnest(%s::text[], %s::bigint[]) AS v(id, at) WHERE k.id = v.id",
        (ids, [uses[key_id] for key_id in ids]),
    )


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
            f"SELECT {tables.KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
        ))
        return [tables.key_from_row(row).to_json() for row in rows]
