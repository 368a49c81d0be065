"""Approvals with stages through the real app with keys: votes, groups, one vote per key,
self-approval read at vote time, any deny denies, waivers, `?reviewer=me`, and parked
waiters woken only by the final outcome, once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import staged
from aiohttp.test_utils import TestClient, TestServer

from clawguard.core import principals
from clawguard.http import application, state
from clawguard.runtime import config
from clawguard.store import sqlite

TOOLS = "/api/tools/approvals"
TWO_STAGES = [{"name": "finance", "gates": [{"group": "finance", "count": 2}]},
              {"name": "security", "gates": [{"group": "security", "count": 1}]}]
PEOPLE = {"exec": ("executor", ()), "ann": ("leader", ("finance",)),
          "bob": ("leader", ("finance",)), "cat": ("leader", ("security",)),
          "dan": ("leader", ()), "root": ("admin", ())}


@pytest.fixture
def keyed(cfg):
    return cfg.model_copy(update={
        "auth": config.AuthConfig(mode="keys", cache_ms=1000),
        "approvals": config.ApprovalsConfig(sweep_ms=3_600_000),
    })


@pytest.fixture
def people(keyed, db_path) -> dict[str, tuple[str, principals.Principal]]:
    """name -> (key, principal), made on the database file as an operator would."""
    admin = sqlite.KeyAdmin(str(db_path))
    made = {}
    for name, (role, groups) in PEOPLE.items():
        key = principals.new_key()
        principal = principals.make(role, name, groups=frozenset(groups) or None)
        admin.create(principal, principals.hash_key(key))
        made[name] = (key, principal)
    admin.close()
    return made


@pytest.fixture
def self_approval() -> dict[str, bool]:
    return {"allowed": False}


@pytest.fixture
async def client(keyed, clock, self_approval) -> AsyncIterator[TestClient[Any, Any]]:
    app = application.create_app(keyed, clock=clock)

    async def allowed() -> bool:  # what the settings say at each vote
        return self_approval["allowed"]

    app[state.SELF_APPROVAL] = allowed
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def call(client, people, who: str, method: str, path: str, body: Any = None
               ) -> tuple[int, Any]:
    headers = {"X-API-Key": people[who][0]}
    resp = await client.request(method, path, headers=headers,
                                data=None if body is None else json.dumps(body))
    return resp.status, await resp.json()


async def vote(client, people, who: str, approval_id: str, decision: str, **extra: Any
               ) -> tuple[int, Any]:
    return await call(client, people, who, "POST", f"{TOOLS}/{approval_id}/resolve",
                      {"decision": decision, **extra})


async def parked(client, count: int) -> None:
    """Until `count` callers are parked (the handshake registers them before it opens)."""
    for _ in range(500):
        if client.app[state.APPROVALS].parked == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never {count} parked")


def ask(client, people, stages, who: str = "exec", sticky: bool = True, wait_ms: int = 60_000):
    """Open an approval with stages as the gate does, its caller parked; (id, its answer)."""
    new = staged.new(stages, requester=people[who][1], sticky=sticky)
    return new.id, asyncio.create_task(client.app[state.APPROVALS].request(new, wait_ms))


async def test_two_stages_decided_in_order_and_the_waiter_woken_once_with_the_outcome(
    client, people
):
    approval_id, answer = ask(client, people, TWO_STAGES)
    await parked(client, 1)
    status, body = await vote(client, people, "ann", approval_id, "allow_always",
                              comments="looks fine")
    assert status == 200 and body["approval"]["status"] == "pending"
    [gate] = body["approval"]["stages"][0]["gates"]
    assert [(v["keyName"], v["decision"], v["comments"]) for v in gate["votes"]] == [
        ("ann", "allow_always", "looks fine")]
    assert not answer.done() and client.app[state.APPROVALS].parked == 1

    status, body = await vote(client, people, "ann", approval_id, "allow_always")
    assert status == 409 and set(body) == {"error", "message", "details"}
    status, body = await vote(client, people, "cat", approval_id, "deny")  # not finance
    assert status == 403 and "no open gate" in body["message"]
    status, body = await vote(client, people, "dan", approval_id, "deny")  # no group at all
    assert status == 403
    status, body = await vote(client, people, "exec", approval_id, "allow_once")  # a role
    assert status == 403

    async def reviewers() -> list[str]:
        seen = []
        for who in ("ann", "bob", "cat", "dan"):
            status, body = await call(client, people, who, "GET", f"{TOOLS}?reviewer=me")
            assert status == 200
            if [a["id"] for a in body["approvals"]] == [approval_id]:
                seen.append(who)
        return seen

    assert await reviewers() == ["bob"]
    status, body = await vote(client, people, "bob", approval_id, "allow_always")
    assert status == 200 and body["approval"]["status"] == "pending"
    assert [s["status"] for s in body["approval"]["stages"]] == ["approved", "pending"]
    assert not answer.done()
    assert await reviewers() == ["cat"]

    status, body = await vote(client, people, "cat", approval_id, "conditional",
                              conditions="run the dry run first")
    assert status == 200 and body["approval"]["status"] == "approved"
    assert (await answer).resolution == "approved"
    assert await reviewers() == []
    status, body = await call(client, people, "exec", "GET", f"{TOOLS}/{approval_id}")
    assert body["approval"]["status"] == "approved"
    assert body["approval"]["stages"][1]["gates"][0]["votes"][0]["conditions"] == (
        "run the dry run first")
    status, grants = await call(client, people, "ann", "GET", f"{TOOLS}/grants")
    assert grants["grants"] == []  # a conditional vote is no allow_always
    status, audit = await call(client, people, "root", "GET",
                               "/api/governance/audit?eventType=approval")
    actions = [row["action"] for row in audit["audit"]
               if row["details"].get("approvalId") == approval_id]
    assert actions.count("approval.voted") == 2 and actions.count("approval.resolved") == 1
    status, body = await vote(client, people, "dan", approval_id, "deny")
    assert status == 409


async def test_self_approval_is_read_when_the_vote_is_cast(client, people, self_approval):
    approval_id, answer = ask(client, people, [{"gates": [{"count": 1}]}], who="ann")
    await parked(client, 1)
    status, body = await vote(client, people, "ann", approval_id, "allow_once")
    assert status == 403 and "asked" in body["message"]
    status, body = await call(client, people, "ann", "GET", f"{TOOLS}?reviewer=me")
    assert body["approvals"] == []
    self_approval["allowed"] = True  # a settings PATCH between two votes
    status, body = await call(client, people, "ann", "GET", f"{TOOLS}?reviewer=me")
    assert [a["id"] for a in body["approvals"]] == [approval_id]
    status, body = await vote(client, people, "ann", approval_id, "allow_always")
    assert status == 200 and body["approval"]["status"] == "approved"
    assert (await answer).resolution == "approved"
    status, grants = await call(client, people, "ann", "GET", f"{TOOLS}/grants")
    assert [g["approvalId"] for g in grants["grants"]] == [approval_id]


async def test_any_deny_denies_and_a_sticky_false_approval_grants_nothing(client, people):
    approval_id, answer = ask(client, people, [{"gates": [{"count": 2}]}])
    await parked(client, 1)
    assert (await vote(client, people, "ann", approval_id, "allow_always"))[0] == 200
    status, body = await vote(client, people, "dan", approval_id, "deny", comments="not today")
    assert status == 200 and body["approval"]["status"] == "deny"
    assert (await answer).resolution == "deny"
    assert (await vote(client, people, "bob", approval_id, "allow_always"))[0] == 409

    approval_id, answer = ask(client, people, [{"gates": [{"count": 2}]}], sticky=False)
    for who in ("ann", "bob"):
        assert (await vote(client, people, who, approval_id, "allow_always"))[0] == 200
    assert (await answer).resolution == "approved"
    status, grants = await call(client, people, "ann", "GET", f"{TOOLS}/grants")
    assert grants["grants"] == []


async def test_an_admin_waives_with_a_reason_and_nobody_else_does(client, people):
    approval_id, answer = ask(client, people, TWO_STAGES)
    await parked(client, 1)
    await vote(client, people, "ann", approval_id, "allow_once")
    waive = f"{TOOLS}/{approval_id}/waive"
    assert (await call(client, people, "ann", "POST", waive, {"reason": "urgent"}))[0] == 403
    assert (await call(client, people, "root", "POST", waive, {"reason": " "}))[0] == 400
    assert not answer.done()
    status, body = await call(client, people, "root", "POST", waive,
                              {"reason": "compensating control in SEC-1234"})
    assert status == 200 and body["approval"]["status"] == "approved"
    waiver = body["approval"]["waiver"]
    assert (waiver["reason"], waiver["keyId"], waiver["keyName"]) == (
        "compensating control in SEC-1234", people["root"][1].key_id, "root")
    assert [s["status"] for s in body["approval"]["stages"]] == ["waived", "waived"]
    assert (await answer).resolution == "approved"
    assert (await call(client, people, "root", "POST", waive, {"reason": "again"}))[0] == 409
    status, audit = await call(client, people, "root", "GET",
                               "/api/governance/audit?eventType=approval")
    [waived] = [row for row in audit["audit"] if row["action"] == "approval.waived"]
    assert waived["details"]["reason"] == "compensating control in SEC-1234"

    status, body = await call(client, people, "exec", "POST", TOOLS,
                              {"toolName": "rm", "agentId": "a1", "waitMs": 0})
    unstaged = f"{TOOLS}/{body['approvalId']}"
    assert (await call(client, people, "root", "POST", f"{unstaged}/waive",
                       {"reason": "r"}))[0] == 409
    status, body = await vote(client, people, "ann", body["approvalId"], "conditional",
                              conditions="x")
    assert status == 409  # Clawboo's approvals take no conditions
    status, body = await call(client, people, "ann", "GET", unstaged)
    assert {"stages", "sticky", "waiver"}.isdisjoint(body["approval"])  # its JSON unchanged


async def test_twenty_racing_votes_over_http_decide_once_and_wake_the_waiter_once(
    client, people, db_path
):
    admin = sqlite.KeyAdmin(str(db_path))
    voters = []
    for n in range(20):
        key = principals.new_key()
        admin.create(principals.make("leader", f"l{n}"), principals.hash_key(key))
        voters.append(key)
    admin.close()
    approval_id, answer = ask(client, people, [{"gates": [{"count": 2}]}])
    await parked(client, 1)
    reattached = asyncio.create_task(client.get(
        f"{TOOLS}/{approval_id}?waitMs=60000", headers={"X-API-Key": people["exec"][0]}))
    await parked(client, 2)

    async def cast(key: str) -> tuple[int, Any]:
        resp = await client.post(f"{TOOLS}/{approval_id}/resolve",
                                 json={"decision": "allow_once"}, headers={"X-API-Key": key})
        return resp.status, await resp.json()

    answers = await asyncio.gather(*(cast(key) for key in voters))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 200] + [409] * 18
    outcomes = [body["approval"]["status"] for status, body in answers if status == 200]
    assert sorted(outcomes) == ["approved", "pending"]
    assert (await answer).resolution == "approved"
    woken = await reattached
    assert (await woken.json())["approval"]["status"] == "approved"
    assert client.app[state.APPROVALS].parked == 0
    _, body = await call(client, people, "exec", "GET", f"{TOOLS}/{approval_id}")
    assert len(body["approval"]["stages"][0]["gates"][0]["votes"]) == 2


async def test_the_app_reads_allow_self_approval_from_the_stored_settings_at_each_vote(
    keyed, clock, people
):
    app = application.create_app(keyed, clock=clock)  # no reader set: the app's own
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        approval_id, answer = ask(client, people, [{"gates": [{"count": 1}]}], who="root")
        await parked(client, 1)
        status, body = await vote(client, people, "root", approval_id, "allow_once")
        assert status == 403 and "asked" in body["message"]
        status, body = await call(client, people, "root", "PATCH", "/api/governance/settings",
                                  {"allow_self_approval": True})
        assert status == 200 and body["allow_self_approval"] is True
        status, body = await vote(client, people, "root", approval_id, "allow_once")
        assert status == 200 and body["approval"]["status"] == "approved"
        assert (await answer).resolution == "approved"
