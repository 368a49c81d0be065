"""The guardrail, tool registry, tool policy and role override routes, end to end over HTTP.

Seed 002's worked example is run as the seed tells it, and with the min_value
split it says v0.9 could not express.
"""

from __future__ import annotations

from typing import Any

from conftest import dump

GUARDRAILS = "/api/guardrails"
EVALUATE = "/api/guardrails/evaluate"
REFUND = {"tool": "order.refund", "decision": "ALLOW", "max_value": 250}
PAGE_A_HUMAN = {"tool": "order.refund", "decision": "ALERT"}


async def call(client: Any, method: str, path: str, status: int, body: Any = None,
               headers: dict[str, str] | None = None) -> Any:
    async with client.request(method, path, json=body, headers=headers) as resp:
        payload = await resp.json() if resp.status != 204 else None
        assert resp.status == status, (method, path, resp.status, payload)
        return payload


async def create(client: Any, name: str, *rules: dict[str, Any], **fields: Any) -> Any:
    body = {"name": name, "rules": list(rules), **fields}
    return await call(client, "POST", GUARDRAILS, 201, body)


def refund(value: Any) -> dict[str, Any]:
    return {"action": {"connector": "cn_7d2f4a", "tool": "order.refund", "value": value}}


async def test_the_seeds_worked_example(client: Any) -> None:
    policy = await create(client, "refund-ceiling", REFUND, PAGE_A_HUMAN,
                          description="Refunds auto-run to $250; larger refunds page a human.")
    assert policy["object"] == "guardrail_policy" and policy["id"].startswith("grd_")
    assert (policy["version"], policy["status"], policy["rules"]) == (
        1, "active", [REFUND, PAGE_A_HUMAN])
    assert policy["created_at"].endswith("Z") and "T" in policy["created_at"]
    small = await call(client, "POST", EVALUATE, 200, refund(180))
    assert small["object"] == "guardrail_evaluation" and small["decision"] == "ALERT"
    assert [(m["policy_id"], m["policy_version"], m["rule"], m["constraint_failed"])
            for m in small["matched"]] == [(policy["id"], 1, REFUND, None),
                                           (policy["id"], 1, PAGE_A_HUMAN, None)]
    large = await call(client, "POST", EVALUATE, 200, refund(300))
    assert large["decision"] == "BLOCK"
    assert large["matched"][0]["constraint_failed"] == "max_value"
    assert "300" in large["explanation"] and "250" in large["explanation"]


async def test_the_min_value_split(client: Any) -> None:
    await create(client, "refund-split",
                 {"tool": "order.refund", "decision": "ALLOW", "max_value": 1000},
                 {"tool": "order.refund", "decision": "ALERT", "min_value": 250})
    decisions = [(await call(client, "POST", EVALUATE, 200, refund(v)))["decision"]
                 for v in (100, 500, 1500)]
    assert decisions == ["ALLOW", "ALERT", "BLOCK"]


async def test_versions_rollback_delete(client: Any) -> None:
    policy = await create(client, "refunds", REFUND, message="first cut")
    one = f"{GUARDRAILS}/{policy['id']}"
    raised = {**REFUND, "max_value": 400.5}
    patched = await call(client, "PATCH", one, 200, {"rules": [raised], "message": "raise"})
    assert (patched["version"], patched["rules"]) == (2, [raised])
    assert (await call(client, "PATCH", one, 200, {"status": "disabled"}))["version"] == 2
    back = await call(client, "POST", f"{one}/versions/1/rollback", 200, {"message": "undo"})
    assert (back["new_version"], back["rolled_back_from"]) == (3, 1)
    assert back["deployed_at"].endswith("Z")
    assert (await call(client, "GET", one, 200))["rules"] == [REFUND]
    assert (await call(client, "GET", f"{one}?version=2", 200))["rules"] == [raised]
    versions = (await call(client, "GET", f"{one}/versions", 200))["versions"]
    assert [(v["version"], v["message"]) for v in versions] == [
        (3, "undo"), (2, "raise"), (1, "first cut")]
    assert versions[0]["created_by"] == "anonymous"
    gone = await call(client, "DELETE", one, 200)
    assert gone == {"id": policy["id"], "object": "guardrail_policy", "deleted": True}
    assert (await call(client, "GET", one, 404))["error"] == "not_found"
    assert (await call(client, "DELETE", one, 404))["error"] == "not_found"
    assert (await call(client, "GET", f"{one}?version=2", 200))["rules"] == [raised]
    assert len((await call(client, "GET", f"{one}/versions", 200))["versions"]) == 3
    assert (await call(client, "GET", GUARDRAILS, 200))["data"] == []


