"""Writes sharing one PostgreSQL transaction (store/postgres/batch.py): each job all or
nothing in its savepoint, a lost race run again, the audit rows appended last in job order;
hold batches that lock every chain first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import psycopg

from clawguard.core import audit, commands, errors, holds, principals, records
from clawguard.runtime import config
from clawguard.store.postgres import audit_log, batch, connection, schema
from clawguard.store.postgres import store as pg_store


def _event(name: str) -> audit.Event:
    return audit.Event("budget", name, None, {})


def _insert(n: int, fail: bool = False) -> batch.Job:
    async def job(conn: connection.Connection, now: int) -> int:
        await conn.execute("INSERT INTO t (id) VALUES (%s)", (n,))
        await audit_log.append(conn, now, [_event(f"job.{n}")])
        if fail:
            raise errors.Conflict(f"job {n} refuses after writing")
        return n
    return job


async def _run(db: connection.Database, jobs: list[batch.Job]) -> list[object]:
    result: list[object] = await db.transaction(lambda conn: batch.run_jobs(conn, 7, jobs))
    return result


async def test_a_refused_job_leaves_nothing_and_the_others_commit(pg_url: str) -> None:
    schema.migrate_database(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    db = connection.Database(pg_url, 5_000)
    await db.open()
    try:
        first, refused, third = await _run(db, [_insert(1), _insert(2, fail=True), _insert(3)])
        assert (first, third) == (1, 3)
        assert isinstance(refused, errors.Conflict)
        assert await db.read("SELECT id FROM t ORDER BY id") == [(1,), (3,)]
    finally:
        await db.close()
    rows = list(audit_log.audit_chain(pg_url))
    assert [row.action for row in rows][-2:] == ["job.1", "job.3"]
    assert audit.verify(rows).ok


async def test_a_job_that_loses_a_unique_key_race_runs_again_and_reads_the_winner(
    pg_url: str,
) -> None:
    schema.migrate_database(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE k (key TEXT PRIMARY KEY, owner TEXT NOT NULL)")
    db = connection.Database(pg_url, 5_000)
    await db.open()
    other_inserted, batch_tried = asyncio.Event(), asyncio.Event()
    attempts = 0
    runs: list[int] = []

    async def claim(conn: connection.Connection, now: int) -> str:
        nonlocal attempts
        attempts += 1
        cursor = await conn.execute("SELECT owner FROM k WHERE key = 'x'")
        row = await cursor.fetchone()
        if row is not None:
            return str(row[0])
        if attempts == 1:
            await other_inserted.wait()  # the other transaction holds 'x', uncommitted
            batch_tried.set()
        await conn.execute("INSERT INTO k VALUES ('x', 'batch')")
        return "batch"

    async def other() -> None:
        async with await psycopg.AsyncConnection.connect(pg_url) as conn:
            await conn.execute("INSERT INTO k VALUES ('x', 'other')")
            other_inserted.set()
            await batch_tried.wait()  # committed as the batch inserts 'x' too, or about to
            await conn.commit()

    try:
        [[before, claimed, after], _] = await asyncio.gather(
            _run(db, [_counted(runs), claim, _counted(runs)]), other())
        assert (before, claimed, after) == (1, "other", 2)
        assert attempts == 2 and runs == [1, 2]  # only the job that lost ran again
        assert await db.read("SELECT owner FROM k") == [("other",)]
    finally:
        await db.close()


def _counted(runs: list[int]) -> batch.Job:
    async def job(conn: connection.Connection, now: int) -> int:
        runs.append(len(runs) + 1)
        await audit_log.append(conn, now, [_event(f"run.{len(runs)}")])
        return len(runs)
    return job


async def test_hold_batches_lock_every_chain_first_so_two_instances_never_deadlock(
    pg_url: str,
) -> None:
    """Two instances each batch placements on two chains, in opposite orders: each batch
    locks every chain's budget rows at once, in the one order, before its first step
    (holds.run_steps), so neither waits for the other while holding what it needs."""
    stores = [pg_store.PostgresStore(config.StorageConfig(url=pg_url), lambda: 1_000)
              for _ in range(2)]
    for store in stores:
        await store.open()
    operator = principals.Principal("key_op", "op", "operator")
    try:
        for scope, scope_id in (("agent", "a1"), ("agent", "a2"), ("team", "t1"), ("team", "t2")):
            await stores[0].set_budget(commands.BudgetSet.model_validate(
                {"scope": scope, "scopeId": scope_id, "limitUsdCents": 1_000_000}), operator)

        def place(store: pg_store.PostgresStore, key: str, agent: str, team: str
                  ) -> Awaitable[records.Hold]:
            request = commands.HoldRequest.model_validate(
                {"amountUsdCents": 1, "idempotencyKey": key, "agentId": agent, "teamId": team})
            return store.place_hold(request, holds.fingerprint(request), key, 60_000)

        for n in range(5):
            placed = await asyncio.wait_for(asyncio.gather(
                place(stores[0], f"x{n}", "a1", "t2"), place(stores[0], f"y{n}", "a2", "t1"),
                place(stores[1], f"z{n}", "a2", "t1"), place(stores[1], f"w{n}", "a1", "t2"),
            ), 10)
            assert [hold.status for hold in placed] == ["held"] * 4
    finally:
        for store in stores:
            await store.close()
