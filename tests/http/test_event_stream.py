"""GET /api/events: server-sent events, role-filtered, resumable, cheap to leave open."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from clawguard.core import principals
from clawguard.http import state
from clawguard.http.handlers import events as event_routes
from clawguard.runtime import config
from clawguard.services import events as hub_events
from clawguard.store import sqlite

TOOLS = "/api/tools/approvals"


@pytest.fixture
def keyed(cfg: config.Config) -> config.Config:
    return cfg.model_copy(update={"auth": config.AuthConfig(mode="keys", cache_ms=1000)})


@pytest.fixture
def keys(keyed: config.Config, db_path: Any) -> dict[str, str]:
    """A key of every role, and a leader of agent a2 only."""
    admin = sqlite.KeyAdmin(str(db_path))
    made = {}
    for who, role, leads in (("executor", "executor", None), ("leader", "leader", None),
                             ("operator", "operator", None), ("admin", "admin", None),
                             ("a2-leader", "leader", frozenset({"a2"}))):
        key = principals.new_key()
        admin.create(principals.Principal(principals.new_key_id(), who, role, leads=leads),
                     principals.hash_key(key))
        made[who] = key
    admin.close()
    return made


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def next_message(resp: Any) -> dict[str, Any]:
    """The next message that is not a comment: its fields, `data` parsed."""
    while True:
        block = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
        fields: dict[str, Any] = {}
        for line in block.decode().splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = json.loads(value) if name == "data" else value
        if fields:
            return fields


async def until(resp: Any, last_tool: str) -> list[dict[str, Any]]:
    """Every message up to the approval.requested of `last_tool` (the test's end marker)."""
    seen = []
    while True:
        message = await next_message(resp)
        seen.append(message)
        data = message["data"]["data"]
        if message["event"] == "approval.requested" and data["toolName"] == last_tool:
            return seen


async def ask(client: Any, key: str, agent: str, tool: str) -> str:
    resp = await client.post(TOOLS, json={"toolName": tool, "agentId": agent, "waitMs": 0},
                             headers=auth(key))
    approval_id: str = (await resp.json())["approvalId"]
    return approval_id


async def test_each_key_hears_only_what_its_role_and_its_agents_allow(make_client, keyed, keys):
    async with make_client(keyed) as client:
        streams = {who: await client.get("/api/events", headers=auth(keys[who]))
                   for who in ("leader", "operator", "a2-leader", "admin")}
        for resp in streams.values():
            assert resp.status == 200 and resp.content_type == "text/event-stream"
        await client.post("/api/governance/budgets", headers=auth(keys["operator"]),
                          json={"scope": "agent", "scopeId": "a1", "limitUsdCents": 100,
                                "mode": "cap"})
        approval_id = await ask(client, keys["executor"], "a1", "shell")
        await client.post(f"{TOOLS}/{approval_id}/resolve", headers=auth(keys["leader"]),
                          json={"decision": "deny"})
        await client.post("/api/governance/spend", headers=auth(keys["executor"]),
                          json={"agentId": "a1", "costUsdCents": 150})
        await ask(client, keys["executor"], "a2", "end")
        told = {who: await until(resp, "end") for who, resp in streams.items()}
        for resp in streams.values():
            resp.close()

    def names(who: str) -> list[str]:
        return [m["event"] for m in told[who]]

    assert names("leader") == ["approval.requested", "approval.decided", "approval.requested"]
    assert names("a2-leader") == ["approval.requested"]  # a1's prompt and decision: not its own
    # The spend is told as it is charged; its crossing once the commit is read back.
    assert names("operator") == names("admin") == [
        "approval.requested", "approval.decided", "spend", "budget.crossed", "budget.paused",
        "approval.requested"]
    requested, decided, spend, crossed, paused, _ = told["operator"]
    assert decided["data"]["data"]["approvalId"] == approval_id
    assert decided["data"]["data"]["decision"] == "deny"
    assert "id" not in spend and spend["data"]["data"]["costUsdMicros"] == 1_500_000
    assert [s["status"] for s in spend["data"]["data"]["scopes"]] == ["paused"]
    ids = [int(m["id"]) for m in (requested, decided, crossed, paused)]
    assert ids == sorted(ids) and all(m["data"]["id"] == m["id"] for m in told["operator"]
                                      if "id" in m)
    assert paused["data"]["type"] == "budget.paused" and paused["data"]["data"]["scopeId"] == "a1"


async def test_last_event_id_replays_what_was_missed_then_goes_on_live(make_client, keyed, keys):
    key = auth(keys["leader"])
    async with make_client(keyed) as client:
        first = await client.get("/api/events", headers=key)
        await ask(client, keys["executor"], "a1", "one")
        seen = await next_message(first)
        first.close()  # the console lost its connection: two prompts come meanwhile
        await ask(client, keys["executor"], "a1", "two")
        await ask(client, keys["executor"], "a1", "three")
        again = await client.get("/api/events", headers={**key, "Last-Event-ID": seen["id"]})
        replayed = [await next_message(again) for _ in range(2)]
        await ask(client, keys["executor"], "a1", "four")
        live = await next_message(again)
        again.close()
        from_start = await client.get("/api/events", headers={**key, "Last-Event-ID": "0"})
        everything = await until(from_start, "four")
        from_start.close()
    tools = [m["data"]["data"]["toolName"] for m in (*replayed, live)]
    assert tools == ["two", "three", "four"]
    assert [m["data"]["data"]["toolName"] for m in everything] == ["one", "two", "three", "four"]
    assert int(replayed[0]["id"]) > int(seen["id"])


async def test_the_key_goes_in_a_header_never_the_query_and_executors_hear_nothing(
    make_client, keyed, keys
):
    async with make_client(keyed) as client:
        for path, headers, status in (
            (f"/api/events?key={keys['admin']}", {}, 401),
            (f"/api/events?apiKey={keys['admin']}", {}, 401),
            ("/api/events", auth(keys["executor"]), 403),
            ("/api/events", {"X-API-Key": keys["operator"], "Last-Event-ID": "x1"}, 400),
        ):
            resp = await client.get(path, headers=headers)
            assert resp.status == status, path
            assert set(await resp.json()) == {"error", "message", "details"}
        resp = await client.get("/api/events", headers={"X-API-Key": keys["operator"]})
        assert resp.status == 200
        resp.close()


async def test_a_quiet_stream_is_kept_open_by_pings_and_a_gone_client_is_forgotten(
    make_client, keyed, keys, monkeypatch
):
    monkeypatch.setattr(event_routes, "HEARTBEAT_S", 0.05)
    async with make_client(keyed) as client:
        hub = client.app[state.EVENTS]
        resp = await client.get("/api/events", headers=auth(keys["operator"]))
        assert await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5) == (
            b": clawguard events\n\n")
        assert await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5) == b": ping\n\n"
        assert len(hub._subscribers) == 1
        resp.close()
        for _ in range(100):  # the next ping's write finds the client gone
            if not hub._subscribers:
                break
            await asyncio.sleep(0.02)
        assert not hub._subscribers
        # With no one listening the hub stops following the chain; a new stream starts anew.
        await ask(client, keys["executor"], "a1", "unheard")
        resp = await client.get("/api/events", headers=auth(keys["leader"]))
        await ask(client, keys["executor"], "a1", "heard")
        message = await next_message(resp)
        assert message["data"]["data"]["toolName"] == "heard"
        resp.close()


