"""The database file deleted, moved or replaced under a running daemon, and a lost one at start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon import Daemon, call

from clawguard.store import sqlite

pytestmark = pytest.mark.slow

SPEND = {"agentId": "a1", "costUsdCents": 1}
CAP = {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100, "mode": "cap"}


def _failing_closed(url: str) -> bool:
    spend, body = call(url, "POST", "/api/governance/spend", SPEND)
    _, preflight = call(url, "GET", "/api/governance/preflight?agentId=a1")
    ready, _ = call(url, "GET", "/readyz")
    if spend == 200:
        return False
    assert spend == 503 and body["error"] == "store_unavailable", body
    return preflight["allowed"] is False and ready == 503


def _fails_closed_within_a_second(url: str) -> float:
    started = time.monotonic()
    while not _failing_closed(url):
        assert time.monotonic() - started < 1.5, "still serving on a lost database"
    return time.monotonic() - started


def _serve_once(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLAWGUARD_STORAGE_PATH": str(db), "CLAWGUARD_AUTH_MODE": "none",
           "CLAWGUARD_SERVER_PORT": "0"}
    env.pop("CLAWGUARD_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "clawguard", "serve", *args], env=env,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("loss", ["delete", "rename"])
def test_a_database_lost_under_the_daemon_fails_closed_and_blocks_a_restart(tmp_path, loss):
    db = tmp_path / "clawguard.db"
    with Daemon(db) as daemon:
        assert call(daemon.url, "POST", "/api/governance/budgets", CAP)[0] == 200
        assert call(daemon.url, "POST", "/api/governance/spend", SPEND)[0] == 200
        if loss == "delete":
            db.unlink()
        else:
            db.rename(tmp_path / "moved.db")
        _fails_closed_within_a_second(daemon.url)
        assert call(daemon.url, "GET", "/healthz")[0] == 200  # the process itself is fine
        assert daemon.stop() == 0
        # After stop(), which has read the log to its end: its reader thread may lag behind
        # the requests above on a busy machine.
        assert any("CRITICAL" in line or '"critical"' in line for line in daemon.log)
    for name in ("-wal", "-shm"):  # as an operator would clear them before restarting
        Path(f"{db}{name}").unlink(missing_ok=True)

    refused = _serve_once(db)
    assert refused.returncode == 1
    assert str(db) in refused.stderr and "--create" in refused.stderr
    assert not db.exists()  # no empty database was made

    with Daemon(db, "--create") as daemon:  # the operator's explicit choice
        assert call(daemon.url, "GET", "/readyz")[0] == 200
        assert call(daemon.url, "POST", "/api/governance/spend", SPEND)[0] == 200


def test_a_wal_deleted_under_the_daemon_fails_closed(tmp_path):
    db = tmp_path / "clawguard.db"
    with Daemon(db) as daemon:
        assert call(daemon.url, "POST", "/api/governance/spend", SPEND)[0] == 200
        Path(f"{db}-wal").unlink()
        _fails_closed_within_a_second(daemon.url)


def test_a_database_replaced_under_the_daemon_fails_closed(tmp_path):
    db = tmp_path / "clawguard.db"
    other = tmp_path / "other.db"
    sqlite.migrate_database(str(other))
    with Daemon(db) as daemon:
        assert call(daemon.url, "POST", "/api/governance/spend", SPEND)[0] == 200
        os.replace(other, db)
        _fails_closed_within_a_second(daemon.url)


def test_a_fresh_directory_just_starts_and_a_restart_finds_its_database(tmp_path):
    db = tmp_path / "new" / "clawguard.db"
    with Daemon(db) as daemon:
        assert call(daemon.url, "POST", "/api/governance/spend", SPEND)[0] == 200
        assert daemon.stop() == 0
    with Daemon(db) as daemon:
        assert call(daemon.url, "GET", "/readyz")[0] == 200
