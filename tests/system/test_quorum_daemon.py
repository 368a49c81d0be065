"""A quorum on a real daemon: a 2-stage approval, 2 of 3 leaders then a security leader,
each voting from a process of its own with `clawguard approvals vote`, the daemon killed
and restarted in the middle (the votes are kept), and the executor's waiting client
riding the restart out to hear the outcome once. And two daemons on one PostgreSQL
database: votes on one wake the caller parked on the other only with the outcome."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import staged
from daemon import Daemon, call
from engines.conftest import pg_database, pg_server, pg_url  # noqa: F401 - fixtures

from clawguard.core import principals
from clawguard.runtime import config
from clawguard.store import engines

STAGES = [{"name": "review", "gates": [{"count": 2}]},
          {"name": "security", "gates": [{"group": "security", "count": 1}]}]
PEOPLE = (("runner", "executor", None), ("ann", "leader", None), ("bob", "leader", None),
          ("cat", "leader", "security"), ("root", "admin", None))


def clawguard(*argv: str, key: str | None = None, url: str | None = None
              ) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLAWGUARD_")}
    if url is not None and key is not None:
        environ |= {"CLAWGUARD_URL": url, "CLAWGUARD_API_KEY": key}
    return subprocess.run([sys.executable, "-m", "clawguard", *argv], capture_output=True,
                          text=True, env=environ, timeout=60, stdin=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def key_id(db: Path, name: str) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("SELECT id FROM api_keys WHERE name = ?", (name,)).fetchone()[0])
    finally:
        conn.close()


async def open_staged(db: Path, requester: principals.Principal) -> str:
    """Open it as the gate would, through the store, on the daemon's database file."""
    store = engines.open_store(config.StorageConfig(path=str(db)),
                               lambda: time.time_ns() // 1_000_000)
    await store.open()
    try:
        opened = await store.open_approval(staged.new(STAGES, requester=requester), 600_000)
        assert opened.approval is not None
        return opened.approval.id
    finally:
        await store.close()


WAITER = """
import json, sys
from clawguard import client
with client.Client(sys.argv[1], sys.argv[2], ride_out_s=60) as api:
    approval = api.wait_for_approval(sys.argv[3], wait_ms=90_000)
print(json.dumps(approval.to_json()))
"""


def test_a_two_stage_quorum_from_three_leader_processes_survives_a_restart(tmp_path):
    db = tmp_path / "quorum.db"
    keys = {}
    for name, role, groups in PEOPLE:
        made = clawguard("keys", "create", "--role", role, "--name", name, "--db", str(db),
                         *(("--groups", groups) if groups else ()))
        assert made.returncode == 0, made.stderr
        keys[name] = made.stdout.strip()
    port = str(free_port())
    settings = {"auth_mode": "keys", "server_port": port, "approvals_sweep_ms": "3600000"}
    daemon = Daemon(db, **settings).start()
    waiter = None
    try:
        runner = principals.Principal(key_id(db, "runner"), "runner", "executor")
        approval_id = asyncio.run(open_staged(db, runner))
        waiter = subprocess.Popen(
            [sys.executable, "-c", WAITER, daemon.url, keys["runner"], approval_id],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("CLAWGUARD_")})

        def vote(who: str, decision: str = "allow_always") -> subprocess.CompletedProcess[str]:
            return clawguard("approvals", "vote", approval_id, "--decision", decision,
                             "--json", key=keys[who], url=daemon.url)

        first = vote("ann")
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["approval"]["status"] == "pending"
        assert vote("ann").returncode == 1  # one vote per key: 409
        assert vote("runner").returncode == 5  # an executor key may not vote: 403

        daemon.kill()  # SIGKILL in the middle of the quorum
        daemon = Daemon(db, **settings).start()
        shown = clawguard("approvals", "show", approval_id, "--json", key=keys["cat"],
                          url=daemon.url)
        assert shown.returncode == 0, shown.stderr
        kept = json.loads(shown.stdout)["approval"]
        assert kept["status"] == "pending"
        assert [v["keyName"] for v in kept["stages"][0]["gates"][0]["votes"]] == ["ann"]
        assert waiter.poll() is None  # still waiting, through the restart

        second = vote("bob", "allow_once")
        assert second.returncode == 0, second.stderr
        stages = json.loads(second.stdout)["approval"]["stages"]
        assert [s["status"] for s in stages] == ["approved", "pending"]
        mine = clawguard("approvals", "list", "--mine", "--json", key=keys["ann"],
                         url=daemon.url)
        assert json.loads(mine.stdout)["approvals"] == []  # ann voted; stage 2 is security
        mine = clawguard("approvals", "list", "--mine", "--json", key=keys["cat"],
                         url=daemon.url)
        assert [a["id"] for a in json.loads(mine.stdout)["approvals"]] == [approval_id]

        third = vote("cat", "conditional")
        assert third.returncode == 2  # conditional needs --conditions: 400
        third = clawguard("approvals", "vote", approval_id, "--decision", "conditional",
                          "--conditions", "deploy behind the flag", key=keys["cat"],
                          url=daemon.url)
        assert third.returncode == 0, third.stderr
        assert "stage security: approved" in third.stdout

        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
        heard = json.loads(out)
        assert heard["status"] == "approved"
        assert heard["stages"][1]["gates"][0]["votes"][0]["conditions"] == (
            "deploy behind the flag")
        waived = clawguard("approvals", "waive", approval_id, "--reason", "late",
                           key=keys["root"], url=daemon.url)
        assert waived.returncode == 1  # decided already: 409
    finally:
        if waiter is not None and waiter.poll() is None:
            waiter.kill()
            waiter.wait(10)
        daemon.kill()
    conn = sqlite3.connect(db)
    try:
        resolved = [json.loads(d)["approvalId"] for (d,) in conn.execute(
            "SELECT details FROM audit WHERE action = 'approval.resolved'")]
    finally:
        conn.close()
    assert resolved == [approval_id]  # one outcome


