"""The approval handshake through the real app on a real SQLite file.

Waiters are real HTTP requests parked on the server; expiry is driven by the
injected FakeClock and one direct reaper sweep, never by sleeping out a TTL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import dump

from clawguard.core import commands, principals, records
from clawguard.http import application, state
from clawguard.http.handlers import approvals
from clawguard.runtime import config
from clawguard.store import sqlite

TOOLS = "/api/tools/approvals"
DELEGATE = "/api/governance/delegation-approval"
GRANTS = "/api/tools/approvals/grants"
HISTORY = "/api/approvals"
DECISIONS = list(records.DECISIONS)
TTL_MS = config.ApprovalsConfig().ttl_ms


@pytest.fixture
def cfg(cfg):
    """Only the tests sweep: a background sweep could take a row a test advanced past."""
    return cfg.model_copy(update={"approvals": config.ApprovalsConfig(sweep_ms=3_600_000)})


async def call(client, method, path, body=None, **kwargs):
    data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
    resp = await client.request(method, path, data=data, **kwargs)
    return resp.status, await resp.json()


async def until(predicate, within=5.0):
    """Yield to the server until `predicate()` holds: a synchronisation, not a clock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.002)


def parked(client) -> int:
    return client.app[state.APPROVALS].parked


async def pending(client, count):
    """The pending queue once it holds `count` rows."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        status, body = await call(client, "GET", TOOLS)
        assert status == 200 and body["ok"] is True
        if len(body["approvals"]) == count:
            return body["approvals"]
        assert loop.time() < deadline, body
        await asyncio.sleep(0.002)


def ask(client, path=TOOLS, **fields):
    """A blocking handshake call, as a task: (status, body) once it is answered."""
    body = {"leaderAgentId": "lead"} if path == DELEGATE else {"toolName": "rm", "agentId": "a1"}
    return asyncio.create_task(call(client, "POST", path, body | fields))


def reattach(client, approval_id, wait_ms=60_000):
    return asyncio.create_task(
        call(client, "GET", f"{TOOLS}/{approval_id}", params={"waitMs": str(wait_ms)})
    )


async def resolve(client, approval_id, decision, **fields):
    return await call(
        client, "POST", f"{TOOLS}/{approval_id}/resolve", {"decision": decision, **fields}
    )


async def opened(client, path=TOOLS, **fields):
    """A pending row without a parked caller (waitMs 0 answers `timeout` at once)."""
    status, body = await ask(client, path, waitMs=0, **fields)
    assert status == 200 and body["resolution"] == "timeout", body
    return body["approvalId"]


async def audit_actions(client, **query):
    status, body = await call(client, "GET", "/api/governance/audit", params={
        "eventType": "approval", **query,
    })
    assert status == 200
    return [row["action"] for row in body["audit"]]


# --- waking ---------------------------------------------------------------------------


@pytest.mark.parametrize("decision", DECISIONS)
@pytest.mark.parametrize("path", [TOOLS, DELEGATE])
async def test_parked_waiters_hear_a_decision_within_200_ms(client, path, decision):
    caller = ask(client, path, taskId="task-9")
    [row] = await pending(client, 1)
    again = reattach(client, row["id"])
    await until(lambda: parked(client) == 2)
    loop = asyncio.get_running_loop()
    status, body = await resolve(client, row["id"], decision, resolvedBy="boss")
    answered_from = loop.time()
    assert status == 200 and body["ok"] is True and body["approval"]["status"] == decision
    done, _ = await asyncio.wait({caller, again}, timeout=0.2)
    assert done == {caller, again}, "a waiter was not answered within 200 ms"
    assert loop.time() - answered_from < 0.2
    assert caller.result() == (200, {"resolution": decision, "approvalId": row["id"]})
    status, attached = again.result()
    assert status == 200 and attached["approval"] == body["approval"]
    assert attached["approval"]["resolvedBy"] == "boss"
    assert attached["approval"]["resolvedAt"] is not None
    assert parked(client) == 0 and client.app[state.APPROVALS].watched == 0
    assert await audit_actions(client) == ["approval.resolved", "approval.requested"]


async def test_a_delegation_row_carries_the_leader_scope_and_prompt(client):
    caller = ask(client, DELEGATE, kind="deploy", targetAgentName="bob",
                 task="run the migration with token sk-abcdefghijklmnopqrstu", taskId="t-1")
    [row] = await pending(client, 1)
    assert row["agentId"] == "lead" and row["toolName"] == "delegate:deploy"
    assert row["taskId"] == "t-1" and row["status"] == "pending"
    assert row["reason"] == "Delegate deploy work to bob: run the migration with token ***"
    assert json.loads(row["argsSummary"]) == {
        "kind": "deploy", "targetAgentName": "bob", "task": "run the migration with token ***",
    }
    assert row["expiresAt"] == row["createdAt"] + TTL_MS
    await resolve(client, row["id"], "deny")
    assert (await caller)[1]["resolution"] == "deny"


async def test_secret_looking_arguments_are_masked_before_storage(client, db_path):
    secret = "ghp_" + "x" * 30
    approval_id = await opened(client, args={
        "path": "/tmp/x", "apiKey": "hunter2", "nested": {"password": "pw", "note": secret},
        "inputTokens": 12, "ratio": 0.25,
    }, reason="use Bearer abcdefghijklmnop")
    status, body = await call(client, "GET", f"{TOOLS}/{approval_id}")
    assert status == 200
    summary = json.loads(body["approval"]["argsSummary"])
    assert summary == {"path": "/tmp/x", "apiKey": "***",
                       "nested": {"password": "***", "note": "***"},
                       "inputTokens": 12, "ratio": 0.25}
    assert body["approval"]["reason"] == "use ***"
    stored = "\n".join(dump(db_path))
    assert "hunter2" not in stored and secret not in stored and "abcdefghijklmnop" not in stored


async def test_timeout_when_nobody_answers_leaves_the_row_pending_for_reattach(client):
    status, body = await call(client, "POST", TOOLS, {"toolName": "rm", "agentId": "a1",
                                                      "waitMs": 30})
    assert status == 200 and body["resolution"] == "timeout"
    approval_id = body["approvalId"]
    status, got = await call(client, "GET", f"{TOOLS}/{approval_id}", params={"waitMs": "20"})
    assert status == 200 and got["approval"]["status"] == "pending"
    assert [row["id"] for row in await pending(client, 1)] == [approval_id]
    again = reattach(client, approval_id)
    await until(lambda: parked(client) == 1)
    await resolve(client, approval_id, "allow_once")
    status, got = await asyncio.wait_for(again, 1)
    assert got["approval"]["status"] == "allow_once"


async def test_wait_ms_above_the_setting_is_cut_to_it(make_client, cfg):
    short = cfg.model_copy(update={"approvals": config.ApprovalsConfig(wait_ms=40)})
    async with make_client(short) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, body = await call(client, "POST", TOOLS, {
            "toolName": "rm", "agentId": "a1", "waitMs": 3_600_000,
        })
        assert status == 200 and body["resolution"] == "timeout"
        status, got = await call(client, "GET", f"{TOOLS}/{body['approvalId']}",
                                 params={"waitMs": "3600000"})
        assert status == 200 and got["approval"]["status"] == "pending"
        status, body = await call(client, "POST", DELEGATE, {"leaderAgentId": "lead"})
        assert status == 200 and body["resolution"] == "timeout"
        assert loop.time() - started < 3


async def test_expiry_reads_as_expired_at_once_and_the_sweep_wakes_waiters(client, clock,
                                                                          db_path):
    caller = ask(client)
    [row] = await pending(client, 1)
    again = reattach(client, row["id"])
    await until(lambda: parked(client) == 2)
    clock.advance(TTL_MS)
    # Past expiresAt, the row acts as expired everywhere before the reaper writes it.
    status, before_sweep = await call(client, "GET", f"{TOOLS}/{row['id']}")
    assert before_sweep["approval"]["status"] == "expired"
    assert before_sweep["approval"]["resolvedAt"] == row["expiresAt"]
    assert (await call(client, "GET", TOOLS))[1]["approvals"] == []
    stored = dump(db_path)
    status, body = await resolve(client, row["id"], "allow_always")
    assert status == 409 and body["details"]["status"] == "expired"
    assert dump(db_path) == stored  # a late decision changes nothing, and makes no grant
    assert not caller.done() and not again.done()

    assert await client.app[state.REAPER].sweep() == 1
    done, _ = await asyncio.wait({caller, again}, timeout=0.2)
    assert done == {caller, again}
    assert caller.result() == (200, {"resolution": "expired", "approvalId": row["id"]})
    assert again.result()[1]["approval"] == before_sweep["approval"]
    assert await client.app[state.REAPER].sweep() == 0
    assert (await call(client, "GET", f"{TOOLS}/{row['id']}"))[1] == before_sweep
    assert await audit_actions(client) == ["approval.expired", "approval.requested"]
    assert (await call(client, "GET", GRANTS))[1]["grants"] == []


async def test_a_waiter_past_its_rows_expiry_answers_expired_without_the_sweep(cfg):
    """With the wall clock, a wait ends at the row's expiry and says so, sweep or not."""
    quick = cfg.model_copy(update={"approvals": config.ApprovalsConfig(
        ttl_ms=60, sweep_ms=3_600_000,
    )})
    async with TestClient(TestServer(application.create_app(quick), host="127.0.0.1")) as client:
        status, body = await asyncio.wait_for(call(client, "POST", TOOLS, {
            "toolName": "rm", "agentId": "a1",
        }), 3)
        assert status == 200 and body["resolution"] == "expired"
        status, got = await call(client, "GET", f"{TOOLS}/{body['approvalId']}")
        assert got["approval"]["status"] == "expired"


