"""`clawguard ledger verify`: an edited budget total is caught though the audit chain holds."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from daemon import Daemon, call


def ledger_verify(db) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clawguard", "ledger", "verify", "--db", str(db)],
                          capture_output=True, text=True, timeout=60)


def test_an_edited_spent_fails_ledger_verify_and_passes_audit_verify(tmp_path):
    db = tmp_path / "ledger.db"
    with Daemon(db) as daemon:
        call(daemon.url, "POST", "/api/governance/budgets",
             {"scope": "team", "scopeId": "t1", "limitUsdCents": 100, "mode": "cap"})
        for _ in range(3):
            status, _ = call(daemon.url, "POST", "/api/governance/spend",
                             {"teamId": "t1", "costUsdCents": 1})
            assert status == 200
        daemon.stop()
    intact = ledger_verify(db)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "ledger ok: 1 budgets" in intact.stdout
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE budgets SET spent_micros = 0")
    broken = ledger_verify(db)
    assert broken.returncode == 1
    assert "spent 0 micros, but its charges sum to 30000" in broken.stdout
    audit = subprocess.run([sys.executable, "-m", "clawguard", "audit", "verify", "--db",
                            str(db)], capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0  # what only the ledger check can see