async def test_deleting_a_policy_removes_its_ceiling(client: Any) -> None:
    """Deleting can widen: the ceiling goes, and what else allows the action now allows it."""
    await create(client, "anything", {"decision": "ALLOW"})
    ceiling = await create(client, "ceiling", REFUND)
    assert (await call(client, "POST", EVALUATE, 200, refund(300)))["decision"] == "BLOCK"
    await call(client, "DELETE", f"{GUARDRAILS}/{ceiling['id']}", 200)
    assert (await call(client, "POST", EVALUATE, 200, refund(300)))["decision"] == "ALLOW"


async def test_list_pages_newest_first_with_filters(client: Any, clock: Any) -> None:
    made = []
    for n in range(5):
        clock.advance(1_000)
        rules = [{"decision": "ALLOW"}] if n == 0 else [{"tool": f"t{n}", "decision": "ALLOW"}]
        made.append((await create(client, f"policy-{n}", *rules,
                                  status="disabled" if n == 3 else "active"))["id"])
    first = await call(client, "GET", f"{GUARDRAILS}?limit=2", 200)
    assert first["object"] == "list" and first["has_more"] is True
    assert [p["id"] for p in first["data"]] == made[:2:-1]
    rest = await call(client, "GET", f"{GUARDRAILS}?limit=2&cursor={first['next_cursor']}", 200)
    assert [p["id"] for p in rest["data"]] == made[2:0:-1] and rest["has_more"] is True
    last = await call(client, "GET", f"{GUARDRAILS}?limit=2&cursor={rest['next_cursor']}", 200)
    assert [p["id"] for p in last["data"]] == made[:1]
    assert last["has_more"] is False and last["next_cursor"] is None
    default = await call(client, "GET", GUARDRAILS, 200)
    assert len(default["data"]) == 5
    disabled = await call(client, "GET", f"{GUARDRAILS}?status=disabled", 200)
    assert [p["id"] for p in disabled["data"]] == [made[3]]
    for_t2 = await call(client, "GET", f"{GUARDRAILS}?tool=t2", 200)
    assert [p["id"] for p in for_t2["data"]] == [made[2], made[0]]  # no matcher: any tool


async def test_an_idempotency_key_answers_the_same_policy(client: Any) -> None:
    body = {"name": "once", "rules": [REFUND]}
    key = {"Idempotency-Key": "grd-create-once"}
    first = await call(client, "POST", GUARDRAILS, 201, body, key)
    again = await call(client, "POST", GUARDRAILS, 201, body, key)
    assert again == first
    other = await call(client, "POST", GUARDRAILS, 409, {**body, "rules": [PAGE_A_HUMAN]}, key)
    assert other["error"] == "state_conflict"
    assert (await call(client, "POST", GUARDRAILS, 409, body))["error"] == "state_conflict"


async def test_the_dry_run_takes_hypothetical_policies_principal_and_context(
    client: Any, db_path: Any
) -> None:
    await create(client, "stored", {"decision": "ALLOW"})
    before = dump(db_path)
    nothing = await call(client, "POST", EVALUATE, 200, {**refund(1), "policies": []})
    assert nothing["decision"] == "BLOCK" and nothing["matched"] == []
    tried = await call(client, "POST", EVALUATE, 200, {
        **refund(10),
        "policies": [{"rules": [{"tool": "order.refund", "decision": "ALERT",
                                 "roles": ["support"],
                                 "when": "$.context.region == 'eu'"}]}],
        "principal": {"agentId": "a1", "roles": ["support"], "scopes": []},
        "context": {"region": "eu"},
    })
    assert tried["decision"] == "ALERT"
    assert (tried["matched"][0]["policy_id"], tried["matched"][0]["policy_version"]) == (
        "policies[0]", 0)
    no_role = await call(client, "POST", EVALUATE, 200, {
        **refund(10), "policies": [{"rules": [{"decision": "ALLOW", "roles": ["support"]}]}]})
    assert no_role["decision"] == "BLOCK"
    assert (await call(client, "POST", EVALUATE, 200, refund(10)))["decision"] == "ALLOW"
    assert dump(db_path) == before


