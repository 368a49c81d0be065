"""Faults survived: a locked, a read-only and a full database give 503s, fail closed, and heal."""

from __future__ import annotations

import asyncio
import resource
import shutil
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import dump
from daemon import Daemon, call

from clawguard.runtime import config
from clawguard.store import sqlite

SPEND = {"agentId": "a1", "costUsdCents": 1}


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


async def _cap(client) -> None:
    resp = await client.post("/api/governance/budgets",
                             json={"scope": "agent", "scopeId": "a1", "limitUsdCents": 100,
                                   "mode": "cap"})
    assert resp.status == 200


async def _assert_failing_closed(client) -> None:
    resp = await client.post("/api/governance/spend", json=SPEND)
    body = await resp.json()
    assert resp.status == 503 and body["error"] == "store_unavailable", body
    preflight = await (await client.get("/api/governance/preflight?agentId=a1")).json()
    assert preflight == {"allowed": False, "reason": "store_unavailable", "scopes": []}
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/healthz")).status == 200  # the process itself is fine


async def _assert_healed(client) -> None:
    preflight = await (await client.get("/api/governance/preflight?agentId=a1")).json()
    assert preflight["allowed"] is True
    resp = await client.post("/api/governance/spend", json=SPEND)
    assert resp.status == 200
    assert (await client.get("/readyz")).status == 200


async def test_a_lock_held_past_the_busy_timeout(make_client, cfg, db_path):
    settings = cfg.model_copy(update={"storage": config.StorageConfig(path=str(db_path),
                                                                      busy_timeout_ms=100)})
    async with make_client(settings) as client:
        await _cap(client)
        before = dump(db_path)
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            await _assert_failing_closed(client)
            assert dump(db_path) == before
        finally:
            other.execute("ROLLBACK")
            other.close()
        await _assert_healed(client)
    assert integrity(db_path) == "ok"


async def test_a_lock_held_briefly_is_waited_for_off_the_loop(make_client, db_path):
    """While another process holds the write lock, the spend waits and everything else is served."""
    async with make_client() as client:
        await _cap(client)
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            spend = asyncio.ensure_future(client.post("/api/governance/spend", json=SPEND))
            for _ in range(20):
                assert (await client.get("/healthz")).status == 200
                preflight = await client.get("/api/governance/preflight?agentId=a1")
                assert (await preflight.json())["allowed"] is True
            assert not spend.done()  # waiting for the lock, not refused and not charged
        finally:
            other.execute("ROLLBACK")
            other.close()
        resp = await spend
        assert resp.status == 200, await resp.text()
    [(_, spent, ledger)] = sqlite.ledger_check(str(db_path))
    assert spent == ledger == 10_000


def _chattr(flag: str, *paths: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True).returncode == 0


async def test_a_read_only_database_file(make_client, db_path):
    """`chattr +i`: read-only even for root, even through the daemon's open file handles."""
    async with make_client() as client:
        await _cap(client)
        files = [db_path, db_path.with_name(db_path.name + "-wal")]
        if not _chattr("+i", *files):
            pytest.skip("chattr +i is not available on this filesystem")
        try:
            await _assert_failing_closed(client)
        finally:
            _chattr("-i", *files)
        await _assert_healed(client)
    assert integrity(db_path) == "ok"
    [(_, spent, ledger)] = sqlite.ledger_check(str(db_path))
    assert spent == ledger == 10_000


def test_a_full_disk(tmp_path):
    """A file-size limit on the daemon process stands in for a full disk; lifting it heals."""
    db = tmp_path / "full.db"
    with Daemon(db) as daemon:
        assert daemon.process is not None
        status, _ = call(daemon.url, "POST", "/api/governance/budgets",
                         {"scope": "agent", "scopeId": "a1", "limitUsdCents": 10**9, "mode": "cap"})
        assert status == 200
        limit = max(db.stat().st_size, Path(f"{db}-wal").stat().st_size) + 64 * 1024
        infinity = resource.RLIM_INFINITY  # only the soft limit moves: no privilege needed
        resource.prlimit(daemon.process.pid, resource.RLIMIT_FSIZE, (limit, infinity))
        acked, refused = 0, 0
        for n in range(20_000):
            status, body = call(daemon.url, "POST", "/api/governance/spend",
                                {**SPEND, "taskId": "x" * 150, "idempotencyKey": f"k{n}"})
            if status == 200:
                acked += body["spend"]["costUsdMicros"]
            else:
                assert status == 503 and body["error"] == "store_unavailable"
                refused += 1
                if refused == 3:
                    break
        assert refused == 3, "the file-size limit was never reached"
        status, preflight = call(daemon.url, "GET", "/api/governance/preflight?agentId=a1")
        assert preflight["allowed"] is False and preflight["reason"] == "store_unavailable"

        resource.prlimit(daemon.process.pid, resource.RLIMIT_FSIZE, (infinity, infinity))
        status, preflight = call(daemon.url, "GET", "/api/governance/preflight?agentId=a1")
        assert preflight["allowed"] is True
        status, body = call(daemon.url, "POST", "/api/governance/spend", SPEND)
        assert status == 200
        acked += body["spend"]["costUsdMicros"]
        assert daemon.stop() == 0
    assert integrity(db) == "ok"
    [(_, spent, ledger)] = sqlite.ledger_check(str(db))
    assert spent == ledger == acked  # nothing half-written, nothing acknowledged and lost


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_slow_clients_are_cut_off(tmp_path):
    """A body that never finishes gets 408; headers that never finish lose the connection."""
    with Daemon(tmp_path / "slow.db", server_client_timeout_ms="300") as daemon:
        with _connect(daemon.url) as slow_body:
            slow_body.sendall(b"POST /api/governance/spend HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                              b'{"agentId": "a1", ')
            answer = slow_body.recv(65536).decode()
        assert answer.startswith("HTTP/1.1 408") and '"error": "request_timeout"' in answer
        with _connect(daemon.url) as slow_headers:
            slow_headers.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and nothing more
            started = time.monotonic()
            assert slow_headers.recv(65536) == b""  # closed by the daemon
            assert time.monotonic() - started < 5
        assert call(daemon.url, "GET", "/healthz")[0] == 200  # the daemon itself is fine


async def test_started_on_a_read_only_database_it_fails_closed_from_the_first_request(
    make_client, db_path
):
    """Not only after the first failed write: readyz and the preflight know at once."""
    async with make_client() as client:
        await _cap(client)
    wal = db_path.with_name(db_path.name + "-wal")
    held = sqlite3.connect(db_path)  # keeps the -wal when the last connection closes
    held.execute("SELECT 1 FROM budgets").fetchall()
    if not _chattr("+i", db_path, wal):
        held.close()
        pytest.skip("chattr +i is not available on this filesystem")
    held.close()
    try:
        before = dump(db_path)
        async with make_client() as client:
            assert (await client.get("/readyz")).status == 503
            preflight = await (await client.get("/api/governance/preflight?agentId=a1")).json()
            assert preflight == {"allowed": False, "reason": "store_unavailable", "scopes": []}
            resp = await client.post("/api/governance/spend", json=SPEND)
            assert resp.status == 503 and (await resp.json())["error"] == "store_unavailable"
            assert (await client.get("/healthz")).status == 200
        assert dump(db_path) == before
    finally:
        _chattr("-i", db_path, wal)
    assert integrity(db_path) == "ok"