# --- sticky grants ----------------------------------------------------------------------


async def test_allow_always_short_circuits_the_same_pair_and_no_other(client):
    approval_id = await opened(client)
    status, body = await resolve(client, approval_id, "allow_always")
    assert status == 200
    status, body = await call(client, "POST", TOOLS, {"toolName": "rm", "agentId": "a1",
                                                      "args": {"path": "/"}})
    assert (status, body) == (200, {"resolution": "allow_always"})
    assert await pending(client, 0) == []
    for other in ({"toolName": "ls"}, {"agentId": "a2"}):
        await opened(client, **other)
    [grant] = (await call(client, "GET", GRANTS))[1]["grants"]
    assert grant["agentId"] == "a1" and grant["toolName"] == "rm"
    assert grant["approvalId"] == approval_id and grant["expiresAt"] is None
    assert (await audit_actions(client))[:3] == [
        "approval.requested", "approval.requested", "approval.sticky_allowed",
    ]


async def audit_rows(client, action):
    status, body = await call(client, "GET", "/api/governance/audit", params={"limit": "1000"})
    assert status == 200
    return [row for row in body["audit"] if row["action"] == action]


async def test_an_args_grant_lets_through_only_the_same_arguments(client):
    """Issue 14: allow_always on `rm -rf build` must not let `rm -rf /` through."""
    build = {"cmd": "rm", "flags": "-rf", "path": "build", "apiToken": "s3cret"}
    approval_id = await opened(client, args=build)
    status, body = await resolve(client, approval_id, "allow_always", grantScope="args")
    assert status == 200 and body["approval"]["status"] == "allow_always"
    [grant] = (await call(client, "GET", GRANTS))[1]["grants"]
    assert grant["grantScope"] == "args" and grant["argsFingerprint"]
    assert grant["argsFingerprint"] == body["approval"]["argsFingerprint"]
    assert "s3cret" not in grant["argsSummary"] and '"path":"build"' in grant["argsSummary"]
    # The same arguments in another key order (and another secret): let through.
    reordered = {"path": "build", "apiToken": "other", "flags": "-rf", "cmd": "rm"}
    status, body = await call(client, "POST", TOOLS, {"toolName": "rm", "agentId": "a1",
                                                      "args": reordered})
    assert (status, body) == (200, {"resolution": "allow_always"})
    # Other arguments ask a person again.
    root = await opened(client, args={"cmd": "rm", "flags": "-rf", "path": "/"})
    assert [row["id"] for row in await pending(client, 1)] == [root]
    [allowed] = await audit_rows(client, "approval.sticky_allowed")
    assert allowed["details"]["grantId"] == grant["id"]
    assert allowed["details"]["grantScope"] == "args"
    assert allowed["details"]["argsFingerprint"] == grant["argsFingerprint"]
    assert json.loads(allowed["details"]["argsSummary"]) == reordered | {"apiToken": "***"}
    [resolved] = await audit_rows(client, "approval.resolved")
    assert resolved["details"]["grantScope"] == "args"
    assert resolved["details"]["argsFingerprint"] == grant["argsFingerprint"]


