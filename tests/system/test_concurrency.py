"""Real concurrency and real crashes: OS processes and threads against a daemon subprocess."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from daemon import Daemon, call

from clawguard.store import sqlite


def _spend_until_stopped(url: str, worker: int, threads: int, out) -> None:
    """One OS process of `threads` clients, each spending 1 cent until the cap stops it."""

    def client(thread: int) -> list[dict]:
        seen = []
        for n in range(200):
            status, body = call(url, "POST", "/api/governance/spend", {
                "agentId": "racer", "teamId": "t1", "costUsdCents": 1,
                "idempotencyKey": f"w{worker}-t{thread}-{n}",
            })
            assert status == 200, body
            seen.append(body)
            if body["stop"]:
                break
        return seen

    with ThreadPoolExecutor(threads) as pool:
        out.put([body for bodies in pool.map(client, range(threads)) for body in bodies])


def test_32_clients_in_4_processes_race_one_cap(tmp_path):
    db = tmp_path / "race.db"
    with Daemon(db) as daemon:
        status, _ = call(daemon.url, "POST", "/api/governance/budgets",
                         {"scope": "team", "scopeId": "t1", "limitUsdCents": 300, "mode": "cap"})
        assert status == 200
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        workers = [ctx.Process(target=_spend_until_stopped, args=(daemon.url, w, 8, out))
                   for w in range(4)]
        for worker in workers:
            worker.start()
        acked = [body for _ in workers for body in out.get(timeout=120)]
        for worker in workers:
            worker.join(30)
            assert worker.exitcode == 0
        _, audit = call(daemon.url, "GET", "/api/governance/audit?eventType=cap_hit")
    hard = [b for b in acked if b["scopes"][0]["crossed"] == "hard"]
    assert len(hard) == 1 and hard[0]["scopes"][0]["spentUsdCents"] == 300
    assert len(audit["audit"]) == 1
    # Every client kept spending until it saw stop; nothing was lost or counted twice.
    assert all(not b["spend"]["duplicate"] for b in acked)
    spent = sum(b["spend"]["costUsdMicros"] for b in acked)
    [(_, stored, ledger)] = sqlite.ledger_check(str(db))
    assert stored == ledger == spent >= 300 * 10_000


def test_kill_9_mid_storm_loses_no_acknowledged_spend(tmp_path):
    db = tmp_path / "crash.db"
    daemon = Daemon(db).start()
    try:
        call(daemon.url, "POST", "/api/governance/budgets",
             {"scope": "agent", "scopeId": "a1", "limitUsdCents": 10**9, "mode": "cap"})
        acked: list[tuple[str, int]] = []
        lock, stop = threading.Lock(), threading.Event()

        def storm(thread: int) -> None:
            for n in range(100_000):
                if stop.is_set():
                    return
                key = f"t{thread}-{n}"
                try:
                    status, body = call(daemon.url, "POST", "/api/governance/spend", {
                        "agentId": "a1", "tenantId": "org", "costUsdCents": 0.0123,
                        "idempotencyKey": key,
                    })
                except OSError:
                    return  # the daemon is gone
                if status == 200:
                    with lock:
                        acked.append((key, body["spend"]["costUsdMicros"]))

        threads = [threading.Thread(target=storm, args=(t,)) for t in range(16)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(acked) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        daemon.kill()  # SIGKILL in the middle of the storm
        stop.set()
        for thread in threads:
            thread.join(30)
        assert len(acked) >= 300
    finally:
        daemon.kill()

    with Daemon(db) as restarted:  # recovery happens on the same file
        status, body = call(restarted.url, "GET", "/api/governance/budgets")
        assert status == 200
    conn = sqlite3.connect(db)
    try:
        stored = dict(
            conn.execute(
                "SELECT substr(idempotency_key, instr(idempotency_key, ':') + 1),"
                " cost_micros FROM spends"
            )
        )
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    assert all(stored.get(key) == micros for key, micros in acked)  # each exactly once (UNIQUE)
    [(_, spent, ledger)] = sqlite.ledger_check(str(db))
    assert spent == ledger == sum(stored.values())
    assert body["budgets"][0]["spentUsdMicros"] == spent
