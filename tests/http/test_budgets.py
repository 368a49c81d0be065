"""The budget routes through the real app on a real SQLite file."""

from __future__ import annotations

import asyncio
import json

from clawguard.store import sqlite

BUDGETS = "/api/governance/budgets"
SPEND = "/api/governance/spend"


async def set_budget(client, scope="agent", scope_id="a1", limit=100, mode=None):
    body = {"scope": scope, "scopeId": scope_id, "limitUsdCents": limit}
    if mode:
        body["mode"] = mode
    resp = await client.post(BUDGETS, json=body)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["budget"]


async def spend(client, cents, status=200, **ids):
    body = {"agentId": "a1", **ids, "costUsdCents": cents}
    resp = await client.post(SPEND, data=json.dumps(body))
    assert resp.status == status, await resp.text()
    return await resp.json()


async def audit(client, **query):
    resp = await client.get("/api/governance/audit", params=query)
    assert resp.status == 200
    return (await resp.json())["audit"]


async def test_new_budget_starts_active_in_warn_mode(client):
    budget = await set_budget(client, limit=500)
    assert budget["status"] == "active" and budget["mode"] == "warn"
    assert budget["spentUsdCents"] == 0 and budget["spentUsdMicros"] == 0
    assert budget["heldUsdCents"] == 0 and budget["id"].startswith("bud_")


async def test_cap_budget_pauses_at_100_percent_and_stops_the_executor(client):
    await set_budget(client, limit=100, mode="cap")
    first = await spend(client, 79.9999)
    assert first["stop"] is False and first["scopes"][0]["crossed"] == "none"
    second = await spend(client, 0.0001)
    assert second["scopes"][0] | {"crossed": "soft", "status": "soft_capped"} == second["scopes"][0]
    third = await spend(client, 20)
    assert third["stop"] is True and third["stopReason"] == "budget_paused:agent"
    assert third["scopes"][0]["crossed"] == "hard" and third["scopes"][0]["status"] == "paused"
    # Spend on a paused scope is still recorded: the money is already gone.
    fourth = await spend(client, 5)
    assert fourth["stop"] is True and fourth["scopes"][0]["crossed"] == "none"
    assert fourth["scopes"][0]["spentUsdCents"] == 105
    assert [r["action"] for r in await audit(client, eventType="cap_hit")] == ["budget.paused"]


async def test_warn_budget_warns_at_80_and_100_but_never_pauses(client):
    await set_budget(client, limit=10, mode="warn")
    crossings = [(await spend(client, 4))["scopes"][0] for _ in range(4)]
    assert [s["crossed"] for s in crossings] == ["none", "soft", "hard", "none"]
    assert [s["status"] for s in crossings][-1] == "soft_capped"
    for _ in range(2):
        assert (await spend(client, 100))["stop"] is False
    actions = [r["action"] for r in await audit(client, eventType="budget")]
    assert actions.count("budget.crossed_soft") == 1 and actions.count("budget.crossed_hard") == 1
    assert await audit(client, eventType="cap_hit") == []


async def test_spend_charges_every_named_scope_and_reports_stop_in_chain_order(client):
    await set_budget(client, "team", "t1", 10, "cap")
    await set_budget(client, "tenant", "org", 10, "cap")
    await set_budget(client, "mission", "m1", 1000, "warn")
    result = await spend(client, 10, missionId="m1", teamId="t1", tenantId="org")
    assert [s["scope"] for s in result["scopes"]] == ["mission", "team", "tenant"]
    assert result["stopReason"] == "budget_paused:team"
    assert all(s["spentUsdMicros"] == 100_000 for s in result["scopes"])


async def test_unbudgeted_scopes_are_recorded_in_the_ledger_only(client, db_path):
    result = await spend(client, 3, teamId="nobody")
    assert result["scopes"] == [] and result["stop"] is False
    assert result["spend"]["costUsdMicros"] == 30_000 and result["spend"]["duplicate"] is False


async def test_setting_keeps_mode_when_omitted_and_raising_the_cap_unpauses(client):
    await set_budget(client, limit=10, mode="cap")
    await spend(client, 12)
    raised = await set_budget(client, limit=100)
    assert raised["mode"] == "cap" and raised["status"] == "active"
    lowered = await set_budget(client, limit=12)
    assert lowered["status"] == "paused"
    warned = await set_budget(client, limit=12, mode="warn")
    assert warned["status"] == "soft_capped"


