"""SIGTERM drains: in-flight spends are answered and stored, parked waits hear `timeout`, exit 0."""

from __future__ import annotations

import sqlite3
import threading
import time

from daemon import Daemon, call

from clawguard.store import sqlite


def test_sigterm_during_a_spend_storm_stores_every_acknowledged_spend(tmp_path):
    db = tmp_path / "drain.db"
    daemon = Daemon(db).start()
    try:
        call(daemon.url, "POST", "/api/governance/budgets",
             {"scope": "team", "scopeId": "t1", "limitUsdCents": 10**9, "mode": "cap"})
        acked: list[str] = []
        lock = threading.Lock()

        def storm(thread: int) -> None:
            for n in range(100_000):
                key = f"t{thread}-{n}"
                try:
                    status, _ = call(daemon.url, "POST", "/api/governance/spend",
                                     {"teamId": "t1", "costUsdCents": 0.5, "idempotencyKey": key})
                except OSError:
                    return  # the daemon stopped accepting
                if status == 200:
                    with lock:
                        acked.append(key)

        waiter_answer: list[dict] = []

        def park() -> None:
            waiter_answer.append(call(daemon.url, "POST", "/api/tools/approvals",
                                      {"toolName": "deploy", "agentId": "a1"})[1])

        parked = threading.Thread(target=park)
        parked.start()
        threads = [threading.Thread(target=storm, args=(t,)) for t in range(12)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(acked) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert daemon.stop() == 0  # SIGTERM mid-storm, and a clean exit
        for thread in (*threads, parked):
            thread.join(30)
    finally:
        daemon.kill()
    assert waiter_answer and waiter_answer[0]["resolution"] == "timeout"
    assert any("stopped" in line for line in daemon.log)
    conn = sqlite3.connect(db)
    try:
        stored = {
            key
            for (key,) in conn.execute(
                "SELECT substr(idempotency_key, instr(idempotency_key, ':') + 1) FROM spends"
            )
        }
        pending = conn.execute("SELECT status FROM approvals").fetchall()
    finally:
        conn.close()
    assert len(acked) >= 200 and set(acked) <= stored
    assert pending == [("pending",)]  # a drained wait leaves its request for a re-attach
    [(_, spent, ledger)] = sqlite.ledger_check(str(db))
    assert spent == ledger == 5_000 * len(stored)
