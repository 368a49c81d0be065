"""Runs over HTTP: start, end, lease expiry, breaker events, quotas, caps, roles' answers."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from clawguard.runtime import config

RUNS = "/api/governance/runs"


async def start(client: TestClient[Any, Any], **body: Any) -> Any:
    resp = await client.post(RUNS, json={"agentId": "a1", **body})
    return resp.status, await resp.json(), resp.headers


async def test_start_read_end_and_list(client: TestClient[Any, Any], clock: Any) -> None:
    status, body, _ = await start(client, tenantId="org")
    assert status == 201
    run = body["run"]
    assert run["status"] == "running" and run["depth"] == 0 and run["parentRunId"] is None
    assert run["startedAt"] == clock.now and run["leaseExpiresAt"] == clock.now + 3_600_000
    assert set(run) == {"id", "agentId", "status", "depth", "parentRunId", "startedAt",
                        "leaseExpiresAt", "endedAt"}
    got = await (await client.get(f"{RUNS}/{run['id']}")).json()
    assert got == {"run": run}
    clock.advance(5)
    ended = await client.post(f"{RUNS}/{run['id']}/end")
    assert ended.status == 200
    assert (await ended.json())["run"]["status"] == "ended"
    listed = await (await client.get(f"{RUNS}?status=ended&agentId=a1")).json()
    assert [r["id"] for r in listed["runs"]] == [run["id"]]
    assert (await (await client.get(f"{RUNS}?status=running")).json())["runs"] == []


async def test_a_lapsed_lease_reads_expired_and_frees_its_slot(
    make_client: Any, cfg: config.Config, clock: Any
) -> None:
    settings = cfg.model_copy(update={"quotas": config.QuotasConfig(
        plans={"default": config.PlanConfig(concurrent_runs=1)})})
    async with make_client(settings) as client:
        _, first, _ = await start(client)
        status, body, headers = await start(client)
        assert status == 429
        assert body["details"] == {"key": "concurrent_runs", "limit": 1,
                                   "retryAfterMs": 3_600_000}
        assert headers["Retry-After"] == "3600"
        clock.advance(3_600_000)
        got = await (await client.get(f"{RUNS}/{first['run']['id']}")).json()
        assert got["run"]["status"] == "expired"
        status, _, _ = await start(client)
        assert status == 201
        events = await client.post(f"{RUNS}/{first['run']['id']}/events",
                                   json={"kind": "tool-call"})
        assert events.status == 409


async def test_events_renew_the_lease_and_a_trip_stops_the_run(
    client: TestClient[Any, Any], clock: Any
) -> None:
    _, body, _ = await start(client)
    run_id = body["run"]["id"]
    clock.advance(1000)
    resp = await client.post(f"{RUNS}/{run_id}/events", json={"kind": "tool-call"})
    answer = await resp.json()
    assert resp.status == 200 and "tripped" not in answer
    assert answer["run"]["leaseExpiresAt"] == clock.now + 3_600_000
    failing = [{"kind": "tool-result", "signature": "read x", "ok": False}] * 5
    resp = await client.post(f"{RUNS}/{run_id}/events", json=failing)
    answer = await resp.json()
    assert answer["run"]["status"] == "tripped"
    assert answer["tripped"]["reason"] == "repeat-failure"
    assert answer["tripped"]["counters"]["consecFailures"] == 3  # the list stopped at the trip
    again = await client.post(f"{RUNS}/{run_id}/events", json={"kind": "tool-call"})
    assert again.status == 409 and (await again.json())["error"] == "conflict"
    pre = await (await client.get(f"/api/governance/preflight?agentId=a1&runId={run_id}")).json()
    assert pre["allowed"] is False and pre["reason"] == "circuit_break"
    audit = await (await client.get("/api/governance/audit?eventType=circuit_break")).json()
    assert [row["action"] for row in audit["audit"]] == ["breaker.repeat-failure"]
    spent = await client.post("/api/governance/spend",
                              json={"agentId": "a1", "costUsdCents": 1, "runId": run_id})
    assert spent.status == 200


async def test_quota_show_set_and_refusals(client: TestClient[Any, Any]) -> None:
    quota = "/api/tenants/org/quota"
    shown = await (await client.get(quota)).json()
    assert shown == {"plan": "default", "limits": {"runs_per_hour": 300, "concurrent_runs": 10},
                     "overrides": {}, "effective": {"runs_per_hour": 300,
                                                    "concurrent_runs": 10}}
    resp = await client.patch(quota, json={"runs_per_hour": 2})
    assert (await resp.json())["effective"]["runs_per_hour"] == 2
    for _ in range(2):
        assert (await start(client, tenantId="org"))[0] == 201
    status, body, headers = await start(client, tenantId="org")
    assert status == 429 and body["error"] == "quota_exceeded"
    assert body["details"]["key"] == "runs_per_hour" and headers["Retry-After"] == "3600"
    assert (await start(client, tenantId="other"))[0] == 201
    for bad, code in (({"runs_per_hour": 0}, 422), ({"concurrent_runs": 1001}, 422),
                      ({"concurrent_runs": -1}, 422), ({"runs_per_hour": "5"}, 400),
                      ({"runs_per_hour": 5.0}, 400), ({"memory_mb": 5}, 400)):
        resp = await client.patch(quota, json=bad)
        assert resp.status == code, bad
        assert next(iter(bad)) in await resp.text()
    resp = await client.patch(quota, json={"runs_per_hour": None, "concurrent_runs": 1000})
    assert await resp.json() == {
        "plan": "default", "limits": {"runs_per_hour": 300, "concurrent_runs": 10},
        "overrides": {"concurrent_runs": 1000},
        "effective": {"runs_per_hour": 300, "concurrent_runs": 1000}}
    audit = await (await client.get("/api/governance/audit?eventType=cap_hit")).json()
    assert [row["action"] for row in audit["audit"]] == ["quota.exceeded"]
    metrics = await (await client.get("/metrics")).text()
    assert 'clawguard_quota_refusals_total{key="runs_per_hour"} 1.0' in metrics
    assert "clawguard_runs_running 3.0" in metrics


async def test_delegation_caps(make_client: Any, cfg: config.Config) -> None:
    settings = cfg.model_copy(update={"delegation": config.DelegationConfig(
        max_depth=1, max_children=2, max_root_runs=2)})
    async with make_client(settings) as client:
        _, root, _ = await start(client)
        root_id = root["run"]["id"]
        _, child, _ = await start(client, parentRunId=root_id)
        assert child["run"]["depth"] == 1
        status, body, _ = await start(client, parentRunId=child["run"]["id"])
        assert status == 409 and body == {"error": "delegation_cap", "message": body["message"],
                                          "details": {"cap": "max_depth", "limit": 1}}
        await client.post(f"{RUNS}/{child['run']['id']}/end")
        assert (await start(client, parentRunId=root_id))[0] == 201
        status, body, _ = await start(client, parentRunId=root_id)
        assert status == 409 and body["details"] == {"cap": "max_children", "limit": 2}
        assert (await start(client))[0] == 201
        status, body, _ = await start(client)
        assert status == 409 and body["details"] == {"cap": "max_root_runs", "limit": 2}
        assert (await start(client, parentRunId="run_nope"))[0] == 404


async def test_an_idempotent_start_replays_the_run(client: TestClient[Any, Any]) -> None:
    _, first, _ = await start(client, idempotencyKey="k1")
    status, again, _ = await start(client, idempotencyKey="k1")
    assert status == 201 and again == first
    status, body, _ = await start(client, idempotencyKey="k1", tenantId="other")
    assert status == 409 and body["error"] == "idempotency_conflict"


async def test_200_concurrent_starts_take_exactly_the_concurrency_limit(
    client: TestClient[Any, Any]
) -> None:
    answers = await asyncio.gather(*(start(client, agentId=f"a{i}") for i in range(200)))
    statuses = [status for status, _, _ in answers]
    assert statuses.count(201) == 10 and statuses.count(429) == 190