async def test_list_is_newest_updated_first_with_filters(client, clock):
    for scope_id in ("x", "y", "z"):
        await set_budget(client, scope_id=scope_id)
        clock.advance(1)
    await set_budget(client, scope="team", scope_id="x", limit=5, mode="cap")
    clock.advance(1)
    await set_budget(client, scope_id="x", limit=200)  # touching x makes it newest
    resp = await client.get(BUDGETS)
    assert [b["scopeId"] for b in (await resp.json())["budgets"]] == ["x", "x", "z", "y"]
    resp = await client.get(BUDGETS, params={"scope": "team"})
    assert [(b["scope"], b["scopeId"]) for b in (await resp.json())["budgets"]] == [("team", "x")]
    await spend(client, 5, agentId="nobody", teamId="x")
    resp = await client.get(BUDGETS, params={"status": "paused"})
    assert [b["scope"] for b in (await resp.json())["budgets"]] == ["team"]


async def test_delete_makes_the_scope_uncapped_and_a_new_budget_starts_at_zero(client, db_path):
    await set_budget(client, limit=10, mode="cap")
    await spend(client, 10)
    resp = await client.delete(f"{BUDGETS}/agent/a1")
    assert resp.status == 204
    assert (await spend(client, 50))["scopes"] == []
    again = await set_budget(client, limit=10, mode="cap")
    assert again["spentUsdMicros"] == 0 and again["status"] == "active"
    resp = await client.delete(f"{BUDGETS}/agent/none")
    assert resp.status == 404
    # Every row's spent is the sum of its ledger charges, the deleted row's history aside.
    assert all(spent == charged for _, spent, charged in sqlite.ledger_check(str(db_path)))
    assert [r["action"] for r in await audit(client, eventType="budget")][:2] == [
        "budget.set", "budget.deleted"
    ]


async def test_resume_with_grace_raises_the_limit_above_spend(client):
    await set_budget(client, "team", "t1", 100, "cap")
    await spend(client, 120, teamId="t1")
    resp = await client.post(f"{BUDGETS}/team/t1/resume", json={"graceUsdCents": 50})
    body = await resp.json()
    assert resp.status == 200 and body["willRepause"] is False
    assert body["budget"]["limitUsdCents"] == 170 and body["budget"]["status"] == "active"
    assert (await spend(client, 1, teamId="t1"))["stop"] is False


async def test_resume_without_grace_forces_active_and_the_next_spend_repauses(client):
    await set_budget(client, limit=100, mode="cap")
    await spend(client, 100)
    resp = await client.post(f"{BUDGETS}/agent/a1/resume")
    body = await resp.json()
    assert body["willRepause"] is True and body["budget"]["status"] == "active"
    preflight = await (await client.get("/api/governance/preflight?agentId=a1")).json()
    assert preflight["allowed"] is True
    after = await spend(client, 0.01)
    assert after["stop"] is True and after["scopes"][0]["crossed"] == "none"
    assert len(await audit(client, eventType="cap_hit")) == 2  # paused, resumed, paused again


async def test_resume_errors(client):
    assert (await client.post(f"{BUDGETS}/agent/ghost/resume")).status == 404
    assert (await client.post(f"{BUDGETS}/galaxy/a1/resume")).status == 400
    await set_budget(client)
    for grace in (0, -5, 1.5, "10"):
        resp = await client.post(f"{BUDGETS}/agent/a1/resume", json={"graceUsdCents": grace})
        assert resp.status == 400, grace


async def test_preflight_refuses_a_chain_holding_a_paused_cap(client):
    await set_budget(client, "mission", "m1", 5, "cap")
    ok = await (await client.get("/api/governance/preflight?agentId=a1&missionId=m1")).json()
    assert ok == {"allowed": True, "reason": None, "scopes": ok["scopes"]}
    await spend(client, 5, missionId="m1")
    refused = await (await client.get("/api/governance/preflight?agentId=a1&missionId=m1")).json()
    assert refused["allowed"] is False and refused["reason"] == "budget_paused"
    assert refused["scopes"][0]["status"] == "paused"
    other = await (await client.get("/api/governance/preflight?missionId=m2")).json()
    assert other["allowed"] is True


async def test_idempotent_replay_charges_nothing_and_conflicts_on_another_body(client):
    await set_budget(client, limit=10, mode="cap")
    body = {"agentId": "a1", "costUsdCents": 10, "idempotencyKey": "run-1/evt-1"}
    first = await (await client.post(SPEND, json=body)).json()
    await spend(client, 1)  # the state moves on; the replay still answers as it was
    replay = await (await client.post(SPEND, json=body)).json()
    assert replay["spend"] == first["spend"] | {"duplicate": True}
    assert replay["scopes"] == first["scopes"] and replay["stop"] == first["stop"] is True
    other = await client.post(SPEND, json=body | {"costUsdCents": 11})
    assert other.status == 409 and (await other.json())["error"] == "idempotency_conflict"
    listed = await (await client.get(BUDGETS)).json()
    assert listed["budgets"][0]["spentUsdMicros"] == 110_000


