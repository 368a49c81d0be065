"""Migrating a PostgreSQL database: the numbered files of migrations/postgres, under a lock.

Each pending migration is applied together with its `schema_migrations` row
in one transaction that first takes a transaction-level advisory lock, so
instances started together on an empty database apply each file once (the
others wait on the lock, then find it applied), and a second run is a no-op.
Synchronous on purpose: `clawguard migrate` calls it as it is, the daemon in
a thread at start-up.
"""

from __future__ import annotations

import time

import psycopg

from clawguard.store import migrations
from clawguard.store.postgres import connection

# pg_advisory_xact_lock's key: any fixed bigint; this one is "clawguard" in ASCII, truncated.
MIGRATION_LOCK = 0x636C6177677561


def applied_version(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The highest applied migration, 0 on an empty database."""
    row = conn.execute(
        "SELECT CASE WHEN to_regclass('schema_migrations') IS NULL THEN 0"
        " ELSE (SELECT coalesce(max(version), 0) FROM schema_migrations) END"
    ).fetchone()
    return int(row[0]) if row is not None else 0  # type: ignore[call-overload]


def apply_migrations(conn: psycopg.Connection[tuple[object, ...]]) -> list[int]:
    """Apply every pending migration on an autocommit connection; return their numbers."""
    newly = []
    for migration in migrations.available("postgres"):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            )
            done = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
            ).fetchone()
            if done is not None:
                continue
            conn.execute(migration.sql.encode())  # several statements, no parameters
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, int(time.time() * 1000)),
            )
        newly.append(migration.version)
    return newly


def migrate_database(url: str) -> list[int]:
    """Apply pending migrations to the database at `url`; return the versions applied."""
    try:
        with psycopg.connect(connection.conninfo(url), autocommit=True) as conn:
            return apply_migrations(conn)
    except psycopg.Error as exc:
        raise connection.unavailable(exc, "migrated") from exc
