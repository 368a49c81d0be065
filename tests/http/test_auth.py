"""Keys and roles: the role table for every route, refusals audited, no key ever shown."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import dump
from daemon import Daemon, call

from clawguard.core import errors, principals
from clawguard.http import access, console, routes, state
from clawguard.runtime import config
from clawguard.services import refusals
from clawguard.store import sqlite

ROLES = ("executor", "leader", "operator", "admin")

# One well-formed request per route, so that an allowed role gets a real answer.
SAMPLES: dict[tuple[str, str], tuple[str, dict | None]] = {
    ("GET", "/healthz"): ("/healthz", None),
    ("GET", "/readyz"): ("/readyz", None),
    ("GET", "/openapi.json"): ("/openapi.json", None),
    ("GET", "/metrics"): ("/metrics", None),
    ("GET", "/api/governance/budgets"): ("/api/governance/budgets", None),
    ("POST", "/api/governance/budgets"): (
        "/api/governance/budgets", {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100}),
    ("DELETE", "/api/governance/budgets/{scope}/{scopeId}"): (
        "/api/governance/budgets/agent/a1", None),
    ("POST", "/api/governance/budgets/{scope}/{scopeId}/resume"): (
        "/api/governance/budgets/agent/a1/resume", {}),
    ("POST", "/api/governance/spend"): (
        "/api/governance/spend", {"agentId": "a1", "costUsdCents": 1}),
    ("GET", "/api/governance/preflight"): ("/api/governance/preflight?agentId=a1", None),
    ("GET", "/api/governance/spend/summary"): ("/api/governance/spend/summary?groupBy=agent",
                                              None),
    ("GET", "/api/governance/audit"): ("/api/governance/audit", None),
    ("GET", "/api/governance/audit/head"): ("/api/governance/audit/head", None),
    # waitMs 0: the handshake answers `timeout` at once instead of blocking the test.
    ("POST", "/api/governance/delegation-approval"): (
        "/api/governance/delegation-approval", {"leaderAgentId": "lead", "waitMs": 0}),
    ("POST", "/api/tools/approvals"): (
        "/api/tools/approvals", {"toolName": "rm", "agentId": "a1", "waitMs": 0}),
    ("GET", "/api/tools/approvals"): ("/api/tools/approvals", None),
    ("GET", "/api/tools/approvals/{id}"): ("/api/tools/approvals/apr_0000000000000000", None),
    ("POST", "/api/tools/approvals/{id}/resolve"): (
        "/api/tools/approvals/apr_0000000000000000/resolve", {"decision": "deny"}),
    ("POST", "/api/tools/approvals/{id}/waive"): (
        "/api/tools/approvals/apr_0000000000000000/waive", {"reason": "ticket SEC-1"}),
    ("GET", "/api/tools/approvals/grants"): ("/api/tools/approvals/grants", None),
    ("DELETE", "/api/tools/approvals/grants/{id}"): (
        "/api/tools/approvals/grants/grt_0000000000000000", None),
    ("POST", "/api/governance/holds"): (
        "/api/governance/holds", {"agentId": "a1", "amountUsdCents": 1, "idempotencyKey": "k"}),
    ("GET", "/api/governance/holds/{id}"): ("/api/governance/holds/hld_0000000000000000", None),
    ("POST", "/api/governance/holds/{id}/commit"): (
        "/api/governance/holds/hld_0000000000000000/commit", {"costUsdCents": 1}),
    ("POST", "/api/governance/holds/{id}/release"): (
        "/api/governance/holds/hld_0000000000000000/release", None),
    ("POST", "/api/governance/runs"): ("/api/governance/runs", {"agentId": "a1"}),
    ("GET", "/api/governance/runs"): ("/api/governance/runs", None),
    ("GET", "/api/governance/runs/{id}"): ("/api/governance/runs/run_0000000000000000", None),
    ("POST", "/api/governance/runs/{id}/end"): (
        "/api/governance/runs/run_0000000000000000/end", None),
    ("POST", "/api/governance/runs/{id}/events"): (
        "/api/governance/runs/run_0000000000000000/events", {"kind": "tool-call"}),
    ("GET", "/api/tenants/{tenantId}/quota"): ("/api/tenants/org/quota", None),
    ("PATCH", "/api/tenants/{tenantId}/quota"): (
        "/api/tenants/org/quota", {"runs_per_hour": 5}),
    ("GET", "/api/approvals"): ("/api/approvals", None),
    ("POST", "/api/approvals"): (
        "/api/approvals", {"agentId": "a1", "action": "deny", "toolName": "rm"}),
    ("GET", "/api/guardrails"): ("/api/guardrails", None),
    ("POST", "/api/guardrails"): (
        "/api/guardrails", {"name": "p-x", "rules": [{"decision": "ALLOW"}]}),
    ("POST", "/api/guardrails/evaluate"): ("/api/guardrails/evaluate", {"action": {"tool": "t"}}),
    ("GET", "/api/guardrails/{id}"): ("/api/guardrails/grd_0000000000000000", None),
    ("PATCH", "/api/guardrails/{id}"): ("/api/guardrails/grd_0000000000000000", {}),
    ("DELETE", "/api/guardrails/{id}"): ("/api/guardrails/grd_0000000000000000", None),
    ("GET", "/api/guardrails/{id}/versions"): (
        "/api/guardrails/grd_0000000000000000/versions", None),
    ("POST", "/api/guardrails/{id}/versions/{n}/rollback"): (
        "/api/guardrails/grd_0000000000000000/versions/1/rollback", {}),
    ("GET", "/api/tools"): ("/api/tools", None),
    ("POST", "/api/tools"): ("/api/tools", {"name": "t.x", "categories": ["other"]}),
    ("POST", "/api/tools/{name}/deprecate"): ("/api/tools/t.none/deprecate", {"reason": "r"}),
    ("POST", "/api/tools/{name}/archive"): ("/api/tools/t.none/archive", None),
    ("GET", "/api/tool-policies"): ("/api/tool-policies", None),
    ("POST", "/api/tool-policies"): ("/api/tool-policies", {"tool_name": "t.x", "allowed": True}),
    ("DELETE", "/api/tool-policies/{id}"): ("/api/tool-policies/tpol_none", None),
    ("GET", "/api/role-policy-overrides"): ("/api/role-policy-overrides", None),
    ("POST", "/api/role-policy-overrides"): (
        "/api/role-policy-overrides", {"role": "r", "tool_name": "t.x", "allowed": True}),
    ("DELETE", "/api/role-policy-overrides/{id}"): ("/api/role-policy-overrides/rpo_none", None),
    ("GET", "/api/keys"): ("/api/keys", None),
    ("POST", "/api/keys"): ("/api/keys", {"role": "executor"}),
    ("DELETE", "/api/keys/{id}"): ("/api/keys/key_000000000000", None),
    ("POST", "/api/governance/authorize"): (
        "/api/governance/authorize", {"agentId": "a1", "tool": "t.x", "waitMs": 0}),
    ("GET", "/api/governance/receipts/{id}"): ("/api/governance/receipts/rcp_none", None),
    ("GET", "/api/governance/settings"): ("/api/governance/settings", None),
    ("PATCH", "/api/governance/settings"): ("/api/governance/settings", {}),
    ("GET", "/api/governance/enforcement/check"): (
        "/api/governance/enforcement/check?resourceType=agent&resourceId=a1", None),
    ("GET", "/api/governance/report"): ("/api/governance/report", None),
    ("GET", "/api/governance/approval-stats"): ("/api/governance/approval-stats", None),
    ("GET", "/api/events"): ("/api/events", None),
    ("GET", "/api/me"): ("/api/me", None),  # refused before it streams, or a 200
    ("GET", "/console"): ("/console", None),
    ("GET", "/console/"): ("/console/", None),
    ("GET", "/console/{name}"): ("/console/app.js", None),
}


def route_table() -> set[tuple[str, str]]:
    """The API's routes and the console's static files (not in the OpenAPI document)."""
    api = {(route.method, route.path) for route in routes.ROUTES}
    return api | {(route.method, route.path) for route in console.ROUTES}


def test_the_permission_table_covers_every_route_and_nothing_else():
    assert set(access.PERMISSIONS) == route_table() == set(SAMPLES)


@pytest.fixture
def keyed(cfg):
    return cfg.model_copy(update={"auth": config.AuthConfig(mode="keys", cache_ms=1000)})


@pytest.fixture
def keys(keyed, db_path):
    """A key of every role, and one revoked, made the way an operator would (no daemon)."""
    admin = sqlite.KeyAdmin(str(db_path))
    made = {}
    for role in (*ROLES, "revoked"):
        key = principals.new_key()
        principal = principals.Principal(key_id=principals.new_key_id(), name=f"{role}-key",
                                   role="executor" if role == "revoked" else role)
        admin.create(principal, principals.hash_key(key))
        if role == "revoked":
            admin.revoke(principal.key_id)
        made[role] = key
    admin.close()
    return made


async def _send(client, method, path, body, key):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    resp = await client.request(method, path, json=body, headers=headers,
                                allow_redirects=False)
    if resp.content_type != "text/event-stream":  # a stream is never done: the status will do
        await resp.read()
    resp.close()
    return resp.status


@pytest.mark.parametrize("route", sorted(SAMPLES), ids=lambda r: f"{r[0]} {r[1]}")
async def test_role_table(make_client, keyed, keys, route):
    method, _ = route
    path, body = SAMPLES[route]
    allowed = access.PERMISSIONS[route]
    async with make_client(keyed) as client:
        for who in (None, *ROLES, "revoked"):
            status = await _send(client, method, path, body, keys.get(who) if who else None)
            if not allowed:
                expected = "public"
                ok = status < 400
            elif who is None or who == "revoked":
                expected, ok = "401", status == 401
            elif who == "admin" or who in allowed:
                expected, ok = "allowed", status < 400 or status in (404, 409, 422)
            else:
                expected, ok = "403", status == 403
            assert ok, f"{method} {path} as {who}: {status}, expected {expected}"


async def test_x_api_key_header_and_the_refusals_audited_without_the_key(
    make_client, keyed, keys, db_path, caplog
):
    async with make_client(keyed) as client:
        ok = await client.get("/api/governance/budgets", headers={"X-API-Key": keys["operator"]})
        assert ok.status == 200
        no_key = await client.get("/api/governance/budgets")
        assert no_key.status == 401 and (await no_key.json())["error"] == "unauthorized"
        wrong = await client.post("/api/governance/budgets", headers={
            "Authorization": f"Bearer {keys['executor']}"}, json={})
        assert wrong.status == 403 and (await wrong.json())["error"] == "forbidden"
        bogus = await client.get("/api/governance/audit", headers={
            "Authorization": "Bearer cgk_not-a-real-key-at-all"})
        assert bogus.status == 401
    async with make_client(keyed) as client:  # the refusals were written at shutdown
        rows = await (await client.get("/api/governance/audit", params={
            "eventType": "verification"}, headers={"X-API-Key": keys["admin"]})).json()
    refused = [r["details"] for r in rows["audit"] if r["action"] == "auth.refused"]
    assert sorted(r["reason"] for r in refused) == ["missing_key", "role_forbidden",
                                                    "unknown_key"]
    refused.sort(key=lambda r: r["reason"])
    assert refused[1]["role"] == "executor" and refused[1]["keyName"] == "executor-key"
    assert all(r["count"] == 1 for r in refused)
    stored = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    logged = caplog.text
    for key in (*keys.values(), "cgk_not-a-real-key-at-all"):
        assert key.encode() not in stored and key not in logged


async def test_a_revoked_key_stops_working_within_the_cache_time(
    make_client, keyed, keys, db_path, clock
):
    async with make_client(keyed) as client:
        headers = {"X-API-Key": keys["operator"]}
        assert (await client.get("/api/governance/budgets", headers=headers)).status == 200
        admin = sqlite.KeyAdmin(str(db_path))
        [key_id] = [k["id"] for k in admin.list() if k["name"] == "operator-key"]
        admin.revoke(key_id)
        admin.close()
        clock.advance(1000)
        assert (await client.get("/api/governance/budgets", headers=headers)).status == 401


def test_none_mode_is_refused_off_loopback(tmp_path):
    with pytest.raises(errors.ConfigError, match="loopback"):
        config.load(environ={"CLAWGUARD_AUTH_MODE": "none", "CLAWGUARD_SERVER_HOST": "0.0.0.0"})
    assert config.load(environ={"CLAWGUARD_AUTH_MODE": "none",
                                "CLAWGUARD_SERVER_HOST": "::1"}).auth.mode == "none"
    result = subprocess.run(
        [sys.executable, "-m", "clawguard", "serve"], capture_output=True, text=True, timeout=30,
        env={**os.environ, "CLAWGUARD_AUTH_MODE": "none", "CLAWGUARD_SERVER_HOST": "0.0.0.0",
             "CLAWGUARD_STORAGE_PATH": str(tmp_path / "x.db")},
    )
    assert result.returncode == 2 and "loopback" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_first_start_makes_an_admin_key_readable_by_its_owner_only(tmp_path):
    db = tmp_path / "first.db"
    key_file = tmp_path / "clawguard-admin.key"
    with Daemon(db, auth_mode="keys") as daemon:
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        assert any(str(key_file) in line for line in daemon.log)
        assert call(daemon.url, "GET", "/api/governance/budgets")[0] == 401
        assert call_with_key(daemon.url, "/api/governance/budgets", key) == 200
        log = "".join(daemon.log)
    with Daemon(db, auth_mode="keys"):  # a second start makes no second key
        pass
    assert key_file.read_text().strip() == key and key not in log
    admin = sqlite.KeyAdmin(str(db))
    assert [k["role"] for k in admin.list()] == ["admin"]
    admin.close()


def call_with_key(url: str, path: str, key: str) -> int:
    import urllib.request

    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.status


def test_keys_cli_shows_a_key_once_and_never_lists_it(tmp_path):
    db = tmp_path / "cli.db"
    run = [sys.executable, "-m", "clawguard", "keys"]
    made = subprocess.run([*run, "create", "--role", "leader", "--leads", "a1,a2", "--db",
                           str(db)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith(principals.KEY_PREFIX)
    listed = subprocess.run([*run, "list", "--json", "--db", str(db)], capture_output=True,
                            text=True)
    assert key not in listed.stdout
    listing = [(k["role"], k["leads"]) for k in json.loads(listed.stdout)]
    assert listing == [("leader", ["a1", "a2"])]
    bad = subprocess.run([*run, "create", "--role", "executor", "--leads", "a1", "--db", str(db)],
                         capture_output=True, text=True)
    assert bad.returncode == 2


def _leader(db_path, name: str, leads: frozenset[str] | None) -> str:
    admin = sqlite.KeyAdmin(str(db_path))
    key = principals.new_key()
    admin.create(principals.Principal(key_id=principals.new_key_id(), name=name, role="leader",
                                leads=leads), principals.hash_key(key))
    admin.close()
    return key


async def _ask(client, key: str, agent_id: str) -> str:
    resp = await client.post("/api/tools/approvals", headers={"X-API-Key": key},
                             json={"toolName": "shell", "agentId": agent_id, "waitMs": 0})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["approvalId"]


async def _resolve(client, key: str, approval_id: str, **extra):
    return await client.post(f"/api/tools/approvals/{approval_id}/resolve",
                             headers={"X-API-Key": key}, json={"decision": "deny", **extra})


async def test_a_leader_decides_only_for_the_agents_it_leads(make_client, keyed, keys, db_path):
    mine = _leader(db_path, "lead-of-a1", frozenset({"a1"}))
    async with make_client(keyed) as client:
        theirs = await _ask(client, keys["executor"], "a2")
        refused = await _resolve(client, mine, theirs)
        assert refused.status == 403 and (await refused.json())["error"] == "forbidden"
        revoke = await client.delete("/api/tools/approvals/grants/grt_none",
                                     headers={"X-API-Key": mine})
        assert revoke.status == 404  # the leader may call it; the grant just isn't there
        own = await _ask(client, keys["executor"], "a1")
        decided = await _resolve(client, mine, own, resolvedBy="someone-else")
        approval = (await decided.json())["approval"]
        assert decided.status == 200 and approval["resolvedBy"] == "lead-of-a1"
        still = await client.get(f"/api/tools/approvals/{theirs}",
                                 headers={"X-API-Key": keys["leader"]})
        assert (await still.json())["approval"]["status"] == "pending"  # the 403 changed nothing
        rows = await (await client.get("/api/governance/audit", params={"eventType": "approval"},
                                       headers={"X-API-Key": keys["admin"]})).json()
    resolved = [r["details"] for r in rows["audit"] if r["action"] == "approval.resolved"]
    assert [(r["resolvedBy"], r["resolvedByRole"]) for r in resolved] == [
        ("lead-of-a1", "leader")]


async def test_a_requester_cannot_decide_its_own_request(make_client, keyed, keys):
    async with make_client(keyed) as client:
        own = await _ask(client, keys["admin"], "a1")
        refused = await _resolve(client, keys["admin"], own)
        assert refused.status == 403
        assert "key that asked" in (await refused.json())["message"]
        assert (await _resolve(client, keys["leader"], own)).status == 200


async def _audit(client, keys, event_type):
    resp = await client.get("/api/governance/audit", params={"eventType": event_type},
                            headers={"X-API-Key": keys["admin"]})
    assert resp.status == 200
    return (await resp.json())["audit"]


async def test_budget_changes_and_revocations_name_the_key_that_made_them(
    make_client, keyed, keys
):
    ops = {"X-API-Key": keys["operator"]}
    async with make_client(keyed) as client:
        made = await client.post("/api/governance/budgets", headers=ops,
                                 json={"scope": "team", "scopeId": "t1", "limitUsdCents": 10})
        assert made.status == 200
        resumed = await client.post("/api/governance/budgets/team/t1/resume", json={},
                                    headers={"X-API-Key": keys["admin"]})
        assert resumed.status == 200
        deleted = await client.delete("/api/governance/budgets/team/t1", headers=ops)
        assert deleted.status == 204
        approval_id = await _ask(client, keys["executor"], "a1")
        await _resolve(client, keys["leader"], approval_id, decision="allow_always")
        grants = await (await client.get("/api/tools/approvals/grants",
                                         headers={"X-API-Key": keys["leader"]})).json()
        revoked = await client.delete(f"/api/tools/approvals/grants/{grants['grants'][0]['id']}",
                                      headers={"X-API-Key": keys["leader"]})
        assert revoked.status == 200
        budget_rows = await _audit(client, keys, "budget")
        approval_rows = await _audit(client, keys, "approval")
    who = {row["action"]: (row["details"]["keyName"], row["details"]["role"])
           for row in budget_rows + approval_rows if "keyName" in row["details"]}
    assert who == {"budget.set": ("operator-key", "operator"),
                   "budget.resumed": ("admin-key", "admin"),
                   "budget.deleted": ("operator-key", "operator"),
                   "approval.resolved": ("leader-key", "leader"),
                   "approval.grant_revoked": ("leader-key", "leader")}
    assert all(row["details"]["keyId"].startswith("key_") for row in budget_rows)
    stored = json.dumps(budget_rows + approval_rows)
    assert not any(key in stored for key in keys.values())


async def test_every_refused_decision_is_audited_as_verification(
    make_client, keyed, keys, db_path
):
    outsider = _leader(db_path, "lead-of-b", frozenset({"b"}))
    async with make_client(keyed) as client:
        own = await _ask(client, keys["admin"], "a1")
        assert (await _resolve(client, keys["admin"], own)).status == 403  # its own request
        theirs = await _ask(client, keys["executor"], "a1")
        assert (await _resolve(client, outsider, theirs)).status == 403  # outside --leads
        await _resolve(client, keys["leader"], theirs, decision="allow_always")
        grants = await (await client.get("/api/tools/approvals/grants",
                                         headers={"X-API-Key": keys["leader"]})).json()
        grant_id = grants["grants"][0]["id"]
        refused = await client.delete(f"/api/tools/approvals/grants/{grant_id}",
                                      headers={"X-API-Key": outsider})
        assert refused.status == 403 and (await refused.json())["error"] == "forbidden"
        rows = await _audit(client, keys, "verification")
        still = await client.get(f"/api/tools/approvals/{own}",
                                 headers={"X-API-Key": keys["admin"]})
        assert (await still.json())["approval"]["status"] == "pending"
    refusals = [(r["action"], r["agentId"], r["details"]["keyName"], r["details"]["role"])
                for r in reversed(rows) if r["action"].endswith("_refused")]
    assert refusals == [("approval.decision_refused", "a1", "admin-key", "admin"),
                        ("approval.decision_refused", "a1", "lead-of-b", "leader"),
                        ("approval.revoke_refused", "a1", "lead-of-b", "leader")]
    first = next(r["details"] for r in reversed(rows) if r["action"].endswith("_refused"))
    assert first["approvalId"] == own and first["keyId"].startswith("key_")
    assert "key that asked" in first["reason"]
    assert not any(key in json.dumps(rows) for key in (*keys.values(), outsider))


def test_the_readme_role_table_is_the_permission_table():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+) (\S+)` \| ([^|]+) \|$", readme, re.MULTILINE)
    documented = {
        (method, path): frozenset() if roles.strip() == "anyone, no key"
        else frozenset(role.strip() for role in roles.split(","))
        for method, path, roles in rows
    }
    assert documented == access.PERMISSIONS


async def test_a_flood_of_refusals_is_one_audit_row_and_writes_nothing_while_it_lasts(
    make_client, keyed, keys, db_path, clock
):
    """N wrong keys from one address: no write per refusal, then one row with count N; a valid
    key from the same address is served all along."""
    flood = 200
    async with make_client(keyed) as client:
        before = dump(db_path)
        for n in range(flood):
            bad = await client.post("/api/governance/spend", json={"agentId": "a1",
                                    "costUsdCents": 1}, headers={"X-API-Key": f"cgk_bad{n % 3}"})
            assert bad.status == 401
            clock.advance(1)
        assert dump(db_path) == before  # nothing written on a refused call's path
        good = await client.post("/api/governance/spend", json={"agentId": "a1",
                                 "costUsdCents": 1}, headers={"X-API-Key": keys["executor"]})
        assert good.status == 200
        for _ in range(5):
            assert (await client.get("/api/governance/budgets")).status == 401  # missing_key
        assert await client.app[state.REFUSALS].flush() == 2
        rows = await (await client.get("/api/governance/audit", params={
            "eventType": "verification"}, headers={"X-API-Key": keys["admin"]})).json()
    refused = {r["details"]["reason"]: r["details"] for r in rows["audit"]
               if r["action"] == "auth.refused"}
    unknown = refused["unknown_key"]
    assert unknown["count"] == flood and unknown["remote"] == "127.0.0.1"
    assert unknown["lastAt"] - unknown["firstAt"] == flood - 1
    assert unknown["method"] == "POST" and unknown["path"] == "/api/governance/spend"
    assert refused["missing_key"]["count"] == 5


def test_every_refusal_tally_is_bounded():
    tally = refusals.Refusals(None, lambda: 0, 1000)  # type: ignore[arg-type]
    for n in range(refusals.MAX_TALLIES + 50):
        tally.note("unknown_key", None, f"10.0.{n // 256}.{n % 256}", "GET", "/x")
    assert tally.pending == refusals.MAX_TALLIES + 50
    assert len(tally._tallies) == refusals.MAX_TALLIES + 1  # one row for all the others


async def test_a_leader_sees_and_writes_only_for_the_agents_it_leads(
    make_client, keyed, keys, db_path
):
    """Pending list (also with ?all=true), one request, grants, history: a leader made with
    --leads is kept to its agents on every read and write; an unscoped leader sees all."""
    mine = _leader(db_path, "lead-of-a1", frozenset({"a1"}))
    lead, admin = {"X-API-Key": mine}, {"X-API-Key": keys["admin"]}
    async with make_client(keyed) as client:
        own = await _ask(client, keys["executor"], "a1")
        theirs = await _ask(client, keys["executor"], "a2")
        for path in ("/api/tools/approvals", "/api/tools/approvals?all=true"):
            listed = await (await client.get(path, headers=lead)).json()
            assert [a["id"] for a in listed["approvals"]] == [own]
            everyone = await (await client.get(path, headers=admin)).json()
            assert {a["id"] for a in everyone["approvals"]} == {own, theirs}
        hidden = await client.get(f"/api/tools/approvals/{theirs}", headers=lead)
        unknown = await client.get("/api/tools/approvals/apr_0000000000000000", headers=lead)
        assert hidden.status == unknown.status == 404  # as if it did not exist
        assert (await hidden.json())["message"] == f"no approval {theirs}"
        waited = await client.get(f"/api/tools/approvals/{theirs}?waitMs=50", headers=lead)
        assert waited.status == 404
        assert (await client.get(f"/api/tools/approvals/{own}", headers=lead)).status == 200

        for approval_id, key in ((own, mine), (theirs, keys["admin"])):
            assert (await client.post(f"/api/tools/approvals/{approval_id}/resolve",
                                      headers={"X-API-Key": key},
                                      json={"decision": "allow_always"})).status == 200
        grants = await (await client.get("/api/tools/approvals/grants", headers=lead)).json()
        assert [g["agentId"] for g in grants["grants"]] == ["a1"]
        assert len((await (await client.get("/api/tools/approvals/grants",
                                            headers={"X-API-Key": keys["leader"]})).json()
                    )["grants"]) == 2
        history = await (await client.get("/api/approvals", headers=lead)).json()
        assert {r["agentId"] for r in history["records"]} == {"a1"}

        before = dump(db_path)
        for path in ("/api/tools/approvals/grants?agentId=a2", "/api/approvals?agentId=a2"):
            refused = await client.get(path, headers=lead)
            assert refused.status == 403 and (await refused.json())["error"] == "forbidden"
        append = await client.post("/api/approvals", headers=lead, json={
            "agentId": "a2", "action": "allow-always", "toolName": "shell"})
        assert append.status == 403 and (await append.json())["error"] == "forbidden"
        assert dump(db_path) == before  # nothing appended for another leader's agent
        ok = await client.post("/api/approvals", headers=lead, json={
            "agentId": "a1", "action": "deny", "toolName": "shell"})
        assert ok.status == 200


async def test_a_leader_with_several_agents_reads_the_newest_history_of_them_all(
    make_client, keyed, keys, db_path
):
    lead = {"X-API-Key": _leader(db_path, "lead-two", frozenset({"a1", "a3"}))}
    admin = {"X-API-Key": keys["admin"]}
    async with make_client(keyed) as client:
        for n, agent in enumerate(["a1", "a2", "a3", "a1", "a2", "a3", "a2"]):
            resp = await client.post("/api/approvals", headers=admin, json={
                "agentId": agent, "action": "deny", "toolName": f"t{n}"})
            assert resp.status == 200
        rows = (await (await client.get("/api/approvals?limit=3", headers=lead)).json())["records"]
    assert [(r["agentId"], r["toolName"]) for r in rows] == [("a3", "t5"), ("a1", "t3"),
                                                             ("a3", "t2")]


def _executor(db_path, name: str) -> str:
    admin = sqlite.KeyAdmin(str(db_path))
    key = principals.new_key()
    admin.create(principals.Principal(key_id=principals.new_key_id(), name=name,
                                      role="executor"), principals.hash_key(key))
    admin.close()
    return key


async def test_an_idempotency_key_belongs_to_the_api_key_that_spent(make_client, keyed, keys,
                                                                     db_path):
    """Executor B reusing executor A's idempotency key gets neither A's answer nor a 409."""
    a, b = _executor(db_path, "a"), _executor(db_path, "b")
    body = {"agentId": "a1", "costUsdCents": 1, "idempotencyKey": "run-42/evt-7"}

    async def spend(key, **changes):
        resp = await client.post("/api/governance/spend", headers={"X-API-Key": key},
                                 json=body | changes)
        assert resp.status == 200, await resp.text()
        return (await resp.json())["spend"]

    async with make_client(keyed) as client:
        first = await spend(a)
        other = await spend(b, costUsdCents=7)  # another body: not A's 409
        assert other["duplicate"] is False and other["id"] != first["id"]
        same = await spend(_executor(db_path, "c"))  # the same body: not A's answer
        assert same["duplicate"] is False and same["id"] not in (first["id"], other["id"])
        assert (await spend(a)) == first | {"duplicate": True}  # A's retry still replays
        refused = await client.post("/api/governance/spend", headers={"X-API-Key": a},
                                    json=body | {"costUsdCents": 9})
        assert refused.status == 409