async def test_idempotency_holds_across_a_restart(make_client):
    body = {"teamId": "t1", "costUsdCents": 0.5, "idempotencyKey": "k"}
    async with make_client() as client:
        first = await (await client.post(SPEND, json=body)).json()
    async with make_client() as client:
        replay = await (await client.post(SPEND, json=body)).json()
    assert replay["spend"] == first["spend"] | {"duplicate": True}


async def test_audit_filters_limits_and_masks_secrets(client, clock):
    await set_budget(client, scope_id="a1")
    clock.advance(10)
    since = clock.now
    await set_budget(client, scope_id="a2")
    await set_budget(client, scope="team", scope_id="t1")
    rows = await audit(client)
    assert [r["id"] for r in rows] == [3, 2, 1]  # newest first
    assert [r["agentId"] for r in await audit(client, agentId="a2")] == ["a2"]
    assert len(await audit(client, since=str(since))) == 2
    assert len(await audit(client, eventType="nonsense")) == 3  # an unknown type is ignored
    for limit in ("0", "-3", "abc", ""):
        assert len(await audit(client, limit=limit)) == 3  # the default, 200
    assert len(await audit(client, limit="1")) == 1
    # Token counts are not secrets; an API key is, in keys and in values.
    resp = await client.post(
        SPEND, json={"agentId": "a1", "costUsdCents": 100, "taskId": "Bearer abcdefghijklmnop"}
    )
    assert resp.status == 200
    crossed = (await audit(client, eventType="budget"))[0]
    assert crossed["action"] == "budget.crossed_hard" and crossed["details"]["taskId"] == "***"
    assert rows[0]["prevHash"] == rows[1]["hash"]


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and await ready.json() == {"ok": True}


async def test_sub_cent_spends_carry_exactly_through_the_store(client):
    """10,000 concurrent spends of 0.0001 cents make exactly one cent, and one hard crossing."""
    await set_budget(client, scope="team", scope_id="t1", limit=1, mode="cap")
    body = json.dumps({"teamId": "t1", "costUsdCents": 0.0001})
    results = []
    for _ in range(10):  # in waves, to keep the open connections modest
        wave = await asyncio.gather(*(client.post(SPEND, data=body) for _ in range(1_000)))
        results += [await r.json() for r in wave if r.status == 200]
    assert len(results) == 10_000
    hard = [r["scopes"][0] for r in results if r["scopes"][0]["crossed"] == "hard"]
    assert len(hard) == 1 and hard[0]["spentUsdMicros"] == 10_000
    budget = (await (await client.get(BUDGETS)).json())["budgets"][0]
    assert budget["spentUsdMicros"] == 10_000 and budget["spentUsdCents"] == 1
    assert budget["status"] == "paused"


async def test_tenant_id_is_accepted_stored_and_echoed_on_every_budget_row(client):
    """Clawboo's web client sends tenantId (a string or null) and reads it back."""
    made = await client.post(BUDGETS, json={"scope": "agent", "scopeId": "a1",
                                            "limitUsdCents": 100, "tenantId": "org"})
    assert made.status == 200
    assert (await made.json())["budget"]["tenantId"] == "org"
    kept = await set_budget(client, limit=200)  # omitting it keeps it, like mode
    assert kept["tenantId"] == "org"
    listed = await (await client.get(BUDGETS)).json()
    assert [b["tenantId"] for b in listed["budgets"]] == ["org"]
    resumed = await (await client.post(f"{BUDGETS}/agent/a1/resume", json={})).json()
    assert resumed["budget"]["tenantId"] == "org"
    [row] = [r for r in await audit(client, eventType="budget") if r["action"] == "budget.set"][:1]
    assert row["tenantId"] == "org" and row["details"]["tenantId"] == "org"
    cleared = await client.post(BUDGETS, json={"scope": "agent", "scopeId": "a1",
                                               "limitUsdCents": 200, "tenantId": None})
    assert (await cleared.json())["budget"]["tenantId"] is None
    other = await set_budget(client, scope="team", scope_id="t1")
    assert other["tenantId"] is None  # a new row without one belongs to no tenant
