"""The connection pool, the transaction helper, and psycopg's errors in clawguard's terms.

Every statement the daemon sends to PostgreSQL goes through `Database`: reads
on a pooled connection in autocommit mode, writes as one transaction each
(`Database.transaction`), retried a bounded number of times when PostgreSQL
aborts it for a serialization failure or a deadlock, which two instances
racing for the same rows may cause and which leave nothing written. Every
other driver error becomes `errors.StoreUnavailable` (503), so the daemon
fails closed while the database is away and heals when it comes back: the
pool checks a connection before lending it and replaces the broken ones.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from clawguard.core import errors

log = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.AsyncConnection[tuple[Any, ...]]
Job = Callable[[Connection], Awaitable[T]]

# Aborted with nothing written, and safe to run again from the start: a serialization
# failure or a deadlock between instances, or a unique key another instance took first
# (a budget both created, a grant both made sticky, a replayed idempotency key), which
# the retry then reads as the other transaction left it.
RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected,
             pg_errors.UniqueViolation)
MAX_ATTEMPTS = 5
POOL_MIN = 2
POOL_MAX = 10
CONNECT_TIMEOUT_S = 5


class Retry(Exception):
    """Raised inside a job to run its transaction again (e.g. it lost a unique-key race)."""


def unavailable(exc: BaseException, doing: str) -> errors.StoreUnavailable:
    """The one translation of a driver error into the domain's 503."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return errors.StoreUnavailable(f"the database cannot be {doing}: {text}")


def conninfo(url: str) -> str:
    """libpq takes postgres:// and postgresql:// alike; a connect timeout bounds an outage."""
    return psycopg.conninfo.make_conninfo(url, connect_timeout=CONNECT_TIMEOUT_S)


class Database:
    """A pool of autocommit connections to one database, and the transaction helper."""

    def __init__(self, url: str, acquire_timeout_ms: int, pool_size: int = POOL_MAX) -> None:
        self._pool: psycopg_pool.AsyncConnectionPool[Connection] = (
            psycopg_pool.AsyncConnectionPool(
                conninfo(url), min_size=min(POOL_MIN, pool_size), max_size=pool_size, open=False,
                kwargs={"autocommit": True},
                check=psycopg_pool.AsyncConnectionPool.check_connection,
                timeout=max(acquire_timeout_ms, 1) / 1000, name="clawguard",
            )
        )
        self.fault: str | None = None  # why the last write failed, until one commits

    async def open(self) -> None:
        try:
            await self._pool.open(wait=True, timeout=min(self._pool.timeout, CONNECT_TIMEOUT_S))
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            await self._pool.close()
            raise unavailable(exc, "reached") from exc

    async def close(self) -> None:
        await self._pool.close()

    async def read(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(sql, params)
                return await cursor.fetchall()
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise unavailable(exc, "read") from exc

    async def transaction(self, job: Job[T], pipelined: bool = False) -> T:
        """Run `job` in one transaction and commit it; a domain error it raises rolls it back.

        Each attempt starts from nothing (the job reloads what it decides on), so a retry
        after a deadlock or a lost race sees the other transaction's committed result.
        `pipelined` runs it in psycopg's pipeline mode: statements are sent without waiting
        and the job waits only for the results it reads, so BEGIN and the writes after its
        last read (and the COMMIT) cost no round trip of their own, fewer while rows are
        locked; such a job reads no rowcount, and its write errors surface at the commit.
        """
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                async with self._pool.connection() as conn:
                    if pipelined:
                        async with conn.pipeline(), conn.transaction():
                            result = await job(conn)
                    else:
                        async with conn.transaction():
                            result = await job(conn)
            except (Retry, *RETRYABLE) as exc:
                if attempt == MAX_ATTEMPTS:
                    self.fault = str(exc)
                    raise unavailable(exc, "written (it stayed contended)") from exc
                log.debug("transaction retried (attempt %d): %s", attempt, exc)
                continue
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                self.fault = str(exc)
                raise unavailable(exc, "written") from exc
            self.fault = None
            return result
        raise AssertionError("unreachable")

    async def writable(self) -> bool:
        """Whether writes commit; after a failed one, a probe write finds out if it has cleared."""
        if self.fault is None:
            return True
        try:
            await self.transaction(_probe)
        except errors.StoreUnavailable:
            return False
        return True


async def _probe(conn: Connection) -> None:
    await conn.execute(
        "INSERT INTO heartbeat (id, at) VALUES (1, (extract(epoch FROM now()) * 1000)::bigint)"
        " ON CONFLICT (id) DO UPDATE SET at = excluded.at"
    )
