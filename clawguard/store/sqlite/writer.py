"""The one writer: every write waits in a queue and commits in a batch, one transaction each.

A batch is ONE `BEGIN IMMEDIATE ... COMMIT`, so it pays one fsync and one
hop into the database thread, however many spends it holds. Only the calls
that can wait go to that thread: the COMMIT (its fsync) and, when another
process holds the write lock, the BEGIN. The jobs' statements run on the event
loop: they take microseconds, whereas in the thread every sqlite3 step gives
up the GIL and must win it back from the busy loop (under bench/spend.py's
load: 107 us a spend in the thread, 44 us on the loop). Each job runs inside
its own SAVEPOINT, so a job that fails leaves the others in its batch
untouched; no caller hears back before its batch is committed.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from clawguard.core import errors
from clawguard.runtime import config
from clawguard.store import batches
from clawguard.store.sqlite import budgets, files

log = logging.getLogger(__name__)

Job = Callable[[sqlite3.Connection, int], Any]  # (connection, now in epoch ms) -> result
Write = Job | budgets.SpendJob  # spends share the batch's budget rows (budgets.ChargedBudgets)
Clock = Callable[[], int]


class Writer:
    """The queue, the writer task that drains it, and the connection and thread it writes with."""

    def __init__(self, settings: config.StorageConfig, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._queue: asyncio.Queue[tuple[Write, asyncio.Future[Any]] | None] = asyncio.Queue()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clawguard-writer")
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._fault: str | None = None  # why the last batch failed, until one commits
        self.lost: str | None = None  # why the database files are not the ones opened
        # After each commit, before any caller hears back: are the files still the ones opened?
        self.check_files: Callable[[], str | None] | None = None
        self.batch_observer: Callable[[int, float], None] | None = None
        # Called with the last audit seq of each committed batch that appended audit rows.
        self.audit_watchers: list[Callable[[int], None]] = []

    async def open(self) -> None:
        """Connect, apply pending migrations and start taking writes."""
        loop = asyncio.get_running_loop()
        path, timeout = self._settings.location, self._settings.busy_timeout_ms
        self._conn = await loop.run_in_executor(self._thread, files.connect, path, timeout)
        await loop.run_in_executor(self._thread, files.apply_migrations, self._conn)
        # A database that opens and reads but cannot take a write (a read-only file or
        # directory, an immutable file) would answer readyz and preflights as healthy until
        # the first spend failed: find out now, and fail closed from the first request.
        probe: list[Write] = [_probe]
        try:  # a job's own failure is its outcome; the transaction's is raised
            [probed] = await loop.run_in_executor(
                self._thread, run_batch, self._conn, probe, self._clock()
            )
        except sqlite3.Error as exc:
            probed = exc
        if isinstance(probed, Exception):
            self._fault = f"the database cannot be written: {probed}"
            log.critical("%s is not writable (%s): spends are refused and preflights answer"
                         " allowed: false until it is", path, probed)
        # From here on the writer never waits for a lock on the event loop: see _begin.
        self._conn.execute("PRAGMA busy_timeout = 0")
        self._task = asyncio.create_task(self._write_loop(), name="clawguard-writer")

    async def close(self) -> None:
        """Commit every write already queued, then close."""
        self._closing = True
        if self._task is not None:
            self._queue.put_nowait(None)  # after every job already queued
            await self._task
            self._task = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._thread, conn.close)
        self._thread.shutdown(wait=True)

    async def write(self, job: Write) -> Any:
        """The job's result once its batch has committed; its exception if it raised one."""
        if self._closing or self._task is None:
            raise errors.StoreUnavailable("the store is closed")
        if self.lost is not None:
            raise errors.StoreUnavailable(self.lost)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, future))
        return await future

    async def writable(self) -> bool:
        """Whether writes commit; after a failed one, a probe write finds out if it has cleared."""
        if self.lost is not None:
            return False
        if self._fault is None:
            return True
        try:
            await self.write(_probe)
        except errors.StoreUnavailable:
            return False
        return True

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            taken = await batches.next_batch(self._queue, self._settings.batch_max)
            if taken is None:
                return
            batch, stop = taken
            started = loop.time()
            try:
                outcomes = await self._commit_batch([job for job, _ in batch])
            except Exception as exc:  # the whole transaction failed: nothing was written
                log.error("write batch of %d failed: %s", len(batch), exc)
                outcomes = [errors.StoreUnavailable(f"the database cannot be written: {exc}")]
                outcomes *= len(batch)
            if self.check_files is not None and (lost := self.check_files()) is not None:
                # Committed, but into a file that is gone from its path: not acknowledged.
                self.lost = lost
                outcomes = [errors.StoreUnavailable(lost)] * len(batch)
            failed = next((o for o in outcomes if isinstance(o, errors.StoreUnavailable)), None)
            self._fault = None if failed is None else failed.message
            if self.batch_observer is not None:
                self.batch_observer(len(batch), loop.time() - started)
            batches.answer(batch, outcomes)
            appended = self._appended()  # a rolled-back row only makes a read that finds none
            if appended:
                for watcher in self.audit_watchers:
                    watcher(appended)
            if stop:
                return

    def _appended(self) -> int:
        """The last audit seq the batch just run appended (0: none), then forgotten."""
        conn = self._conn
        if not isinstance(conn, files.Connection):
            return 0
        appended, conn.appended = conn.appended, 0
        return appended

    async def _commit_batch(self, jobs: list[Write]) -> list[Any]:
        """Run the jobs in one transaction; return each one's result or exception once committed."""
        conn = self._conn
        assert conn is not None
        await self._begin(conn)
        try:
            outcomes = run_jobs(conn, jobs, self._clock())
            await asyncio.get_running_loop().run_in_executor(self._thread, conn.execute, "COMMIT")
        except Exception:  # not CancelledError: a COMMIT may still be running in the thread
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes

    async def _begin(self, conn: sqlite3.Connection) -> None:
        """Take the write lock: at once on the loop when it is free, as it nearly always is."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:  # BUSY_RECOVERY etc. too
                raise
            # Another process holds it (`clawguard keys`, a backup): wait in the database
            # thread, up to storage.busy_timeout_ms, so the loop goes on serving.
            await asyncio.get_running_loop().run_in_executor(
                self._thread, _begin_waiting, conn, self._settings.busy_timeout_ms
            )


def run_batch(conn: sqlite3.Connection, jobs: list[Write], now: int) -> list[Any]:
    """One transaction for the whole batch, in one blocking call (for `clawguard keys`)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        outcomes = run_jobs(conn, jobs, now)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def run_jobs(conn: sqlite3.Connection, jobs: list[Write], now: int) -> list[Any]:
    """Each job all-or-nothing within its savepoint of the open transaction."""
    charged = budgets.ChargedBudgets()
    outcomes: list[Any] = []
    for job in jobs:
        if not isinstance(job, budgets.SpendJob):
            charged.write_back(conn, now)  # it reads and writes budgets as the spends left them
        conn.execute("SAVEPOINT job")
        try:
            if isinstance(job, budgets.SpendJob):
                outcomes.append(budgets.record_spend(conn, now, job, charged))
            else:
                outcomes.append(job(conn, now))
        except Exception as exc:
            conn.execute("ROLLBACK TO job")
            if isinstance(exc, sqlite3.Error):
                exc = errors.StoreUnavailable(f"the database cannot be written: {exc}")
            outcomes.append(exc)
        conn.execute("RELEASE job")
    charged.write_back(conn, now)
    return outcomes


def _begin_waiting(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


def _probe(conn: sqlite3.Connection, now: int) -> None:
    conn.execute("INSERT OR REPLACE INTO heartbeat (id, at) VALUES (1, ?)", (now,))
