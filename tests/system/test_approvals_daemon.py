"""Approvals across a real daemon's life: SIGKILL and restart, SIGTERM with parked waits."""

from __future__ import annotations

import json
import sqlite3
import time
from concurrent.futures import Future, ThreadPoolExecutor

from daemon import Daemon, call

TOOLS = "/api/tools/approvals"


def pending(url: str, count: int, within: float = 10) -> list[dict]:
    """The pending queue once it holds `count` rows."""
    deadline = time.monotonic() + within
    while True:
        status, body = call(url, "GET", TOOLS)
        assert status == 200
        if len(body["approvals"]) == count:
            return body["approvals"]
        assert time.monotonic() < deadline, body
        time.sleep(0.01)


def stored(db, approval_id: str) -> tuple:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT status, expires_at, resolved_at FROM approvals WHERE id = ?", (approval_id,)
        ).fetchone()
    finally:
        conn.close()


def audited(db, action: str) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [json.loads(d)["approvalId"] for (d,) in conn.execute(
            "SELECT details FROM audit WHERE action = ? ORDER BY seq", (action,)
        )]
    finally:
        conn.close()


def test_pending_requests_survive_sigkill_and_a_reattached_waiter_hears_the_decision(tmp_path):
    db = tmp_path / "restart.db"
    # A request whose time to live runs out while the daemon is down.
    with Daemon(db, approvals_ttl_ms="300") as short:
        status, body = call(short.url, "POST", TOOLS,
                            {"toolName": "rm", "agentId": "a1", "waitMs": 0})
        doomed, opened_at = body["approvalId"], time.monotonic()
        short.kill()
    time.sleep(max(0.0, opened_at + 0.3 - time.monotonic()))
    # The periodic sweep is an hour away: only the start-up sweep can expire it.
    daemon = Daemon(db, approvals_sweep_ms="3600000").start()
    pool = ThreadPoolExecutor(4)
    try:
        assert stored(db, doomed)[0] == "expired"
        assert audited(db, "approval.expired") == [doomed]
        # Requests that outlive a crash, two of them with callers parked on them.
        parked: list[Future[tuple[int, dict]]] = [
            pool.submit(call, daemon.url, "POST", TOOLS,
                        {"toolName": f"tool-{n}", "agentId": "a1"}) for n in range(2)
        ]
        status, body = call(daemon.url, "POST", "/api/governance/delegation-approval",
                            {"leaderAgentId": "lead", "waitMs": 0})
        assert status == 200 and body["resolution"] == "timeout"
        before = {row["id"]: row for row in pending(daemon.url, 3)}
        daemon.kill()  # SIGKILL: no drain; the parked callers lose their connections
        for caller in parked:
            assert isinstance(caller.exception(10), OSError)
        with Daemon(db, approvals_sweep_ms="3600000") as restarted:
            after = {row["id"]: row for row in pending(restarted.url, 3)}
            assert after == before  # still pending, with the expiry they had
            target = next(iter(after))
            again = pool.submit(call, restarted.url, "GET", f"{TOOLS}/{target}?waitMs=20000")
            time.sleep(0.2)  # the daemon's parked count is not visible from here
            assert not again.done()
            status, body = call(restarted.url, "POST", f"{TOOLS}/{target}/resolve",
                                {"decision": "allow_once", "resolvedBy": "boss"})
            assert status == 200
            status, attached = again.result(10)
            assert status == 200 and attached["approval"] == body["approval"]
            assert attached["approval"]["status"] == "allow_once"
    finally:
        daemon.kill()
        pool.shutdown(wait=False, cancel_futures=True)
    assert audited(db, "approval.expired") == [doomed]


def test_sigterm_answers_parked_waits_with_timeout_before_exiting(tmp_path):
    db = tmp_path / "drain.db"
    daemon = Daemon(db).start()
    try:
        with ThreadPoolExecutor(4) as pool:
            parked = [pool.submit(call, daemon.url, "POST", TOOLS,
                                  {"toolName": "rm", "agentId": f"a{n}"}) for n in range(3)]
            rows = pending(daemon.url, 3)
            attached = pool.submit(call, daemon.url, "GET", f"{TOOLS}/{rows[0]['id']}?waitMs=60000")
            time.sleep(0.2)  # let the re-attach park too
            assert not attached.done()
            started = time.monotonic()
            assert daemon.stop(timeout=15) == 0
            took = time.monotonic() - started
            answers = [caller.result(5) for caller in parked]
            status, body = attached.result(5)
        assert all(status == 200 and body["resolution"] == "timeout" for status, body in answers)
        assert status == 200 and body["approval"]["status"] == "pending"
        assert took < 5, f"the drain waited {took:.1f} s on parked requests"
    finally:
        daemon.kill()
    # The rows stay pending for a re-attach after the restart.
    assert {stored(db, row["id"])[0] for row in rows} == {"pending"}
