"""API keys over HTTP (admin): made and shown once, listed without secrets, revoked, expired."""

from __future__ import annotations

import json

import pytest

from clawguard.core import principals
from clawguard.http import application, state
from clawguard.runtime import config
from clawguard.store import sqlite

KEYS = "/api/keys"
BUDGETS = "/api/governance/budgets"


@pytest.fixture
def keyed(cfg):
    return cfg.model_copy(update={"auth": config.AuthConfig(mode="keys", cache_ms=60_000)})


@pytest.fixture
def admin_key(db_path):
    admin = sqlite.KeyAdmin(str(db_path))
    key = principals.new_key()
    admin.create(principals.make("admin", "root"), principals.hash_key(key))
    admin.close()
    return key


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


async def test_a_key_is_shown_once_and_never_listed(make_client, keyed, admin_key):
    async with make_client(keyed) as client:
        resp = await client.post(KEYS, json={"role": "leader", "name": "alice",
                                             "leads": ["a1"], "groups": ["finance"]},
                                 headers=bearer(admin_key))
        assert resp.status == 201
        made = await resp.json()
        key, record = made["key"], made["apiKey"]
        assert key.startswith("cgk_")
        assert (record["role"], record["name"], record["leads"], record["groups"]) == (
            "leader", "alice", ["a1"], ["finance"])
        assert record["expiresAt"] is None and record["revokedAt"] is None
        # The new key works for its role, and nothing lists its value or hash.
        assert (await client.get("/api/tools/approvals", headers=bearer(key))).status == 200
        listing = await client.get(KEYS, headers=bearer(admin_key))
        text = await listing.text()
        assert listing.status == 200 and key not in text
        assert principals.hash_key(key) not in text
        ids = [k["id"] for k in json.loads(text)["keys"]]
        assert record["id"] in ids and len(ids) == 2
        assert set(json.loads(text)["keys"][0]) == {
            "id", "name", "role", "leads", "groups", "createdAt", "expiresAt", "revokedAt",
            "lastUsedAt"}


async def test_only_an_admin_manages_keys(make_client, keyed, admin_key):
    async with make_client(keyed) as client:
        made = await (await client.post(KEYS, json={"role": "operator"},
                                        headers=bearer(admin_key))).json()
        operator = made["key"]
        for method, path in (("GET", KEYS), ("POST", KEYS), ("DELETE", f"{KEYS}/x")):
            resp = await client.request(method, path, json={"role": "admin"},
                                        headers=bearer(operator))
            assert resp.status == 403


async def test_revoke_then_refused_then_409(make_client, keyed, admin_key):
    async with make_client(keyed) as client:
        made = await (await client.post(KEYS, json={"role": "operator"},
                                        headers=bearer(admin_key))).json()
        key_id = made["apiKey"]["id"]
        assert (await client.get(BUDGETS, headers=bearer(made["key"]))).status == 200
        resp = await client.delete(f"{KEYS}/{key_id}", headers=bearer(admin_key))
        assert resp.status == 200
        assert (await resp.json())["apiKey"]["revokedAt"] is not None
        again = await client.delete(f"{KEYS}/{key_id}", headers=bearer(admin_key))
        assert again.status == 409 and (await again.json())["error"] == "conflict"
        unknown = await client.delete(f"{KEYS}/key_nope", headers=bearer(admin_key))
        assert unknown.status == 404
    # A fresh daemon (no cache) refuses the revoked key.
    async with make_client(keyed) as client:
        assert (await client.get(BUDGETS, headers=bearer(made["key"]))).status == 401


async def test_an_expired_key_is_refused_even_from_the_cache(make_client, keyed, admin_key,
                                                              clock):
    async with make_client(keyed) as client:
        made = await (await client.post(KEYS, json={"role": "operator", "expiresInMs": 5_000},
                                        headers=bearer(admin_key))).json()
        assert made["apiKey"]["expiresAt"] == clock.now + 5_000
        assert (await client.get(BUDGETS, headers=bearer(made["key"]))).status == 200  # cached
        clock.advance(4_999)
        assert (await client.get(BUDGETS, headers=bearer(made["key"]))).status == 200
        clock.advance(1)  # cache_ms is a minute: only the expiry can refuse it now
        resp = await client.get(BUDGETS, headers=bearer(made["key"]))
        assert resp.status == 401 and "revoked" in (await resp.json())["message"]


async def test_last_used_is_noted_in_memory_and_flushed_once(make_client, keyed, admin_key,
                                                             clock, db_path):
    import sqlite3

    def writes_of_last_used() -> list[int | None]:
        conn = sqlite3.connect(db_path)
        try:
            return [row[0] for row in conn.execute("SELECT last_used_at FROM api_keys")]
        finally:
            conn.close()

    async with make_client(keyed) as client:
        app = client.server.app
        start = clock.now
        for _ in range(5):
            clock.advance(10)
            await client.get(BUDGETS, headers=bearer(admin_key))
        assert writes_of_last_used() == [None]  # no write per request
        await application.flush_key_usage(app)
        assert writes_of_last_used() == [start + 50]
        listed = await (await client.get(KEYS, headers=bearer(admin_key))).json()
        assert listed["keys"][0]["lastUsedAt"] == start + 50
        assert app[state.KEY_USAGE].take() == {listed["keys"][0]["id"]: start + 50}
        clock.advance(10)
        await client.get(BUDGETS, headers=bearer(admin_key))
    # Shutting down writes what was noted since the last flush.
    assert writes_of_last_used() == [start + 60]


def test_local_cli_makes_an_expiring_key(db_path, capsys):
    from clawguard.cli import local

    assert local.duration_ms("90s") == 90_000 and local.duration_ms("2w") == 1_209_600_000
    for bad in ("0s", "10", "1y", "-5m", "1.5h"):
        with pytest.raises(Exception, match="not a duration"):
            local.duration_ms(bad)
    code = local.main(["keys", "create", "--role", "executor", "--expires-in", "1h",
                       "--db", str(db_path)])
    assert code == 0
    admin = sqlite.KeyAdmin(str(db_path))
    [key] = admin.list()
    admin.close()
    assert key["expiresAt"] - key["createdAt"] == pytest.approx(3_600_000, abs=5_000)
