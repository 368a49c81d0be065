"""The tamper-evident audit log: edits, deletions, cut tails and forgeries are named."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from clawguard.core import audit
from clawguard.store import sqlite


async def _fill(client, rows: int) -> dict:
    for n in range(rows):
        resp = await client.post("/api/governance/budgets",
                                 json={"scope": "agent", "scopeId": f"a{n}", "limitUsdCents": 5})
        assert resp.status == 200
    return await (await client.get("/api/governance/audit/head")).json()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clawguard", *args], capture_output=True,
                          text=True)


def verify_cli(db, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("audit", "verify", "--db", str(db), *extra)


def tamper(db, *statements: str) -> None:
    """What someone with the file would do: drop the guards, then edit."""
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("DROP TRIGGER audit_no_delete")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


async def test_intact_chain_verifies_and_head_matches(client, db_path):
    head = await _fill(client, 5)
    assert head["seq"] == 5 and len(head["hash"]) == 64
    result = verify_cli(db_path, "--head", f"{head['seq']}:{head['hash']}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 rows checked" in result.stdout and head["hash"] in result.stdout


async def test_an_empty_log_has_the_genesis_head(client):
    head = await (await client.get("/api/governance/audit/head")).json()
    assert head == {"seq": 0, "hash": audit.GENESIS}


@pytest.mark.parametrize(
    ("statements", "bad_row", "words"),
    [
        (["UPDATE audit SET details = replace(details, '\"limitUsdCents\":5',"
          " '\"limitUsdCents\":9') WHERE seq = 3"], 3, "edited"),
        (["UPDATE audit SET action = 'budget.deleted' WHERE seq = 2"], 2, "edited"),
        (["DELETE FROM audit WHERE seq = 3"], 4, "removed"),
        (["INSERT INTO audit VALUES (7, 'budget', 'budget.set', 'x', '{}', 1, "
          "(SELECT hash FROM audit WHERE seq = 6), 'f00d')"], 7, "forged"),
        (["UPDATE audit SET seq = seq + 100 WHERE seq >= 4",
          "INSERT INTO audit VALUES (4, 'budget', 'budget.set', 'x', '{}', 1, 'ab', 'cd')",
          "UPDATE audit SET seq = seq - 99 WHERE seq >= 104"], 4, "inserted"),
    ],
    ids=["edit-details", "edit-action", "delete-middle", "forge-tail", "insert-middle"],
)
async def test_tampering_is_named(client, db_path, statements, bad_row, words):
    await _fill(client, 6)
    tamper(db_path, *statements)
    result = verify_cli(db_path)
    assert result.returncode == 1
    assert f"BROKEN at row {bad_row}" in result.stdout and words in result.stdout


async def test_a_cut_tail_is_caught_only_against_a_saved_head(client, db_path):
    head = await _fill(client, 6)
    tamper(db_path, "DELETE FROM audit WHERE seq >= 5")
    assert verify_cli(db_path).returncode == 0  # a shorter chain is still a chain...
    result = verify_cli(db_path, "--head", f"{head['seq']}:{head['hash']}")
    assert result.returncode == 1 and "cut from the end" in result.stdout  # ...the anchor says no


async def test_export_writes_every_row_as_json_lines(client, db_path):
    await _fill(client, 3)
    result = run_cli("audit", "export", "--db", str(db_path))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert rows[1]["prevHash"] == rows[0]["hash"] and rows[0]["details"]["scopeId"] == "a0"


def test_verify_on_a_missing_file_says_so(tmp_path):
    result = verify_cli(tmp_path / "nope.db")
    assert result.returncode == 1 and "no database" in result.stderr
    assert not (tmp_path / "nope.db").exists()


def test_verify_refuses_a_malformed_head(db_path):
    sqlite.migrate_database(str(db_path))
    assert verify_cli(db_path, "--head", "abc").returncode == 2


async def test_audit_rows_carry_the_fields_clawboos_client_reads(client):
    """Clawboo's governance panel reads id, eventType, agentId, taskId, teamId, tenantId,
    summary (a JSON string of the scrubbed details) and createdAt on every row."""
    await client.post("/api/governance/budgets", json={
        "scope": "team", "scopeId": "t1", "limitUsdCents": 1, "mode": "cap"})
    await client.post("/api/governance/spend", json={
        "agentId": "a1", "teamId": "t1", "tenantId": "org", "costUsdCents": 2,
        "taskId": "task-9"})
    rows = (await (await client.get("/api/governance/audit")).json())["audit"]
    crossed = next(row for row in rows if row["action"] == "budget.crossed_hard")
    assert {key: crossed[key] for key in ("eventType", "agentId", "taskId", "teamId")} == {
        "eventType": "budget", "agentId": "a1", "taskId": "task-9", "teamId": "t1"}
    assert crossed["tenantId"] is None  # the crossing is the team's, not the tenant's
    assert json.loads(crossed["summary"]) == crossed["details"]
    assert isinstance(crossed["id"], int) and isinstance(crossed["createdAt"], int)


@pytest.mark.parametrize("stored", ["{not json", "[1, 2]", "null"])
async def test_a_row_with_broken_details_is_shown_raw_not_a_500(client, db_path, stored):
    await _fill(client, 3)
    tamper(db_path, f"UPDATE audit SET details = '{stored}' WHERE seq = 2")
    resp = await client.get("/api/governance/audit")
    assert resp.status == 200, await resp.text()
    rows = {r["id"]: r for r in (await resp.json())["audit"]}
    assert rows[2]["detailsValid"] is False and rows[2]["detailsRaw"] == stored
    assert rows[2]["details"] == {}
    assert rows[1]["detailsValid"] is True and rows[1]["detailsRaw"] is None
    assert rows[1]["details"]["scopeId"] == "a0"
    exported = run_cli("audit", "export", "--db", str(db_path))
    assert exported.returncode == 0, exported.stderr
    assert [json.loads(line)["detailsValid"] for line in exported.stdout.splitlines()] == [
        True, False, True]
    verdict = verify_cli(db_path)
    assert verdict.returncode == 1 and "row 2" in verdict.stdout