async def open_on(settings: config.StorageConfig, stages: list[dict[str, Any]]) -> str:
    store = engines.open_store(settings, lambda: time.time_ns() // 1_000_000)
    await store.open()
    try:
        opened = await store.open_approval(staged.new(stages), 600_000)
        assert opened.approval is not None
        return opened.approval.id
    finally:
        await store.close()


def test_votes_on_two_postgresql_instances_wake_the_other_ones_waiter_once(
    pg_url: str, tmp_path: Path  # noqa: F811
) -> None:
    """Daemons without keys: voters are told apart by the names they give (resolvedBy)."""
    approval_id = asyncio.run(open_on(config.StorageConfig(url=pg_url),
                                      [{"gates": [{"count": 3}]}]))
    with Daemon(tmp_path / "a.db", storage_url=pg_url) as a, \
            Daemon(tmp_path / "b.db", storage_url=pg_url) as b, ThreadPoolExecutor(8) as pool:
        parked = pool.submit(call, a.url, "GET", f"/api/tools/approvals/{approval_id}"
                             "?waitMs=60000")
        time.sleep(0.5)  # the daemon's parked count is not visible from here
        resolve = f"/api/tools/approvals/{approval_id}/resolve"
        for name in ("ann", "bob"):
            status, body = call(b.url, "POST", resolve,
                                {"decision": "allow_once", "resolvedBy": name})
            assert status == 200 and body["approval"]["status"] == "pending"
        time.sleep(0.5)
        assert not parked.done()  # a vote that leaves it pending wakes nobody
        answers = list(pool.map(
            lambda n: call(b.url if n % 2 else a.url, "POST", resolve,
                           {"decision": "allow_once", "resolvedBy": f"l{n}"}), range(8)))
        assert sorted(status for status, _ in answers) == [200] + [409] * 7
        status, body = parked.result(10)
        assert status == 200 and body["approval"]["status"] == "approved"
        votes = body["approval"]["stages"][0]["gates"][0]["votes"]
        assert [v["keyName"] for v in votes][:2] == ["ann", "bob"] and len(votes) == 3
