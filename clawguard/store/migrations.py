"""Finds the numbered, forward-only migrations of an engine's SQL dialect.

One numbering for every engine, one folder per dialect (`migrations/sqlite`,
`migrations/postgres`); each engine applies its own files, each together with
its row in `schema_migrations` in one transaction, so a crash leaves both or
neither and a second run is a no-op. They ship inside the wheel as
`clawguard/migrations`, so `clawguard migrate` works from a plain install.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Dialect = Literal["sqlite", "postgres"]
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations_dir(dialect: Dialect) -> Path:
    package = Path(__file__).parent.parent
    packaged = package / "migrations"  # inside an installed wheel
    root = packaged if packaged.is_dir() else package.parent / "migrations"
    return root / dialect


def available(dialect: Dialect) -> list[Migration]:
    found = []
    for path in sorted(migrations_dir(dialect).glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two {dialect} migrations share a number")
    return found


def latest_version(dialect: Dialect) -> int:
    return max((m.version for m in available(dialect)), default=0)
