"""/metrics: Prometheus text whose values move when spends, approvals and sweeps happen."""

from __future__ import annotations

import asyncio
import re

from prometheus_client.parser import text_string_to_metric_families
from test_approvals import until

from clawguard.http import state


async def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_values_move_with_spends_approvals_and_sweeps(client, clock):
    before = await scrape(client)
    await client.post("/api/governance/budgets", json={
        "scope": "agent", "scopeId": "a1", "limitUsdCents": 10, "mode": "cap"})
    for _ in range(3):
        resp = await client.post("/api/governance/spend", json={
            "agentId": "a1", "teamId": "t1", "costUsdCents": 4})
        assert resp.status == 200
    asked = await client.post("/api/tools/approvals", json={
        "toolName": "shell", "agentId": "a1", "waitMs": 0})
    assert (await asked.json())["resolution"] == "timeout"
    await client.post("/api/tools/approvals", json={"toolName": "rm", "agentId": "a2",
                                                    "waitMs": 0})
    after = await scrape(client)

    spend_route = (("method", "POST"), ("route", "/api/governance/spend"), ("status", "200"))
    assert after["clawguard_http_requests_total", spend_route] == 3
    assert value(after, "clawguard_spend_usd_micros_total", scope="agent") == 120_000
    assert value(after, "clawguard_spend_usd_micros_total", scope="team") == 120_000
    assert value(after, "clawguard_spends_total", outcome="stopped") == 1
    assert value(after, "clawguard_paused_scopes", scope="agent") == 1
    assert value(after, "clawguard_budget_utilisation_ratio", scope="agent", scope_id="a1",
                 mode="cap") == 1.2
    assert value(after, "clawguard_pending_approvals") == 2
    # waitMs 0: nobody waited, so no wait is counted (a client opens so, then re-attaches)
    assert value(after, "clawguard_approval_wait_seconds_count", resolution="timeout") == 0
    assert value(after, "clawguard_store_batch_size_count") > value(
        before, "clawguard_store_batch_size_count")

    clock.advance(10 * 60 * 1000)  # past the requests' time to live
    sweeps = value(after, "clawguard_reaper_sweeps_total")
    await client.app[state.REAPER].sweep()
    swept = await scrape(client)
    assert value(swept, "clawguard_pending_approvals") == 0
    assert value(swept, "clawguard_expired_total", kind="approval") == 2
    assert value(swept, "clawguard_reaper_sweeps_total") == sweeps + 1


async def test_routes_are_labelled_by_template_so_labels_stay_bounded(client):
    for n in range(20):
        await client.delete(f"/api/governance/budgets/agent/ghost-{n}")
        await client.get(f"/no/such/{n}")
    text = await (await client.get("/metrics")).text()
    assert "ghost-" not in text and "/no/such" not in text
    assert re.search(r'route="/api/governance/budgets/\{scope\}/\{scopeId\}",status="404"\} 20',
                     text)
    assert 'route="unmatched",status="404"} 20' in text


async def test_budget_series_are_capped(client):
    counters = client.app[state.METRICS]
    counters.budget_series = 5
    for n in range(12):
        await client.post("/api/governance/budgets", json={
            "scope": "team", "scopeId": f"t{n}", "limitUsdCents": 100})
        await client.post("/api/governance/spend", json={"teamId": f"t{n}", "costUsdCents": n})
    samples = await scrape(client)
    exported = {dict(labels)["scope_id"] for name, labels in samples
                if name == "clawguard_budget_utilisation_ratio"}
    assert exported == {"t7", "t8", "t9", "t10", "t11"}  # the five most utilised
    assert value(samples, "clawguard_budgets", scope="team", status="active") == 12


async def test_made_up_methods_share_one_label(client):
    for method in ("MOVE", "LOCK", "PROPFIND", "MKCOL", "COPY"):
        resp = await client.request(method, "/healthz")
        assert resp.status == 405
    text = await (await client.get("/metrics")).text()
    assert "PROPFIND" not in text
    assert 'method="other",route="unmatched",status="405"} 5' in text


async def test_a_reattached_wait_counts_its_decision_and_no_wait_is_request_latency(client):
    asked = await (await client.post("/api/tools/approvals", json={
        "toolName": "shell", "agentId": "a1", "waitMs": 0})).json()
    waiting = asyncio.create_task(client.get(
        f"/api/tools/approvals/{asked['approvalId']}?waitMs=60000"))
    await until(lambda: client.app[state.APPROVALS].parked == 1)
    resolved = await client.post(f"/api/tools/approvals/{asked['approvalId']}/resolve",
                                 json={"decision": "deny"})
    assert resolved.status == 200 and (await waiting).status == 200
    samples = await scrape(client)
    assert value(samples, "clawguard_approval_wait_seconds_count", resolution="deny") == 1
    for route in ("/api/tools/approvals", "/api/tools/approvals/{id}"):
        assert value(samples, "clawguard_http_request_duration_seconds_count", route=route) == 0
    assert value(samples, "clawguard_http_requests_total", method="GET",
                 route="/api/tools/approvals/{id}", status="200") == 1
    assert value(samples, "clawguard_http_request_duration_seconds_count",
                 route="/api/tools/approvals/{id}/resolve") == 1
