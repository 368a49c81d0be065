"""Database files: opening one with the durable pragmas, migrating it, reading it offline."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from clawguard.core import errors
from clawguard.store import migrations


def connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the durable pragmas."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a spend acknowledged to a caller survives a power cut, not only a crash.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def applied(conn: sqlite3.Connection) -> set[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    return {version for (version,) in conn.execute("SELECT version FROM schema_migrations")}


def apply_migrations(conn: sqlite3.Connection) -> list[int]:
    """Apply every pending migration on a connection in autocommit mode; return their numbers."""
    done = applied(conn)
    newly = []
    for migration in migrations.available("sqlite"):
        if migration.version in done:
            continue
        try:
            conn.executescript("BEGIN IMMEDIATE;\n" + migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, int(time.time() * 1000)),
            )
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if migration.version in applied(conn):
                continue  # another process applied it first
            raise
        newly.append(migration.version)
    return newly


def migrate_database(path: str, busy_timeout_ms: int = 5_000) -> list[int]:
    """Apply pending migrations to the database file; return the versions applied."""
    try:
        conn = connect(path, busy_timeout_ms)
        try:
            return apply_migrations(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise errors.StoreUnavailable(f"cannot migrate {path}: {exc}") from exc


def open_read_only(path: str) -> sqlite3.Connection:
    if not Path(path).exists():
        raise errors.StoreUnavailable(f"no database at {path}")
    return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)

