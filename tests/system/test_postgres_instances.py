"""Two daemon processes on one PostgreSQL database behave as one daemon.

Both serve the same budgets and approvals: a spend storm split over them
crosses a cap once and loses nothing acknowledged (not even with one of them
SIGKILLed mid-storm), a replayed key charges once whichever gets it, a
decision made on one wakes the caller parked on the other within 100 ms, a
request is decided once however many resolves race on both, and the audit
chain they wrote together verifies.
"""

from __future__ import annotations

import http.client
import itertools
import json
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from daemon import Daemon, call
from engines.conftest import pg_database, pg_server, pg_url  # noqa: F401 - fixtures

from clawguard.store import postgres

pytestmark = pytest.mark.slow


@pytest.fixture
def pair(pg_url: str, tmp_path: Path) -> Iterator[tuple[Daemon, Daemon]]:  # noqa: F811
    first = Daemon(tmp_path / "a.db", storage_url=pg_url, approvals_sweep_ms="100")
    second = Daemon(tmp_path / "b.db", storage_url=pg_url, approvals_sweep_ms="100")
    with first, second:
        yield first, second


def spend_body(n: int, cents: int = 1) -> dict[str, object]:
    return {"agentId": "a1", "teamId": "t1", "costUsdCents": cents, "idempotencyKey": f"k{n}"}


def test_a_spend_storm_over_two_instances_is_one_serial_order(
    pair: tuple[Daemon, Daemon], pg_url: str  # noqa: F811
) -> None:
    a, b = pair
    assert call(a.url, "POST", "/api/governance/budgets",
                {"scope": "agent", "scopeId": "a1", "limitUsdCents": 150, "mode": "cap"})[0] == 200
    assert call(b.url, "POST", "/api/governance/budgets",
                {"scope": "team", "scopeId": "t1", "limitUsdCents": 10_000})[0] == 200
    urls = itertools.cycle([a.url, b.url])
    jobs = [(next(urls), n) for n in range(300)]
    jobs += [(b.url if url == a.url else a.url, n) for url, n in jobs[:100]]  # replays

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(
            lambda job: call(job[0], "POST", "/api/governance/spend", spend_body(job[1])), jobs
        ))
    assert {status for status, _ in answers} == {200}
    fresh = [body for _, body in answers if not body["spend"]["duplicate"]]
    assert len(fresh) == 300  # each key charged once, whichever instance got it
    hard = [body for body in fresh if body["scopes"][0]["crossed"] == "hard"]
    assert len(hard) == 1 and hard[0]["scopes"][0]["spentUsdMicros"] == 1_500_000
    assert sum(body["stop"] for body in fresh) == 300 - 149
    _, audit = call(a.url, "GET", "/api/governance/audit?eventType=budget&limit=1000")
    assert [e["action"] for e in audit["audit"]].count("budget.crossed_hard") == 1
    ledger = {budget_id: (spent, charged) for budget_id, spent, charged
              in postgres.ledger_check(pg_url)}
    assert sorted(ledger.values()) == [(3_000_000, 3_000_000)] * 2
    _, budgets = call(b.url, "GET", "/api/governance/budgets?scope=agent")
    assert budgets["budgets"][0]["spentUsdMicros"] == 3_000_000