async def test_a_tool_grant_is_the_default_and_its_short_circuits_name_the_arguments(client):
    await resolve(client, await opened(client, args={"path": "build"}), "allow_always")
    [grant] = (await call(client, "GET", GRANTS))[1]["grants"]
    assert (grant["grantScope"], grant["argsFingerprint"]) == ("tool", None)
    status, body = await call(client, "POST", TOOLS, {"toolName": "rm", "agentId": "a1",
                                                      "args": {"path": "/"}})
    assert (status, body) == (200, {"resolution": "allow_always"})
    [allowed] = await audit_rows(client, "approval.sticky_allowed")
    assert allowed["details"]["grantScope"] == "tool"
    assert allowed["details"]["argsSummary"] == '{"path":"/"}'
    assert len(allowed["details"]["argsFingerprint"]) == 64


async def test_delegation_args_grants_match_the_same_task_only(client):
    approval_id = await opened(client, DELEGATE, leaderAgentId="lead", task="fix the build")
    await resolve(client, approval_id, "allow_always", grantScope="args")
    status, body = await call(client, "POST", DELEGATE, {"leaderAgentId": "lead",
                                                         "task": "fix the build"})
    assert (status, body) == (200, {"resolution": "allow_always"})
    await opened(client, DELEGATE, leaderAgentId="lead", task="delete prod")
    assert len(await pending(client, 1)) == 1


