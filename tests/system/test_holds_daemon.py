"""Holds against real daemons: 64 holds from 4 processes never reserve past a cap (SQLite, and
two daemons on one PostgreSQL database), commits of less and more than the estimate, and a
SIGKILL with live holds: after the restart nothing is leaked or freed twice, and the first
sweep writes the holds that expired while the daemon was down."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from daemon import Daemon, call
from engines.conftest import pg_database, pg_server, pg_url  # noqa: F401 - fixtures

from clawguard.store import postgres, sqlite

C = 10_000
HOLDS = "/api/governance/holds"


def _hold_burst(urls: list[str], worker: int, threads: int, out) -> None:
    """One OS process of `threads` clients, each asking for one 30-cent hold on tenant org."""

    def client(thread: int) -> tuple[int, dict]:
        n = worker * threads + thread
        return call(urls[n % len(urls)], "POST", HOLDS, {
            "agentId": f"a{n}", "tenantId": "org", "amountUsdCents": 30,
            "idempotencyKey": f"burst-{n}"})

    with ThreadPoolExecutor(threads) as pool:
        out.put(list(pool.map(client, range(threads))))


def burst(urls: list[str]) -> list[tuple[int, dict]]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    workers = [ctx.Process(target=_hold_burst, args=(urls, w, 16, out)) for w in range(4)]
    for worker in workers:
        worker.start()
    answers = [answer for _ in workers for answer in out.get(timeout=120)]
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    return answers


def check_burst(url: str, answers: list[tuple[int, dict]]) -> None:
    placed = [body for status, body in answers if status == 201]
    refused = [body for status, body in answers if status == 409]
    assert len(answers) == 64
    assert (len(placed), len(refused)) == (33, 31)  # 33 * 30 = 990 <= 1000 < 34 * 30
    assert {(b["error"], b["details"]["scope"]) for b in refused} == {
        ("budget_exhausted", "tenant")}
    _, budgets = call(url, "GET", "/api/governance/budgets?scope=tenant")
    assert budgets["budgets"][0]["heldUsdMicros"] == 990 * C


def set_cap(url: str) -> None:
    status, _ = call(url, "POST", "/api/governance/budgets",
                     {"scope": "tenant", "scopeId": "org", "limitUsdCents": 1000, "mode": "cap"})
    assert status == 200


def test_64_holds_from_4_processes_never_reserve_past_the_cap_sqlite(tmp_path: Path) -> None:
    with Daemon(tmp_path / "holds.db") as daemon:
        set_cap(daemon.url)
        check_burst(daemon.url, burst([daemon.url]))


def test_64_holds_on_two_postgres_daemons_never_reserve_past_the_cap(
    pg_url: str, tmp_path: Path  # noqa: F811
) -> None:
    with Daemon(tmp_path / "a.db", storage_url=pg_url) as first, \
            Daemon(tmp_path / "b.db", storage_url=pg_url) as second:
        set_cap(first.url)
        check_burst(first.url, burst([first.url, second.url]))
        [(_, spent, summed)] = postgres.ledger_check(pg_url)
        assert spent == summed == 0


def test_commits_less_and_more_than_the_estimate_and_a_kill_with_live_holds(
    tmp_path: Path,
) -> None:
    db = tmp_path / "kill.db"
    daemon = Daemon(db, approvals_sweep_ms="3600000")  # only the start-up sweep runs
    with daemon:
        call(daemon.url, "POST", "/api/governance/budgets",
             {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100, "mode": "cap"})
        ids = []
        for n, ttl in enumerate((60_000, 60_000, 1_000, 3_600_000)):
            status, body = call(daemon.url, "POST", HOLDS, {
                "agentId": "a1", "amountUsdCents": 20, "ttlMs": ttl, "idempotencyKey": f"k{n}"})
            assert status == 201, body
            ids.append(body["hold"]["id"])
        status, _ = call(daemon.url, "POST", HOLDS, {
            "agentId": "a1", "amountUsdCents": 20.0001, "idempotencyKey": "k9"})
        assert status == 409  # 80 held, 20 left
        status, less = call(daemon.url, "POST", f"{HOLDS}/{ids[0]}/commit", {"costUsdCents": 5})
        assert status == 200 and less["scopes"][0]["spentUsdMicros"] == 5 * C
        status, more = call(daemon.url, "POST", f"{HOLDS}/{ids[1]}/commit", {"costUsdCents": 80})
        assert status == 200 and more["scopes"][0]["crossed"] == "soft"
        assert more["scopes"][0]["spentUsdMicros"] == 85 * C
        daemon.kill()  # SIGKILL with two live holds: ids[2] (lapses soon), ids[3]
        time.sleep(1.2)
        daemon.start()
        _, lapsed = call(daemon.url, "GET", f"{HOLDS}/{ids[2]}")
        assert lapsed["hold"]["status"] == "expired"  # written by the start-up sweep
        _, live = call(daemon.url, "GET", f"{HOLDS}/{ids[3]}")
        assert live["hold"]["status"] == "held"
        [budget] = call(daemon.url, "GET", "/api/governance/budgets")[1]["budgets"]
        assert (budget["spentUsdMicros"], budget["heldUsdMicros"]) == (85 * C, 20 * C)
        status, again = call(daemon.url, "POST", f"{HOLDS}/{ids[1]}/commit", {"costUsdCents": 80})
        assert status == 200 and again["spend"]["duplicate"] is True
        status, _ = call(daemon.url, "POST", f"{HOLDS}/{ids[2]}/commit", {"costUsdCents": 1})
        assert status == 409
        status, _ = call(daemon.url, "POST", f"{HOLDS}/{ids[3]}/release")
        assert status == 200
        status, _ = call(daemon.url, "POST", f"{HOLDS}/{ids[3]}/release")
        assert status == 409  # freed once
        _, after = call(daemon.url, "GET", "/api/governance/budgets")
        assert after["budgets"][0]["heldUsdMicros"] == 0
    [(_, spent, summed)] = sqlite.ledger_check(str(db))
    assert spent == summed == 85 * C
    conn = sqlite3.connect(db)
    try:
        statuses = dict(conn.execute("SELECT id, status FROM holds"))
    finally:
        conn.close()
    assert [statuses[i] for i in ids] == ["committed", "committed", "expired", "released"]


pytestmark = pytest.mark.slow
