"""The one place an engine is chosen, from `[storage] url` (or `path`): the daemon's store
and the offline tools (`clawguard migrate`, `keys`, `audit verify|export`) alike."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from clawguard.core import audit, principals
from clawguard.core import ledger as ledger_rules
from clawguard.runtime import config
from clawguard.store import contract, postgres, sqlite


class KeyAdmin(Protocol):
    """Key administration on the database itself, with no daemon running."""

    def create(self, principal: principals.Principal, key_hash: str) -> None: ...

    def revoke(self, key_id: str) -> None: ...

    def list(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def _settings(location: str | None, settings: config.StorageConfig) -> config.StorageConfig:
    """`--db` (a path or a url) in place of the configured database."""
    return settings if location is None else settings.model_copy(update={"url": location})


def open_store(settings: config.StorageConfig, clock: Callable[[], int]) -> contract.Store:
    """The daemon's store for `settings`; the caller opens and closes it."""
    if settings.engine == "postgres":
        return postgres.PostgresStore(settings, clock)
    return sqlite.SQLiteStore(settings, clock)


def migrate(
    settings: config.StorageConfig, location: str | None = None, create: bool = False
) -> list[int]:
    """`create`: make the database even where one existed before and is now missing
    (`clawguard serve --create`; an engine that keeps no files ignores it)."""
    settings = _settings(location, settings)
    if settings.engine == "postgres":
        return postgres.migrate_database(settings.location)
    return sqlite.migrate_database(settings.location, settings.busy_timeout_ms, create)


def key_admin(settings: config.StorageConfig, location: str | None = None) -> KeyAdmin:
    settings = _settings(location, settings)
    if settings.engine == "postgres":
        return postgres.KeyAdmin(settings.location)
    return sqlite.KeyAdmin(settings.location, settings.busy_timeout_ms)


def ledger(
    settings: config.StorageConfig, location: str | None = None
) -> tuple[list[ledger_rules.Level], list[ledger_rules.Charge]]:
    """Each budget's spent and the sum of its charges; the charges that are not their spend's
    cost (for `clawguard ledger verify`)."""
    settings = _settings(location, settings)
    engine = postgres if settings.engine == "postgres" else sqlite
    return engine.ledger_check(settings.location), engine.wrong_charges(settings.location)


def ledger_rows(
    settings: config.StorageConfig, location: str | None = None
) -> list[ledger_rules.SpendRow]:
    """Every ledger row, in id order, as the checkpoints' running digest covers it."""
    settings = _settings(location, settings)
    if settings.engine == "postgres":
        return postgres.spend_rows(settings.location)
    return sqlite.spend_rows(settings.location)


def audit_chain(settings: config.StorageConfig, location: str | None = None) -> Iterator[audit.Row]:
    settings = _settings(location, settings)
    if settings.engine == "postgres":
        return postgres.audit_chain(settings.location)
    return sqlite.audit_chain(settings.location)
