"""The PostgreSQL engine's plumbing: migrations, errors, retries, the audit head, LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from clawguard.core import audit, budgets, commands, errors, principals, records
from clawguard.runtime import config
from clawguard.store import migrations
from clawguard.store.postgres import audit_log, connection, keys, listener, schema
from clawguard.store.postgres import store as pg_store


def test_migrate_applies_every_file_once_and_twice_is_a_no_op(pg_url: str) -> None:
    everything = [m.version for m in migrations.available("postgres")]
    assert everything == [m.version for m in migrations.available("sqlite")]
    assert schema.migrate_database(pg_url) == everything
    assert schema.migrate_database(pg_url) == []
    with psycopg.connect(pg_url) as conn:
        assert schema.applied_version(conn) == migrations.latest_version("postgres")


def test_instances_starting_together_on_an_empty_database_migrate_it_once(pg_url: str) -> None:
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: schema.migrate_database(pg_url), range(6)))
    applied = sorted(v for result in results for v in result)
    assert applied == [m.version for m in migrations.available("postgres")]


def test_the_audit_log_is_append_only(pg_url: str) -> None:
    schema.migrate_database(pg_url)
    admin = keys.KeyAdmin(pg_url)
    try:
        admin.create(principals.Principal("key_1", "ops", "operator"), "h" * 64)
    finally:
        admin.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statement in ("UPDATE audit SET action = 'x'", "DELETE FROM audit",
                          "TRUNCATE audit"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)


def test_key_admin_and_the_offline_audit_chain(pg_url: str) -> None:
    admin = keys.KeyAdmin(pg_url)  # migrates an empty database first
    try:
        admin.create(principals.Principal("key_a", "lead", "leader", frozenset({"a1"})), "1" * 64)
        admin.create(principals.Principal("key_b", "ops", "operator"), "2" * 64)
        admin.revoke("key_a")
        with pytest.raises(errors.Conflict):  # already revoked: 409 over HTTP
            admin.revoke("key_a")
        with pytest.raises(errors.NotFound):
            admin.revoke("key_nope")
        listed = admin.list()
    finally:
        admin.close()
    assert [(k["id"], k["leads"], k["revokedAt"] is not None) for k in listed] == [
        ("key_a", ["a1"], True), ("key_b", None, False),
    ]
    rows = list(audit_log.audit_chain(pg_url))
    assert [row.action for row in rows] == ["key.created", "key.created", "key.revoked"]
    verdict = audit.verify(rows)
    assert verdict.ok and verdict.checked == 3


async def test_appends_from_many_instances_form_one_chain(pg_url: str) -> None:
    schema.migrate_database(pg_url)
    instances = [connection.Database(pg_url, 5_000) for _ in range(3)]
    for db in instances:
        await db.open()
    try:
        async def append(db: connection.Database, n: int) -> None:
            await db.transaction(lambda conn: audit_log.append(
                conn, n, [audit.Event("budget", "test.event", None, {"n": n}),
                          audit.Event("budget", "test.two", None, {})]
            ))

        await asyncio.gather(*(append(instances[n % 3], n) for n in range(60)))
    finally:
        for db in instances:
            await db.close()
    verdict = audit.verify(audit_log.audit_chain(pg_url))
    assert verdict.ok and verdict.checked == 120, verdict


async def test_an_unreachable_database_is_store_unavailable() -> None:
    db = connection.Database("postgresql://postgres@127.0.0.1:1/nothing", 200)
    with pytest.raises(errors.StoreUnavailable):
        await db.open()
    with pytest.raises(errors.StoreUnavailable):
        schema.migrate_database("postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(errors.StoreUnavailable):
        list(audit_log.audit_chain("postgresql://postgres@127.0.0.1:1/nothing"))


async def test_a_deadlock_is_retried_and_both_transactions_commit(pg_url: str) -> None:
    schema.migrate_database(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE pair (id INT PRIMARY KEY, n INT NOT NULL)")
        conn.execute("INSERT INTO pair VALUES (1, 0), (2, 0)")
    db = connection.Database(pg_url, 5_000)
    await db.open()
    both_hold_one = asyncio.Barrier(2)
    attempts = {"first": 0, "second": 0}

    def crosswise(name: str, first: int, second: int) -> connection.Job[None]:
        async def job(conn: connection.Connection) -> None:
            attempts[name] += 1
            await conn.execute("UPDATE pair SET n = n + 1 WHERE id = %s", (first,))
            if attempts[name] == 1:
                await both_hold_one.wait()
            await conn.execute("UPDATE pair SET n = n + 1 WHERE id = %s", (second,))
        return job

    try:
        await asyncio.gather(db.transaction(crosswise("first", 1, 2)),
                             db.transaction(crosswise("second", 2, 1)))
        assert await db.read("SELECT n FROM pair ORDER BY id") == [(2,), (2,)]
        assert sorted(attempts.values()) == [1, 2]
    finally:
        await db.close()


async def test_a_key_committed_by_another_instance_after_the_batch_read_it_is_replayed(
    pg_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """A batch reads the used keys without a lock: one committed meanwhile is replayed, not
    charged twice (the INSERT's UniqueViolation runs the transaction again)."""
    caplog.set_level(logging.DEBUG, logger=connection.__name__)
    store = pg_store.PostgresStore(config.StorageConfig(url=pg_url), lambda: 1_000)
    await store.open()
    leader = principals.Principal("key_lead", "lead", "leader")
    await store.set_budget(commands.BudgetSet.model_validate(
        {"scope": "agent", "scopeId": "a1", "limitUsdCents": 1_000}), leader)
    request = commands.SpendRequest.model_validate(
        {"agentId": "a1", "costUsdCents": 7, "idempotencyKey": "k1"})
    fingerprint = budgets.fingerprint(request)
    other = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
    blocker = await psycopg.AsyncConnection.connect(pg_url)
    try:
        # The batch's statement starts (its snapshot taken) and waits on the budget row.
        await blocker.execute("SELECT 1 FROM budgets WHERE scope_id = 'a1' FOR UPDATE")
        spend = asyncio.create_task(store.record_spend(request, fingerprint, "o:k1"))
        for _ in range(500):
            cursor = await other.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE 'WITH locked AS%%' AND datname = current_database()")
            if (await cursor.fetchone()) == (1,):
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the spend batch never waited on the budget row")
        # Meanwhile "another instance" commits a ledger row under the same key.
        await other.execute(
            "INSERT INTO spends (id, idempotency_key, fingerprint, agent_id, cost_micros,"
            " scopes, created_at) VALUES (4242, 'o:k1', %s, 'a1', 70000, '[]', 1)",
            (fingerprint,))
        await blocker.commit()
        charged = await asyncio.wait_for(spend, 10)
        assert charged.spend.duplicate and charged.spend.id == 4242
        assert "UniqueViolation" in caplog.text or "duplicate key" in caplog.text
        cursor = await other.execute("SELECT spent_micros FROM budgets WHERE scope_id = 'a1'")
        assert await cursor.fetchone() == (0,)  # charged once: by the other instance's row
    finally:
        await blocker.close()
        await other.close()
        await store.close()


async def test_a_notification_arrives_within_100ms_and_after_the_connection_drops(
    pg_url: str,
) -> None:
    schema.migrate_database(pg_url)
    got: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
    listens: list[int] = []
    ear = listener.Listener(
        pg_url, lambda payload: got.put_nowait((time.perf_counter(), payload)), listens.append
    )
    db = connection.Database(pg_url, 5_000)
    await db.open()
    await ear.start()
    try:
        assert ear.listening
        sent = time.perf_counter()
        await db.transaction(lambda conn: listener.notify(conn, "apr_1"))
        at, payload = await asyncio.wait_for(got.get(), 1)
        assert payload == "apr_1" and at - sent < 0.1

        async def rolled_back(conn: connection.Connection) -> None:
            await listener.notify(conn, "never")
            raise errors.Conflict("no")

        with pytest.raises(errors.Conflict):
            await db.transaction(rolled_back)

        await db.read(  # cut the LISTEN connection as a server restart would
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query = 'LISTEN clawguard_approvals'"
        )
        for _ in range(100):
            if len(listens) == 2:
                break
            await asyncio.sleep(0.05)
        assert listens == [0, 1]
        await db.transaction(lambda conn: listener.notify(conn, "apr_2"))
        _, payload = await asyncio.wait_for(got.get(), 1)
        assert payload == "apr_2"  # and "never" never came
    finally:
        await ear.stop()
        await db.close()


def test_a_decision_travels_in_its_notification_and_a_row_too_long_by_its_id() -> None:
    row = records.Approval(
        id="apr_1", tool_name="t.deploy", agent_id="a1", args_summary='{"target": "prod"}',
        reason=None, status="allow_once", task_id=None, tenant_id=None, created_at=1,
        expires_at=9, resolved_at=5, resolved_by="boss", args_fingerprint="f" * 64,
    )
    assert listener.read(listener.decided("inst0001", row)) == ("inst0001", "apr_1", row)
    long = row.model_copy(update={"args_summary": "x" * listener.PAYLOAD_MAX_BYTES})
    payload = listener.decided("inst0001", long)
    assert payload == "inst0001:apr_1"
    assert listener.read(payload) == ("inst0001", "apr_1", None)  # read back by the waker
