"""Finds migrations/*.sql and applies the ones a database lacks, each in one transaction.

Migrations are numbered and forward-only; each file runs together with its
row in `schema_migrations`, so a crash leaves either both or neither, and a
second run is a no-op. They ship inside the wheel as `clawguard/migrations`.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations_dir() -> Path:
    packaged = Path(__file__).parent / "migrations"  # inside an installed wheel
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "migrations"


def available() -> list[Migration]:
    found = []
    for path in sorted(migrations_dir().glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a number")
    return found


def latest_version() -> int:
    return max((m.version for m in available()), default=0)


def applied(conn: sqlite3.Connection) -> set[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    return {version for (version,) in conn.execute("SELECT version FROM schema_migrations")}


def apply(conn: sqlite3.Connection) -> list[int]:
    """Apply every pending migration on a connection in autocommit mode; return their numbers."""
    done = applied(conn)
    newly = []
    for migration in available():
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
