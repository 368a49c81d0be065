"""Database files: opening one with the durable pragmas, migrating it, reading it offline."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from clawguard.core import errors
from clawguard.store import migrations

log = logging.getLogger(__name__)

MARKER_SUFFIX = "-created"
_MARKER_TEXT = (
    "clawguard created its database {name} beside this file. While this file exists, a\n"
    "missing {name} is refused at start (it was deleted or moved: restore it from a\n"
    "backup); `clawguard serve --create` makes a new, empty one.\n"
)

Identity = tuple[int, int]  # (st_dev, st_ino)


class Connection(sqlite3.Connection):
    """A writing connection that remembers the last audit seq its open transaction appended
    (audit_log.append), so the writer can say after the commit that the chain grew, without
    a read on every batch."""

    appended = 0


def marker_path(path: str) -> Path:
    """The small file written beside a database when it is made: proof that one existed."""
    return Path(path + MARKER_SUFFIX)


def connect(path: str, busy_timeout_ms: int, create: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the durable pragmas.

    A database missing where one existed before (its marker is there) is refused unless
    `create`: SQLite would silently make an empty one, lifting every cap and dropping every
    acknowledged spend and key.
    """
    database = Path(path)
    if not database.exists() and marker_path(path).exists() and not create:
        raise errors.StoreUnavailable(
            f"the database {database.resolve()} is missing, but one was created there before"
            f" ({marker_path(path).name} is beside it): it was deleted or moved. Restore it"
            " from a backup, or start with `clawguard serve --create` to make an empty one"
        )
    database.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           factory=Connection)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a spend acknowledged to a caller survives a power cut, not only a crash.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    _leave_marker(path)
    return conn


def _leave_marker(path: str) -> None:
    marker = marker_path(path)
    if marker.exists():
        return
    try:
        marker.write_text(_MARKER_TEXT.format(name=Path(path).name))
    except OSError as exc:  # a read-only directory: the daemon still serves what it can
        log.warning("cannot write %s: %s", marker, exc)


def identity(path: str) -> Identity | None:
    """(device, inode) of the file at `path` now, or None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


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


def migrate_database(path: str, busy_timeout_ms: int = 5_000, create: bool = False) -> list[int]:
    """Apply pending migrations to the database file; return the versions applied."""
    try:
        conn = connect(path, busy_timeout_ms, create)
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