@pytest.mark.parametrize("scope", ["everything", "ARGS", "", None, 1])
async def test_an_unknown_grant_scope_is_400_and_changes_nothing(client, db_path, scope):
    approval_id = await opened(client)
    stored = dump(db_path)
    status, body = await resolve(client, approval_id, "allow_always", grantScope=scope)
    assert status == 400 and set(body) == {"error", "message", "details"}
    assert dump(db_path) == stored
    assert (await call(client, "GET", GRANTS))[1]["grants"] == []


async def test_delegation_grants_are_keyed_by_leader_and_kind(client):
    approval_id = await opened(client, DELEGATE, leaderAgentId="lead", kind="code")
    await resolve(client, approval_id, "allow_always")
    status, body = await call(client, "POST", DELEGATE, {"leaderAgentId": "lead",
                                                         "task": "again"})
    assert (status, body) == (200, {"resolution": "allow_always"})  # kind defaults to code
    await opened(client, DELEGATE, leaderAgentId="lead", kind="deploy")
    await opened(client, DELEGATE, leaderAgentId="other", kind="code")
    assert len(await pending(client, 2)) == 2


async def test_a_revoked_grant_no_longer_short_circuits(client):
    await resolve(client, await opened(client), "allow_always")
    [grant] = (await call(client, "GET", GRANTS))[1]["grants"]
    status, body = await call(client, "DELETE", f"{GRANTS}/{grant['id']}",
                              headers={approvals.ACTOR_HEADER: "ops"})
    assert status == 200 and body["ok"] is True
    assert body["grant"]["revokedBy"] == "ops" and body["grant"]["revokedAt"] is not None
    assert (await call(client, "GET", GRANTS))[1]["grants"] == []
    await opened(client)  # pends again
    status, body = await call(client, "DELETE", f"{GRANTS}/{grant['id']}")
    assert status == 409 and body["error"] == "conflict"
    assert "approval.grant_revoked" in await audit_actions(client)