def test_nothing_acknowledged_is_lost_when_one_instance_is_killed_mid_storm(
    pair: tuple[Daemon, Daemon], pg_url: str  # noqa: F811
) -> None:
    a, b = pair
    call(a.url, "POST", "/api/governance/budgets",
         {"scope": "agent", "scopeId": "a1", "limitUsdCents": 10**9})
    acknowledged: list[str] = []
    lock = threading.Lock()

    def storm(url: str, start: int) -> None:
        for n in range(start, start + 10_000):
            try:
                status, _ = call(url, "POST", "/api/governance/spend", spend_body(n), timeout=5)
            except OSError:
                return  # the instance is gone
            if status == 200:
                with lock:
                    acknowledged.append(f"k{n}")

    threads = [threading.Thread(target=storm, args=(url, i * 100_000))
               for i, url in enumerate([a.url, a.url, a.url, b.url, b.url, b.url])]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    a.kill()  # SIGKILL, mid-storm
    time.sleep(1.0)
    b.kill()
    for thread in threads:
        thread.join(30)
    with psycopg.connect(pg_url) as conn:
        stored = {
            key for (key,) in conn.execute("SELECT split_part(idempotency_key, ':', 2) FROM spends")
        }
    assert len(acknowledged) > 100
    assert set(acknowledged) <= stored
    [(_, spent, charged)] = postgres.ledger_check(pg_url)
    assert spent == charged == len(stored) * 10_000
    verify = subprocess.run(
        [sys.executable, "-m", "clawguard", "audit", "verify", "--db", pg_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "audit chain ok" in verify.stdout


def test_a_decision_on_one_instance_wakes_the_waiter_on_the_other(
    pair: tuple[Daemon, Daemon],
    pg_url: str,  # noqa: F811
) -> None:
    a, b = pair
    lags = []
    for round_ in range(5):
        answered: dict[str, float | str] = {}

        def ask(tool: str, answered: dict[str, float | str]) -> None:
            _, body = call(
                a.url,
                "POST",
                "/api/tools/approvals",
                {"toolName": tool, "agentId": "a1", "waitMs": 20_000},
            )
            answered["at"] = time.perf_counter()
            answered["resolution"] = body["resolution"]

        asker = threading.Thread(target=ask, args=(f"tool{round_}", answered))
        asker.start()
        pending: list[dict[str, str]] = []
        for _ in range(200):
            pending = call(b.url, "GET", "/api/tools/approvals")[1]["approvals"]
            if pending:
                break
            time.sleep(0.01)
        time.sleep(0.05)  # the caller is parked
        status, _ = call(
            b.url,
            "POST",
            f"/api/tools/approvals/{pending[0]['id']}/resolve",
            {"decision": "allow_once"},
        )
        decided = time.perf_counter()
        assert status == 200
        asker.join(5)
        assert answered["resolution"] == "allow_once"
        assert isinstance(answered["at"], float)
        lags.append(answered["at"] - decided)
    assert max(lags) < 0.1, lags

    # 20 resolves racing on both instances: one decides, 19 hear 409.
    opener = threading.Thread(
        target=call,
        args=(
            a.url,
            "POST",
            "/api/tools/approvals",
            {"toolName": "race", "agentId": "a1", "waitMs": 10_000},
        ),
    )
    opener.start()
    for _ in range(200):
        pending = call(b.url, "GET", "/api/tools/approvals")[1]["approvals"]
        if pending:
            break
        time.sleep(0.01)
    target = f"/api/tools/approvals/{pending[0]['id']}/resolve"
    with ThreadPoolExecutor(20) as pool:
        statuses = list(
            pool.map(
                lambda n: call((a.url, b.url)[n % 2], "POST", target, {"decision": "deny"})[0],
                range(20),
            )
        )
    opener.join(5)
    assert sorted(statuses) == [200] + [409] * 19

    # An expiry is written once, by one instance's sweep, and wakes the waiter.
    status, body = call(
        a.url, "POST", "/api/tools/approvals", {"toolName": "late", "agentId": "a1", "waitMs": 100}
    )
    assert body["resolution"] == "timeout"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE approvals SET expires_at = 0 WHERE id = %s", (body["approvalId"],))
    time.sleep(0.5)
    _, audit = call(b.url, "GET", "/api/governance/audit?eventType=approval&limit=1000")
    assert [e["action"] for e in audit["audit"]].count("approval.expired") == 1


def test_an_approval_asked_on_one_instance_is_streamed_by_the_other(
    pair: tuple[Daemon, Daemon]
) -> None:
    """The console's stream on one daemon hears what happens on the other: the audit
    chain's growth is announced on the LISTEN channel both follow."""
    a, b = pair
    parts = urllib.parse.urlsplit(a.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", "/api/events")
    stream = conn.getresponse()
    assert stream.status == 200
    assert stream.readline() == b": clawguard events\n"
    started = time.perf_counter()
    status, asked = call(b.url, "POST", "/api/tools/approvals",
                         {"toolName": "deploy", "agentId": "a1", "waitMs": 0})
    assert status == 200
    lines = []
    while not lines or lines[-1] != b"\n" or not any(x.startswith(b"data: ") for x in lines):
        lines.append(stream.readline())
    took = time.perf_counter() - started
    conn.close()
    data = json.loads(next(x for x in lines if x.startswith(b"data: "))[6:])
    assert data["type"] == "approval.requested"
    assert data["data"]["approvalId"] == asked["approvalId"]
    assert took < 2
