"""Holds and budget windows over HTTP: defaults, the answers' fields, the sweep, metrics."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp.test_utils import TestClient

from clawguard.http import state

HOLDS = "/api/governance/holds"
BUDGETS = "/api/governance/budgets"
C = 10_000


async def post(client: TestClient[Any, Any], path: str, body: Any = None) -> tuple[int, Any]:
    resp = await client.post(path, json=body)
    return resp.status, await resp.json()


async def test_a_hold_answers_its_fields_and_counts_on_budgets_and_preflight(
    client: TestClient[Any, Any], clock: Any
) -> None:
    await post(client, BUDGETS, {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100,
                                 "mode": "cap"})
    status, body = await post(client, HOLDS, {"agentId": "a1", "amountUsdCents": 0.4,
                                              "idempotencyKey": "k"})
    assert status == 201
    hold = body["hold"]
    assert hold["expiresAt"] == clock.now + 600_000  # [holds] ttl_ms
    assert (hold["status"], hold["amountUsdMicros"], hold["spendId"]) == ("held", 4000, None)
    assert hold["scopes"][0]["heldUsdMicros"] == 4000
    assert hold["scopes"][0]["windowStart"] is None
    status, again = await post(client, HOLDS, {"agentId": "a1", "amountUsdCents": 0.40,
                                               "idempotencyKey": "k"})
    assert status == 201 and again == body
    preflight = await (await client.get("/api/governance/preflight?agentId=a1")).json()
    assert preflight["scopes"][0]["heldUsdMicros"] == 4000
    assert preflight["allowed"] is True
    [budget] = (await (await client.get(BUDGETS)).json())["budgets"]
    assert (budget["heldUsdMicros"], budget["window"], budget["windowEnd"]) == (4000, "none",
                                                                                None)
    status, error = await post(client, HOLDS, {"agentId": "a1", "amountUsdCents": 100,
                                               "idempotencyKey": "k2"})
    assert (status, error["error"], error["details"]) == (
        409, "budget_exhausted", {"scope": "agent", "scopeId": "a1"})


async def test_the_sweep_writes_a_lapsed_hold_and_metrics_count_the_live_ones(
    client: TestClient[Any, Any], clock: Any
) -> None:
    _, short = await post(client, HOLDS, {"agentId": "a1", "amountUsdCents": 1, "ttlMs": 10,
                                          "idempotencyKey": "a"})
    await post(client, HOLDS, {"agentId": "a1", "amountUsdCents": 2, "idempotencyKey": "b"})
    page = await (await client.get("/metrics")).text()
    assert "clawguard_holds_outstanding 2.0" in page
    clock.advance(10)
    got = await (await client.get(f"{HOLDS}/{short['hold']['id']}")).json()
    assert got["hold"]["status"] == "expired"  # read as expired before the sweep
    page = await (await client.get("/metrics")).text()
    assert "clawguard_holds_outstanding 1.0" in page and "clawguard_held_usd_micros 20000.0" in page
    await client.app[state.REAPER].sweep()
    page = await (await client.get("/metrics")).text()
    assert 'clawguard_expired_total{kind="hold"} 1.0' in page
    status, _ = await post(client, f"{HOLDS}/{short['hold']['id']}/release")
    assert status == 409


async def test_a_hold_on_a_tripped_run_is_refused(client: TestClient[Any, Any]) -> None:
    _, started = await post(client, "/api/governance/runs", {"agentId": "a1"})
    run_id = started["run"]["id"]
    await post(client, f"/api/governance/runs/{run_id}/events",
               [{"kind": "policy-denied", "signature": "rm"}] * 2)
    status, body = await post(client, HOLDS, {"agentId": "a1", "runId": run_id,
                                              "amountUsdCents": 1, "idempotencyKey": "k"})
    assert status == 409 and body["details"]["reason"] == "circuit_break"


def utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


async def test_a_daily_budget_over_http(client: TestClient[Any, Any], clock: Any) -> None:
    clock.now = utc("2026-03-08T03:00")  # 22:00 the day before in New York (UTC-5)
    status, made = await post(client, BUDGETS, {
        "scope": "team", "scopeId": "t1", "limitUsdCents": 10, "mode": "cap", "window": "day",
        "timezone": "America/New_York"})
    assert status == 200
    budget = made["budget"]
    assert (budget["windowStart"], budget["windowEnd"]) == (utc("2026-03-07T05:00"),
                                                            utc("2026-03-08T05:00"))
    _, spent = await post(client, "/api/governance/spend", {"teamId": "t1", "costUsdCents": 10})
    assert spent["stop"] is True and spent["scopes"][0]["windowEnd"] == utc("2026-03-08T05:00")
    clock.now = utc("2026-03-08T05:00")  # New York's midnight: a new (23-hour) day
    preflight = await (await client.get("/api/governance/preflight?teamId=t1")).json()
    assert preflight["allowed"] is True
    assert preflight["scopes"][0]["windowEnd"] == utc("2026-03-09T04:00")  # after the DST jump
    _, spent = await post(client, "/api/governance/spend", {"teamId": "t1", "costUsdCents": 8})
    assert (spent["stop"], spent["scopes"][0]["crossed"]) == (False, "soft")
    status, kept = await post(client, BUDGETS, {"scope": "team", "scopeId": "t1",
                                                "limitUsdCents": 20})
    assert (kept["budget"]["window"], kept["budget"]["timezone"]) == ("day", "America/New_York")
    assert kept["budget"]["spentUsdMicros"] == 8 * C



async def test_place_estimate_is_the_gates_way_in(client: TestClient[Any, Any]) -> None:
    from clawguard.core import commands, errors

    await post(client, BUDGETS, {"scope": "agent", "scopeId": "a1", "limitUsdCents": 10,
                                 "mode": "cap"})
    holds = client.app[state.HOLDS]
    scopes = commands.ScopeIds.model_validate({"agentId": "a1", "teamId": "t1"})
    hold = await holds.place_estimate(scopes, 6, "key_exec", "receipt-1")
    assert (hold.team_id, hold.amount_usd_micros) == ("t1", 6 * C)
    assert (await holds.place_estimate(scopes, 6, "key_exec", "receipt-1")).id == hold.id
    try:
        await holds.place_estimate(scopes, 5, "key_exec", "receipt-2")
    except errors.BudgetExhausted as exc:
        assert exc.details == {"scope": "agent", "scopeId": "a1"}
    else:
        raise AssertionError("a hold past the cap was placed")
