"""Database files: opening one with the durable pragmas, migrating it, reading it offline."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from clawguard import errors, migrate


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


def migrate_database(path: str, busy_timeout_ms: int = 5_000) -> list[int]:
    """Apply pending migrations to the database file; return the versions applied."""
    try:
        conn = connect(path, busy_timeout_ms)
        try:
            return migrate.apply(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise errors.StoreUnavailable(f"cannot migrate {path}: {exc}") from exc


def open_read_only(path: str) -> sqlite3.Connection:
    if not Path(path).exists():
        raise errors.StoreUnavailable(f"no database at {path}")
    return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)