async def test_shutdown_ends_open_streams_at_once(make_client, keyed, keys):
    client = make_client(keyed)
    await client.start_server()
    async with aiohttp.ClientSession() as browser:  # stays open while the server shuts down
        resp = await browser.get(client.make_url("/api/events"), headers=auth(keys["operator"]))
        assert resp.status == 200
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(client.server.close(), 30)
        assert loop.time() - started < 5  # not held for the drain's whole timeout
        assert await asyncio.wait_for(resp.content.read(), 5) == b": clawguard events\n\n"
    await client.close()


async def test_a_subscriber_that_falls_behind_is_cut_off_after_what_it_holds() -> None:
    """Its stream ends; the client reconnects with its Last-Event-ID and replays the rest."""
    viewer = principals.Principal("key_v", "viewer", "operator")
    subscription = hub_events.Subscription(viewer, head=0)
    for n in range(hub_events.BACKLOG + 1):
        subscription.offer(hub_events.Item("approval.requested", n + 1, b"{}"))
    assert subscription.reason == "fell behind"
    held = [await subscription.next(0) for _ in range(hub_events.BACKLOG)]
    assert [item.id for item in held if item] == list(range(1, hub_events.BACKLOG + 1))
    with pytest.raises(hub_events.Subscription.Closed):
        await subscription.next(0)