async def test_the_compiled_set_is_kept_until_the_stored_set_changes(client: Any) -> None:
    from clawguard.http import state

    gate = client.server.app[state.GATE]
    await create(client, "first", {"decision": "ALLOW"})
    for _ in range(3):
        await call(client, "POST", EVALUATE, 200, refund(1))
    compiled = gate.compilations
    await call(client, "POST", EVALUATE, 200, refund(1))
    assert gate.compilations == compiled
    await create(client, "second", {"tool": "order.refund", "decision": "ALERT"})
    assert (await call(client, "POST", EVALUATE, 200, refund(1)))["decision"] == "ALERT"
    assert gate.compilations == compiled + 1


async def test_tools_lifecycle_policies_and_overrides(client: Any) -> None:
    tool = await call(client, "POST", "/api/tools", 201, {
        "name": "http.request", "categories": ["external_comm"], "description": "fetch"})
    assert (tool["name"], tool["status"], tool["categories"]) == (
        "http.request", "active", ["external_comm"])
    await call(client, "POST", "/api/tools", 409, {"name": "http.request", "categories": ["pii"]})
    old = await call(client, "POST", "/api/tools/http.request/deprecate", 200,
                     {"reason": "use http.get"})
    assert (old["status"], old["deprecation_reason"]) == ("deprecated", "use http.get")
    policy = await call(client, "POST", "/api/tool-policies", 201, {
        "tool_name": "http.request", "allowed": True,
        "restrictions": {"allowed_domains": ["api.example.com"], "max_response_size_kb": 1024}})
    assert policy["restrictions"] == {"allowed_domains": ["api.example.com"],
                                      "max_response_size_kb": 1024}
    await call(client, "POST", "/api/tool-policies", 409,
               {"tool_name": "http.request", "allowed": False})
    missing = await call(client, "POST", "/api/tool-policies", 422,
                         {"tool_name": "nope", "allowed": True})
    assert "GET /api/tools" in missing["details"]["hint"]
    override = await call(client, "POST", "/api/role-policy-overrides", 201,
                          {"role": "developer", "tool_name": "http.request", "allowed": False})
    assert (await call(client, "GET", "/api/role-policy-overrides", 200))["overrides"] == [
        override]
    assert (await call(client, "GET", "/api/tool-policies", 200))["policies"] == [policy]
    assert (await call(client, "POST", "/api/tools/http.request/archive", 200))["status"] == (
        "archived")
    await call(client, "POST", "/api/tools/http.request/archive", 409)
    await call(client, "POST", "/api/tools/http.request/deprecate", 409, {"reason": "x"})
    assert (await call(client, "GET", "/api/tools", 200))["tools"] == []
    listed = await call(client, "GET", "/api/tools?include_archived=true", 200)
    assert [t["name"] for t in listed["tools"]] == ["http.request"]
    await call(client, "DELETE", f"/api/tool-policies/{policy['id']}", 204)
    await call(client, "DELETE", f"/api/tool-policies/{policy['id']}", 404)
    await call(client, "DELETE", f"/api/role-policy-overrides/{override['id']}", 204)
    await call(client, "DELETE", f"/api/role-policy-overrides/{override['id']}", 404)


async def test_a_tool_named_approvals_never_shadows_the_approval_routes(client: Any) -> None:
    refused = await call(client, "POST", "/api/tools", 400,
                         {"name": "approvals", "categories": ["other"]})
    assert "reserved" in refused["message"]
    assert (await call(client, "GET", "/api/tools/approvals", 200))["approvals"] == []
    assert (await call(client, "GET", "/api/tools/approvals/grants", 200))["grants"] == []
    await call(client, "POST", "/api/tools/approvals/archive", 404)


async def test_changes_are_audited_with_the_key_that_made_them(client: Any) -> None:
    policy = await create(client, "audited", REFUND)
    await call(client, "POST", "/api/tools", 201, {"name": "shell.exec", "categories": ["other"]})
    rows = (await call(client, "GET", "/api/governance/audit?eventType=install", 200))["audit"]
    assert [(r["action"], r["details"]["keyName"]) for r in rows] == [
        ("tool.register", "anonymous"), ("guardrail.create", "anonymous")]
    assert rows[1]["details"]["policyId"] == policy["id"]
