"""`audit export` and `audit verify`, the two local commands a client of the head and of a pipe
meets: a reader that leaves early, and the head saved as GET /api/governance/audit/head sent it."""

from __future__ import annotations

import json
import subprocess
import sys


async def _fill(client, rows: int) -> dict:
    for n in range(rows):
        resp = await client.post("/api/governance/budgets", json={
            "scope": "agent", "scopeId": f"agent-{n:04d}-" + "x" * 150, "limitUsdCents": 5})
        assert resp.status == 200
    return await (await client.get("/api/governance/audit/head")).json()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clawguard", *args], capture_output=True,
                          text=True, timeout=60)


def export_first_line(db_path) -> tuple[dict, int, bytes]:
    """`audit export | head -n 1`: read one line, leave; (that line, exit code, stderr)."""
    export = subprocess.Popen(
        [sys.executable, "-m", "clawguard", "audit", "export", "--db", str(db_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert export.stdout is not None and export.stderr is not None
        first = json.loads(export.stdout.readline())
        export.stdout.close()
        return first, export.wait(30), export.stderr.read()
    finally:
        export.kill()
        export.wait()
        if export.stderr is not None:
            export.stderr.close()


async def test_audit_export_ends_quietly_when_its_reader_leaves(client, db_path):
    await _fill(client, 300)  # about 100 kB of JSON lines: more than a pipe holds
    first, code, stderr = export_first_line(db_path)  # the file, not the server: no await
    assert code == 0
    assert stderr == b""  # no traceback, no "Exception ignored"
    assert first["id"] == 1 and first["action"] == "budget.set"


async def test_audit_verify_takes_the_head_as_the_api_answers_it(client, db_path):
    head = await _fill(client, 3)
    answered = json.dumps(head)  # {"seq": 3, "hash": "..."}
    ok = cli("audit", "verify", "--db", str(db_path), "--head", answered)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"head 3:{head['hash']}" in ok.stdout
    colon = cli("audit", "verify", "--db", str(db_path), "--head", f"3:{head['hash']}")
    assert colon.returncode == 0, colon.stdout + colon.stderr

    other = json.dumps({"seq": 3, "hash": "0" * 64, "extra": 1})
    assert cli("audit", "verify", "--db", str(db_path), "--head", other).returncode == 1
    later = json.dumps({"seq": 4, "hash": head["hash"]})  # a tail was cut
    assert cli("audit", "verify", "--db", str(db_path), "--head", later).returncode == 1
    for wrong in ('{"seq": 3}', json.dumps({"seq": "3", "hash": head["hash"]}), "{not json",
                  json.dumps({"seq": True, "hash": head["hash"]})):
        refused = cli("audit", "verify", "--db", str(db_path), "--head", wrong)
        assert refused.returncode == 2, wrong
        assert "SEQ:HASH" in refused.stderr and "audit/head" in refused.stderr
