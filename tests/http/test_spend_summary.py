"""GET /api/governance/spend/summary over HTTP: grouping, the time window, the order."""

from __future__ import annotations

SPEND = "/api/governance/spend"
SUMMARY = "/api/governance/spend/summary"


async def test_summary_groups_windows_and_orders(client, clock):
    await client.post(SPEND, json={"agentId": "a1", "tenantId": "org", "costUsdCents": 2,
                                   "model": "gpt-4o", "inputTokens": 5, "outputTokens": 1})
    clock.advance(100)
    await client.post(SPEND, json={"agentId": "a2", "tenantId": "org", "costUsdCents": 3})
    await client.post(SPEND, json={"agentId": "a1", "costUsdCents": 0.0001})
    clock.advance(100)
    await client.post(SPEND, json={"agentId": "a3", "costUsdCents": 10})

    resp = await client.get(f"{SUMMARY}?groupBy=agent")
    assert resp.status == 200
    groups = (await resp.json())["groups"]
    assert [(g["key"], g["spentUsdMicros"], g["spends"]) for g in groups] == [
        ("a3", 100_000, 1), ("a2", 30_000, 1), ("a1", 20_001, 2)]
    assert groups[2]["inputTokens"] == 5 and groups[2]["outputTokens"] == 1

    tenants = (await (await client.get(f"{SUMMARY}?groupBy=tenant")).json())["groups"]
    assert [(g["key"], g["spentUsdMicros"]) for g in tenants] == [(None, 100_001), ("org", 50_000)]

    window = f"{SUMMARY}?groupBy=agent&since={clock.now - 100}&until={clock.now}"
    groups = (await (await client.get(window)).json())["groups"]
    assert [(g["key"], g["spentUsdMicros"]) for g in groups] == [("a2", 30_000), ("a1", 1)]


async def test_summary_is_for_operators(make_client, cfg, db_path):
    from clawguard.core import principals
    from clawguard.runtime import config
    from clawguard.store import sqlite

    keyed = cfg.model_copy(update={"auth": config.AuthConfig(mode="keys")})
    admin = sqlite.KeyAdmin(str(db_path))
    made = {}
    for role in ("executor", "operator"):
        key = principals.new_key()
        admin.create(principals.make(role, None), principals.hash_key(key))
        made[role] = key
    admin.close()
    async with make_client(keyed) as client:
        for role, status in (("executor", 403), ("operator", 200)):
            resp = await client.get(f"{SUMMARY}?groupBy=model",
                                    headers={"Authorization": f"Bearer {made[role]}"})
            assert resp.status == status