async def test_an_expired_grant_no_longer_short_circuits(make_client, cfg, clock):
    sticky = cfg.model_copy(update={"approvals": config.ApprovalsConfig(sticky_ttl_ms=60_000)})
    async with make_client(sticky) as client:
        await resolve(client, await opened(client), "allow_always")
        [grant] = (await call(client, "GET", GRANTS))[1]["grants"]
        assert grant["expiresAt"] == clock.now + 60_000
        clock.advance(59_999)
        assert (await call(client, "POST", TOOLS, {"toolName": "rm", "agentId": "a1"}))[1] == {
            "resolution": "allow_always",
        }
        clock.advance(1)
        assert (await call(client, "GET", GRANTS))[1]["grants"] == []
        second = await opened(client)
        # A new allow_always after expiry makes a fresh grant in place of the stale one.
        await resolve(client, second, "allow_always")
        [fresh] = (await call(client, "GET", GRANTS))[1]["grants"]
        assert fresh["approvalId"] == second and fresh["id"] != grant["id"]


# --- exactly once -------------------------------------------------------------------------


async def test_twenty_concurrent_resolves_have_one_winner_that_every_waiter_sees(client):
    caller = ask(client)
    [row] = await pending(client, 1)
    attached = [reattach(client, row["id"]) for _ in range(3)]
    await until(lambda: parked(client) == 4)
    answers = await asyncio.gather(*(
        resolve(client, row["id"], DECISIONS[n % 3], resolvedBy=f"leader-{n}")
        for n in range(20)
    ))
    wins = [body for status, body in answers if status == 200]
    assert len(wins) == 1
    assert sorted(status for status, _ in answers) == [200] + [409] * 19
    winner = wins[0]["approval"]
    assert all(body["details"]["status"] == winner["status"]
               for status, body in answers if status == 409)
    assert (await asyncio.wait_for(caller, 1))[1]["resolution"] == winner["status"]
    for task in attached:
        assert (await asyncio.wait_for(task, 1))[1]["approval"] == winner
    records = (await call(client, "GET", HISTORY))[1]["records"]
    assert len(records) == 1
    assert json.loads(records[0]["details"]) == {
        "approvalId": row["id"], "resolvedBy": winner["resolvedBy"],
    }
    assert (await audit_actions(client)).count("approval.resolved") == 1
    if winner["status"] == "allow_always":
        assert len((await call(client, "GET", GRANTS))[1]["grants"]) == 1


async def test_resolved_by_comes_from_the_body_else_the_actor_header(client):
    first, second = await opened(client), await opened(client, toolName="ls")
    status, body = await call(client, "POST", f"{TOOLS}/{first}/resolve", {"decision": "deny"},
                              headers={approvals.ACTOR_HEADER: "alice"})
    assert status == 200 and body["approval"]["resolvedBy"] == "alice"
    status, body = await call(client, "POST", f"{TOOLS}/{second}/resolve",
                              {"decision": "deny", "resolvedBy": "bob"},
                              headers={approvals.ACTOR_HEADER: "alice"})
    assert status == 200 and body["approval"]["resolvedBy"] == "bob"


async def test_with_api_keys_resolved_by_defaults_to_the_leaders_key_name(make_client, cfg,
                                                                          db_path):
    keyed = cfg.model_copy(update={"auth": config.AuthConfig(mode="keys")})
    admin, keys = sqlite.KeyAdmin(str(db_path)), {}
    for role in ("executor", "leader"):
        keys[role] = principals.new_key()
        admin.create(
            principals.Principal(key_id=principals.new_key_id(), name=f"{role}-key", role=role),
            principals.hash_key(keys[role]),
        )
    admin.close()

    def as_(role):
        return {"Authorization": f"Bearer {keys[role]}"}

    async with make_client(keyed) as client:
        status, body = await call(
            client,
            "POST",
            TOOLS,
            {"toolName": "rm", "agentId": "a1", "waitMs": 0},
            headers=as_("executor"),
        )
        assert status == 200 and body["resolution"] == "timeout"
        path = f"{TOOLS}/{body['approvalId']}/resolve"
        status, _ = await call(
            client, "POST", path, {"decision": "allow_once"}, headers=as_("executor")
        )
        assert status == 403  # executors ask, leaders decide
        status, body = await call(client, "POST", path, {"decision": "deny"}, headers=as_("leader"))
        assert status == 200 and body["approval"]["resolvedBy"] == "leader-key"


# --- fail closed ---------------------------------------------------------------------------


async def test_a_cancelled_parked_caller_is_forgotten_and_the_row_stays_pending(client):
    # Shutdown past its timeout cancels the handler's task, and with it the awaited answer.
    service = client.app[state.APPROVALS]
    body = commands.ToolApprovalRequest.model_validate({"toolName": "rm", "agentId": "a1"})
    answer = await service.ask_tool(body, principals.ANONYMOUS, lambda handshake: handshake)
    assert not answer.done() and service.parked == 1 and service.watched == 1
    answer.cancel()
    assert service.parked == 0 and service.watched == 0
    [row] = await pending(client, 1)
    assert row["status"] == "pending"


async def test_wait_ms_zero_answers_at_once_and_a_short_wait_on_time(client):
    loop = asyncio.get_running_loop()
    for wait_ms in (0, 30):
        started = loop.time()
        status, body = await ask(client, waitMs=wait_ms)
        took = loop.time() - started
        assert (status, body["resolution"]) == (200, "timeout")
        assert wait_ms / 1000 <= took < wait_ms / 1000 + 0.2, (wait_ms, took)
    assert client.app[state.APPROVALS].parked == 0


async def test_an_internal_error_in_the_handshake_answers_deny(client, db_path, caplog):
    conn = sqlite3.connect(db_path)
    conn.execute(
        "CREATE TRIGGER broken BEFORE INSERT ON approvals"
        " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    conn.close()
    with caplog.at_level(logging.ERROR, logger="clawguard.approvals"):
        for path in (TOOLS, DELEGATE):
            status, body = await ask(client, path)
            assert (status, body) == (200, {"resolution": "deny"})
    assert "approval handshake failed" in caplog.text
    assert client.app[state.APPROVALS].watched == 0


async def test_a_failed_decision_write_allows_nothing(client, db_path):
    caller = ask(client, waitMs=300)
    [row] = await pending(client, 1)
    conn = sqlite3.connect(db_path)
    conn.execute(
        "CREATE TRIGGER broken BEFORE UPDATE ON approvals"
        " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    conn.close()
    status, body = await resolve(client, row["id"], "allow_always")
    assert status == 503 and body["error"] == "store_unavailable"
    assert (await caller)[1]["resolution"] == "timeout"
    assert (await call(client, "GET", GRANTS))[1]["grants"] == []


# --- history ---------------------------------------------------------------------------------


async def test_history_is_newest_first_with_details_as_json_text(client):
    for action in ("allow-once", "deny", "allow-always"):
        status, body = await call(
            client,
            "POST",
            HISTORY,
            {
                "agentId": "a1",
                "action": action,
                "toolName": "web_search",
                "details": {"why": action, "password": "pw", "n": 1.5},
            },
        )
        assert status == 200 and body["ok"] is True
        assert body["record"]["action"] == action and body["record"]["agentId"] == "a1"
    await call(client, "POST", HISTORY, {"agentId": "a2", "action": "deny", "toolName": "x"})
    status, body = await call(client, "GET", HISTORY, params={"agentId": "a1"})
    records = body["records"]
    assert [r["action"] for r in records] == ["allow-always", "deny", "allow-once"]
    assert [r["id"] for r in records] == sorted((r["id"] for r in records), reverse=True)
    assert json.loads(records[0]["details"]) == {"why": "allow-always", "password": "***", "n": 1.5}
    assert set(records[0]) == {"id", "agentId", "action", "toolName", "details", "createdAt"}
    everyone = (await call(client, "GET", HISTORY))[1]["records"]
    assert everyone[0]["agentId"] == "a2" and everyone[0]["details"] is None
    assert len(everyone) == 4
    assert (await audit_actions(client)).count("approval.history_recorded") == 4


async def test_history_limits_clamp_and_default(client):
    await asyncio.gather(
        *(
            call(
                client, "POST", HISTORY, {"agentId": "bulk", "action": "deny", "toolName": f"t{n}"}
            )
            for n in range(205)
        )
    )
    cases = {
        "0": 1,
        "-4": 1,
        "1": 1,
        "7": 7,
        "200": 200,
        "201": 200,
        "99999999999": 200,
        "abc": 50,
        "": 50,
        "2.5": 50,
        "1e2": 50,
        "²": 50,
        None: 50,
    }
    for limit, expected in cases.items():
        params = {} if limit is None else {"limit": limit}
        status, body = await call(client, "GET", HISTORY, params=params)
        assert status == 200 and len(body["records"]) == expected, limit
    newest = (await call(client, "GET", HISTORY, params={"limit": "1"}))[1]["records"][0]
    assert newest["id"] == max(r["id"] for r in body["records"])


# --- bad input ---------------------------------------------------------------------------------

LONG = "x" * 201
BAD_INPUT = [
    # (method, path, body, headers, status); {pending}, {decided}, {revoked} are filled in
    ("POST", DELEGATE, {}, None, 400),
    ("POST", DELEGATE, {"kind": "code", "task": "x"}, None, 400),
    ("POST", DELEGATE, {"leaderAgentId": ""}, None, 400),
    ("POST", DELEGATE, {"leaderAgentId": LONG}, None, 400),
    ("POST", DELEGATE, {"leaderAgentId": 5}, None, 400),
    ("POST", DELEGATE, {"leaderAgentId": "l", "kind": ""}, None, 400),
    ("POST", DELEGATE, {"leaderAgentId": "l", "kind": "two words"}, None, 400),
    ("POST", DELEGATE, {"leaderAgentId": "l", "task": 7}, None, 400),
    ("POST", DELEGATE, {"leaderAgentId": "l", "waitMs": -1}, None, 400),
    ("POST", DELEGATE, {"leaderAgentId": "l", "waitMs": "10"}, None, 400),
    ("POST", DELEGATE, {"leaderAgentId": "l", "waitMs": 1.5}, None, 400),
    ("POST", DELEGATE, {"leaderAgentId": "l", "leader": "typo"}, None, 400),
    ("POST", DELEGATE, "not json", None, 400),
    ("POST", DELEGATE, "[]", None, 400),
    ("POST", DELEGATE, "", None, 400),
    ("POST", TOOLS, {}, None, 400),
    ("POST", TOOLS, {"toolName": "rm"}, None, 400),
    ("POST", TOOLS, {"agentId": "a1"}, None, 400),
    ("POST", TOOLS, {"toolName": "rm", "agentId": "a1", "args": ["x"]}, None, 400),
    ("POST", TOOLS, {"toolName": "rm", "agentId": "a1", "args": "x"}, None, 400),
    ("POST", TOOLS, {"toolName": "rm", "agentId": "a1", "reason": 5}, None, 400),
    ("POST", TOOLS, {"toolName": "rm", "agentId": "a1", "waitMs": True}, None, 400),
    ("POST", TOOLS, {"toolName": "rm", "agentId": "a1", "taskId": ""}, None, 400),
    ("POST", TOOLS, {"toolName": "rm", "agentId": "a1", "extra": 1}, None, 400),
    ("POST", TOOLS, '{"toolName": "rm", "agentId": "a1", "waitMs": NaN}', None, 400),
    ("POST", TOOLS, "{", None, 400),
    (
        "POST",
        TOOLS,
        '{"toolName": "rm", "agentId": "a1", "args": {"x": ' + "[" * 40 + "]" * 40 + "}}",
        None,
        400,
    ),
    (
        "POST",
        TOOLS,
        '{"toolName": "rm", "agentId": "a1", "args": {"x": ' + "[" * 50_000 + "]" * 50_000 + "}}",
        None,
        400,
    ),
    ("POST", TOOLS, '{"toolName": "rm", "agentId": "a1", "args": {"x": "\\udc80"}}', None, 400),
    ("PUT", TOOLS, {}, None, 405),
    ("GET", f"{TOOLS}/apr_0000000000000000", None, None, 404),
    ("GET", f"{TOOLS}/apr_0000000000000000?waitMs=10", None, None, 404),
    ("GET", f"{TOOLS}/{LONG}", None, None, 400),
    ("GET", f"{TOOLS}/{{pending}}?waitMs=abc", None, None, 400),
    ("GET", f"{TOOLS}/{{pending}}?waitMs=-5", None, None, 400),
    ("GET", f"{TOOLS}/{{pending}}?waitMs=1e3", None, None, 400),
    ("GET", f"{TOOLS}/{{pending}}?waitMs=%C2%B2", None, None, 400),
    ("GET", f"{TOOLS}/{{pending}}?waitMs=", None, None, 400),
    ("POST", f"{TOOLS}/{{pending}}/resolve", {}, None, 400),
    ("POST", f"{TOOLS}/{{pending}}/resolve", {"decision": "allow"}, None, 400),
    ("POST", f"{TOOLS}/{{pending}}/resolve", {"decision": "allow-once"}, None, 400),
    ("POST", f"{TOOLS}/{{pending}}/resolve", {"decision": None}, None, 400),
    ("POST", f"{TOOLS}/{{pending}}/resolve", {"decision": "deny", "resolvedBy": ""}, None, 400),
    (
        "POST",
        f"{TOOLS}/{{pending}}/resolve",
        {"decision": "deny"},
        {approvals.ACTOR_HEADER: LONG},
        400,
    ),
    ("POST", f"{TOOLS}/{{pending}}/resolve", "nope", None, 400),
    ("POST", f"{TOOLS}/apr_0000000000000000/resolve", {"decision": "deny"}, None, 404),
    ("POST", f"{TOOLS}/{{decided}}/resolve", {"decision": "deny"}, None, 409),
    ("POST", f"{TOOLS}/{{decided}}/resolve", {"decision": "allow_always"}, None, 409),
    ("DELETE", f"{GRANTS}/grt_0000000000000000", None, None, 404),
    ("DELETE", f"{GRANTS}/{{revoked}}", None, None, 409),
    ("DELETE", f"{GRANTS}/{LONG}", None, None, 400),
    ("POST", HISTORY, {}, None, 400),
    ("POST", HISTORY, {"agentId": "a1", "toolName": "t"}, None, 400),
    ("POST", HISTORY, {"agentId": "a1", "action": "deny"}, None, 400),
    ("POST", HISTORY, {"action": "deny", "toolName": "t"}, None, 400),
    ("POST", HISTORY, {"agentId": "a1", "action": "allow_once", "toolName": "t"}, None, 400),
    ("POST", HISTORY, {"agentId": "a1", "action": "approve", "toolName": "t"}, None, 400),
    ("POST", HISTORY, {"agentId": "a1", "action": "deny", "toolName": ""}, None, 400),
    (
        "POST",
        HISTORY,
        {"agentId": "a1", "action": "deny", "toolName": "t", "details": []},
        None,
        400,
    ),
    (
        "POST",
        HISTORY,
        {"agentId": "a1", "action": "deny", "toolName": "t", "details": "{}"},
        None,
        400,
    ),
    ("POST", HISTORY, "[]", None, 400),
    (
        "POST",
        HISTORY,
        '{"agentId": "a1", "action": "deny", "toolName": "t", "details": {"\\ud800": 1}}',
        None,
        400,
    ),
]


async def test_bad_input_gets_one_json_error_shape_and_changes_nothing(client, db_path):
    ids = {"pending": await opened(client), "decided": await opened(client, toolName="ls")}
    await resolve(client, ids["decided"], "allow_always")
    [grant] = (await call(client, "GET", GRANTS))[1]["grants"]
    await call(client, "DELETE", f"{GRANTS}/{grant['id']}")
    ids["revoked"] = grant["id"]
    stored = dump(db_path)
    for method, path, body, headers, expected in BAD_INPUT:
        url = path.format(**ids)
        status, answer = await call(client, method, url, body, headers=headers)
        case = f"{method} {url} {body!r}"
        assert status == expected, (case, answer)
        assert set(answer) == {"error", "message", "details"}, case
        assert isinstance(answer["error"], str) and answer["error"], case
        assert dump(db_path) == stored, case
    assert client.app[state.APPROVALS].watched == 0
