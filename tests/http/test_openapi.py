"""The OpenAPI document: valid 3.1, every route, built from the models the handlers use,
and real answers of every route match what it says."""

from __future__ import annotations

import inspect
import json
import re
import typing
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
import staged
from daemon import Daemon, call
from openapi_spec_validator import validate as validate_spec

from clawguard.core import records
from clawguard.http import access, middleware, openapi, routes, wire
from clawguard.runtime import config

ROUTES = {(route.method, route.path): route for route in routes.ROUTES}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(routes.openapi_json())
    return document


def test_the_document_is_valid_openapi_3_1(doc):
    validate_spec(doc)
    assert doc["openapi"].startswith("3.1")


def test_it_covers_exactly_the_route_table(doc):
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == set(ROUTES)
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("key", sorted(ROUTES), ids=lambda k: f"{k[0]} {k[1]}")
def test_each_handler_is_handed_exactly_the_declared_models(key):
    """The handler's parameters are the Endpoint's models, so the document is what it parses."""
    route = ROUTES[key]
    hints = typing.get_type_hints(route.handler, vars(inspect.getmodule(route.handler)))
    del hints["return"], hints["request"]
    declared = {name: getattr(route.endpoint, name) for name in ("path", "query", "body")}
    if route.endpoint.many:  # one object or a list: handed as a list
        item = declared["body"]
        declared["body"] = list[item]  # type: ignore[valid-type]
    assert hints == {name: model for name, model in declared.items() if model is not None}
    # ... and reads no other input of its own.
    source = inspect.getsource(route.handler)
    for reader in ("parse_body(", "validate(", ".query", "match_info", ".read(", ".json("):
        assert reader not in source, f"{route.handler.__name__} reads {reader} itself"


@pytest.mark.parametrize("key", sorted(ROUTES), ids=lambda k: f"{k[0]} {k[1]}")
def test_request_schemas_are_the_parsed_models(doc, key):
    route = ROUTES[key]
    ep, op = route.endpoint, doc["paths"][key[1]][key[0].lower()]
    schemas = doc["components"]["schemas"]
    if ep.body is None:
        assert "requestBody" not in op
    else:
        body = op["requestBody"]["content"]["application/json"]["schema"]
        if ep.many:  # one object, or a list of them
            one, many = body["oneOf"]
            assert many["items"] == one
            body = one
        ref = body["$ref"]
        own = ep.body.model_json_schema(by_alias=True, ref_template=openapi.REF)
        own.pop("$defs", None)
        assert schemas[ref.rsplit("/", 1)[1]] == own
        assert op["requestBody"]["required"] is not ep.optional_body
    params = {(p["in"], p["name"]) for p in op.get("parameters", [])}
    placeholders = set(re.findall(r"\{(\w+)\}", key[1]))
    expected = {("path", name) for name in placeholders}
    if ep.path is not None:
        assert set(ep.path.model_json_schema(by_alias=True)["properties"]) == placeholders
    if ep.query is not None:
        expected |= {("query", name)
                     for name in ep.query.model_json_schema(by_alias=True)["properties"]}
    assert params == expected


@pytest.mark.parametrize("key", sorted(ROUTES), ids=lambda k: f"{k[0]} {k[1]}")
def test_security_is_the_permission_table(doc, key):
    op = doc["paths"][key[1]][key[0].lower()]
    public = access.is_public(*key)
    assert (op.get("security") == []) is public
    assert ("401" in op["responses"]) is not public
    if ROUTES[key].endpoint.body is not None:
        assert {"400", "413"} <= set(op["responses"])


def test_the_error_schema_is_the_error_body(doc):
    error = doc["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"error", "message", "details"}
    assert set(openapi.ERRORS) >= set(middleware.STATUS.values())


# --- real answers against the document -------------------------------------------------


class Checker:
    """Validates every answer against the documented response of its route and status."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str]] = set()

    async def __call__(self, client: Any, method: str, template: str, path: str,
                       expected: int, body: Any = None, headers: Any = None) -> Any:
        async with client.request(method, path, json=body, headers=headers) as resp:
            payload = await resp.read()
            assert resp.status == expected, (method, path, resp.status, payload[:300])
            documented = self.doc["paths"][template][method.lower()]["responses"]
            answer = documented[str(resp.status)]
            answer = self._deref(answer)
            self.seen.add((method, template))
            if "content" not in answer:
                assert payload == b""
                return None
            [(media_type, content)] = answer["content"].items()
            assert resp.content_type == media_type
            if media_type != "application/json":
                return payload.decode()
            data = json.loads(payload)
            schema = {**content["schema"], "components": self.doc["components"]}
            jsonschema.Draft202012Validator(schema).validate(data)
            return data

    def _deref(self, answer: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in answer:
            found: dict[str, Any] = self.doc["components"]["responses"][
                answer["$ref"].rsplit("/", 1)[1]]
            return found
        return answer


BUDGETS = "/api/governance/budgets"
ONE_BUDGET = "/api/governance/budgets/{scope}/{scopeId}"
TOOLS = "/api/tools/approvals"
ONE_TOOL = "/api/tools/approvals/{id}"


async def test_real_answers_of_every_route_match_the_document(client, doc):
    check = Checker(doc)
    await check(client, "GET", "/healthz", "/healthz", 200)
    await check(client, "GET", "/readyz", "/readyz", 200)
    served = await check(client, "GET", "/openapi.json", "/openapi.json", 200)
    assert served == doc
    await check(client, "POST", BUDGETS, BUDGETS, 200,
                {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100, "mode": "cap"})
    await check(client, "GET", BUDGETS, f"{BUDGETS}?scope=agent", 200)
    spent = await check(client, "POST", "/api/governance/spend", "/api/governance/spend", 200,
                        {"agentId": "a1", "costUsdCents": 150.5, "idempotencyKey": "k1"})
    assert spent["stop"] is True
    await check(client, "POST", "/api/governance/spend", "/api/governance/spend", 409,
                {"agentId": "a1", "costUsdCents": 2, "idempotencyKey": "k1"})
    await check(client, "GET", "/api/governance/preflight",
                "/api/governance/preflight?agentId=a1&teamId=t", 200)
    await check(client, "GET", "/api/governance/preflight", "/api/governance/preflight", 400)
    await check(client, "POST", f"{ONE_BUDGET}/resume", f"{BUDGETS}/agent/a1/resume", 200)
    await check(client, "POST", f"{ONE_BUDGET}/resume", f"{BUDGETS}/team/a1/resume", 404, {})
    await check(client, "POST", f"{ONE_BUDGET}/resume", f"{BUDGETS}/org/a1/resume", 400, {})
    await check(client, "GET", "/api/governance/audit",
                "/api/governance/audit?limit=x&eventType=budget", 200)
    await check(client, "GET", "/api/governance/audit", "/api/governance/audit?since=x", 400)
    await check(client, "GET", "/api/governance/audit/head", "/api/governance/audit/head", 200)
    assert "clawguard_" in await check(client, "GET", "/metrics", "/metrics", 200)

    asked = await check(client, "POST", TOOLS, TOOLS, 200,
                        {"toolName": "rm", "agentId": "a1", "args": {"x": [1]}, "waitMs": 0})
    assert asked["resolution"] == "timeout"
    approval_id = asked["approvalId"]
    listed = await check(client, "GET", TOOLS, TOOLS, 200)
    assert [row["id"] for row in listed["approvals"]] == [approval_id]
    await check(client, "GET", ONE_TOOL, f"{TOOLS}/{approval_id}?waitMs=0", 200)
    await check(client, "GET", ONE_TOOL, f"{TOOLS}/apr_nope", 404)
    await check(client, "POST", f"{ONE_TOOL}/resolve", f"{TOOLS}/{approval_id}/resolve", 200,
                {"decision": "allow_always", "resolvedBy": "alice"})
    await check(client, "POST", f"{ONE_TOOL}/resolve", f"{TOOLS}/{approval_id}/resolve", 409,
                {"decision": "deny"})
    await check(client, "POST", f"{ONE_TOOL}/waive", f"{TOOLS}/{approval_id}/waive", 409,
                {"reason": "no stages to waive"})
    staged_id = await staged.open_staged(client.app, [{"gates": [{"count": 2}]}])
    await check(client, "POST", f"{ONE_TOOL}/resolve", f"{TOOLS}/{staged_id}/resolve", 200,
                {"decision": "conditional", "conditions": "dry run first", "resolvedBy": "bo"})
    listed = await check(client, "GET", TOOLS, f"{TOOLS}?reviewer=me", 200)
    assert [row["id"] for row in listed["approvals"]] == [staged_id]  # a gate still open
    waived = await check(client, "POST", f"{ONE_TOOL}/waive", f"{TOOLS}/{staged_id}/waive", 200,
                         {"reason": "ticket SEC-1234"})
    assert waived["approval"]["status"] == "approved"
    sticky = await check(client, "POST", TOOLS, TOOLS, 200, {"toolName": "rm", "agentId": "a1"})
    assert sticky == {"resolution": "allow_always"}  # Clawboo's bare answer, no approvalId
    await check(client, "POST", "/api/governance/delegation-approval",
                "/api/governance/delegation-approval", 200,
                {"leaderAgentId": "lead", "task": "ship it", "waitMs": 0})
    grants = await check(client, "GET", f"{TOOLS}/grants", f"{TOOLS}/grants?agentId=a1", 200)
    [grant] = grants["grants"]
    await check(client, "DELETE", f"{TOOLS}/grants/{{id}}", f"{TOOLS}/grants/{grant['id']}", 200)
    await check(client, "DELETE", f"{TOOLS}/grants/{{id}}", f"{TOOLS}/grants/grt_nope", 404)
    await check(client, "POST", "/api/approvals", "/api/approvals", 200,
                {"agentId": "a1", "action": "deny", "toolName": "rm", "details": {"why": "no"}})
    await check(client, "GET", "/api/approvals", "/api/approvals?limit=-3", 200)
    await check(client, "POST", "/api/approvals", "/api/approvals", 400, {"agentId": "a1"})

    priced = await check(client, "POST", "/api/governance/spend", "/api/governance/spend", 200,
                         {"agentId": "a1", "model": "gpt-4o", "inputTokens": 10})
    assert priced["priced"] is True
    summary = "/api/governance/spend/summary"
    groups = await check(client, "GET", summary, f"{summary}?groupBy=model&since=0", 200)
    assert groups["groups"][0]["key"] is None
    await check(client, "GET", summary, f"{summary}?groupBy=everything", 400)
    made = await check(client, "POST", "/api/keys", "/api/keys", 201,
                       {"role": "leader", "leads": ["a1"], "expiresInMs": 60_000})
    await check(client, "POST", "/api/keys", "/api/keys", 400, {"role": "boss"})
    await check(client, "GET", "/api/keys", "/api/keys", 200)
    me = await check(client, "GET", "/api/me", "/api/me", 200)
    assert me["role"] == "admin"  # auth.mode none: the anonymous admin
    one_key = "/api/keys/{id}"
    await check(client, "DELETE", one_key, f"/api/keys/{made['apiKey']['id']}", 200)
    await check(client, "DELETE", one_key, f"/api/keys/{made['apiKey']['id']}", 409)
    await check(client, "DELETE", one_key, "/api/keys/key_nope", 404)
    runs, one_run = "/api/governance/runs", "/api/governance/runs/{id}"
    started = await check(client, "POST", runs, runs, 201, {"agentId": "a1"})
    run_id = started["run"]["id"]
    await check(client, "POST", runs, runs, 404, {"agentId": "a1", "parentRunId": "run_x"})
    await check(client, "GET", runs, f"{runs}?status=running", 200)
    await check(client, "GET", one_run, f"{runs}/{run_id}", 200)
    await check(client, "POST", f"{one_run}/events", f"{runs}/{run_id}/events", 200,
                [{"kind": "tool-call"}, {"kind": "cost", "tokens": 5}])
    tripped = await check(client, "POST", f"{one_run}/events", f"{runs}/{run_id}/events", 200,
                          [{"kind": "policy-denied", "signature": "rm"}] * 2)
    assert tripped["tripped"]["reason"] == "repeat-policy-denied"
    await check(client, "POST", f"{one_run}/end", f"{runs}/{run_id}/end", 409)
    quota = "/api/tenants/{tenantId}/quota"
    await check(client, "GET", quota, "/api/tenants/org/quota", 200)
    await check(client, "PATCH", quota, "/api/tenants/org/quota", 200, {"runs_per_hour": 1})
    await check(client, "PATCH", quota, "/api/tenants/org/quota", 422, {"runs_per_hour": 0})
    await check(client, "POST", runs, runs, 201, {"agentId": "a1", "tenantId": "org"})
    await check(client, "POST", runs, runs, 429, {"agentId": "a1", "tenantId": "org"})

    holds, one_hold = "/api/governance/holds", "/api/governance/holds/{id}"
    hold = await check(client, "POST", holds, holds, 201,
                       {"agentId": "h1", "amountUsdCents": 5, "idempotencyKey": "h"})
    await check(client, "POST", holds, holds, 409,
                {"agentId": "a1", "amountUsdCents": 5, "idempotencyKey": "h2"})
    hold_id = hold["hold"]["id"]
    await check(client, "GET", one_hold, f"{holds}/{hold_id}", 200)
    await check(client, "GET", one_hold, f"{holds}/hld_nope", 404)
    await check(client, "POST", f"{one_hold}/commit", f"{holds}/{hold_id}/commit", 200,
                {"costUsdCents": 4})
    await check(client, "POST", f"{one_hold}/commit", f"{holds}/{hold_id}/commit", 409,
                {"costUsdCents": 3})
    await check(client, "POST", f"{one_hold}/release", f"{holds}/{hold_id}/release", 409)
    other = await check(client, "POST", holds, holds, 201,
                        {"agentId": "h1", "amountUsdCents": 5, "idempotencyKey": "h3"})
    await check(client, "POST", f"{one_hold}/release",
                f"{holds}/{other['hold']['id']}/release", 200)

    await check(client, "DELETE", ONE_BUDGET, f"{BUDGETS}/agent/a1", 204)
    await check(client, "DELETE", ONE_BUDGET, f"{BUDGETS}/agent/a1", 404)
    await the_gate_routes(client, check)
    await the_authorize_routes(client, check)
    async with client.get("/api/events") as stream:  # never ends: its head is the answer
        [documented] = doc["paths"]["/api/events"]["get"]["responses"]["200"]["content"]
        assert stream.status == 200 and stream.content_type == documented
        check.seen.add(("GET", "/api/events"))
    await check(client, "GET", "/api/events", "/api/events", 400, None, {"Last-Event-ID": "x"})
    assert check.seen == set(ROUTES)


async def the_authorize_routes(client: Any, check: Checker) -> None:
    settings, authorize = "/api/governance/settings", "/api/governance/authorize"
    await check(client, "GET", settings, settings, 200)
    await check(client, "PATCH", settings, settings, 200,
                {"category_flags": {"pii": True}, "approval_threshold": 2})
    await check(client, "PATCH", settings, settings, 422, {"approval_threshold": 0})
    await check(client, "PATCH", settings, settings, 400, {"nope": True})
    await check(client, "POST", "/api/tools", "/api/tools", 201,
                {"name": "crm.export", "categories": ["pii"]})
    await check(client, "POST", "/api/tool-policies", "/api/tool-policies", 201,
                {"tool_name": "crm.export", "allowed": True,
                 "restrictions": {"max_response_size_kb": 64}})
    await check(client, "POST", "/api/guardrails", "/api/guardrails", 201,
                {"name": "exports", "rules": [{"tool": "crm.export", "decision": "ALLOW"}]})
    pending = await check(client, "POST", authorize, authorize, 200,
                          {"agentId": "a9", "tool": "crm.export", "value": 2.5, "waitMs": 0,
                           "idempotencyKey": "x1"})
    assert pending["decision"] == "PENDING"
    blocked = await check(client, "POST", authorize, authorize, 200,
                          {"agentId": "a9", "tool": "crm.other", "waitMs": 0})
    assert blocked["decision"] == "BLOCK"
    await check(client, "POST", authorize, authorize, 409,
                {"agentId": "a9", "tool": "crm.export", "waitMs": 0, "idempotencyKey": "x1"})
    await check(client, "POST", authorize, authorize, 404,
                {"agentId": "a9", "tool": "crm.export", "runId": "run_nope"})
    await check(client, "POST", authorize, authorize, 400, {"tool": "crm.export"})
    receipt = "/api/governance/receipts/{id}"
    await check(client, "GET", receipt, f"/api/governance/receipts/{pending['receiptId']}", 200)
    await check(client, "GET", receipt, "/api/governance/receipts/rcp_nope", 404)
    enforcement = "/api/governance/enforcement/check"
    await check(client, "GET", enforcement,
                f"{enforcement}?resourceType=agent&resourceId=a9", 200)
    await check(client, "GET", enforcement, f"{enforcement}?resourceType=org&resourceId=a", 400)
    report, stats = "/api/governance/report", "/api/governance/approval-stats"
    await check(client, "GET", report, f"{report}?period=last_7_days", 200)
    await check(client, "GET", report, f"{report}?period=forever", 400)
    await check(client, "GET", stats, stats, 200)


async def the_gate_routes(client: Any, check: Checker) -> None:
    grd, one = "/api/guardrails", "/api/guardrails/{id}"
    rule = {"tool": "order.refund", "decision": "ALLOW", "max_value": 250.5}
    made = await check(client, "POST", grd, grd, 201, {"name": "refunds", "rules": [rule]})
    path = f"{grd}/{made['id']}"
    await check(client, "POST", grd, grd, 409, {"name": "refunds", "rules": [rule]})
    await check(client, "GET", grd, f"{grd}?limit=1&tool=order.refund", 200)
    await check(client, "GET", one, path, 200)
    await check(client, "PATCH", one, path, 200, {"rules": [rule, {"decision": "ALERT"}]})
    await check(client, "PATCH", one, path, 400, {"name": "x"})
    await check(client, "POST", f"{one}/versions/{{n}}/rollback", f"{path}/versions/1/rollback",
                200, {"message": "back"})
    await check(client, "GET", f"{one}/versions", f"{path}/versions", 200)
    await check(client, "POST", f"{grd}/evaluate", f"{grd}/evaluate", 200,
                {"action": {"tool": "order.refund", "value": 300}})
    await check(client, "POST", f"{grd}/evaluate", f"{grd}/evaluate", 400, {})
    await check(client, "DELETE", one, path, 200)
    await check(client, "GET", one, path, 404)
    tools = "/api/tools"
    await check(client, "POST", tools, tools, 201, {"name": "http.get", "categories": ["other"]})
    await check(client, "GET", tools, f"{tools}?include_archived=true", 200)
    await check(client, "POST", f"{tools}/{{name}}/deprecate", f"{tools}/http.get/deprecate",
                200, {"reason": "old"})
    policy = await check(client, "POST", "/api/tool-policies", "/api/tool-policies", 201,
                         {"tool_name": "http.get", "allowed": True,
                          "restrictions": {"max_response_size_kb": 5}})
    await check(client, "POST", "/api/tool-policies", "/api/tool-policies", 422,
                {"tool_name": "nope", "allowed": True})
    await check(client, "GET", "/api/tool-policies", "/api/tool-policies", 200)
    await check(client, "DELETE", "/api/tool-policies/{id}", f"/api/tool-policies/{policy['id']}",
                204)
    rpo = "/api/role-policy-overrides"
    override = await check(client, "POST", rpo, rpo, 201,
                           {"role": "dev", "tool_name": "http.get", "allowed": False})
    await check(client, "GET", rpo, rpo, 200)
    await check(client, "DELETE", f"{rpo}/{{id}}", f"{rpo}/{override['id']}", 204)
    await check(client, "POST", f"{tools}/{{name}}/archive", f"{tools}/http.get/archive", 200)
    await check(client, "POST", f"{tools}/{{name}}/archive", f"{tools}/http.get/archive", 409)


async def test_the_document_needs_no_key_and_keyed_routes_say_so(make_client, cfg, doc):
    keyed = cfg.model_copy(update={"auth": config.AuthConfig(mode="keys")})
    async with make_client(keyed) as client:
        check = Checker(doc)
        assert await check(client, "GET", "/openapi.json", "/openapi.json", 200) == doc
        await check(client, "GET", BUDGETS, BUDGETS, 401)


def test_envelopes_keep_the_json_the_routes_always_answered():
    budget = records.Budget(id="b", scope="agent", scope_id="a", tenant_id=None,
                            limit_usd_cents=1,
                           spent_usd_cents=0, spent_usd_micros=0, held_usd_cents=0,
                           status="active", mode="warn", created_at=1, updated_at=1)
    assert json.loads(wire.BudgetList(budgets=[budget]).to_json_bytes()) == {
        "budgets": [budget.to_json()]}
    assert json.loads(wire.GrantList(grants=[]).to_json_bytes()) == {"ok": True, "grants": []}


def test_the_longest_request_line_the_document_admits_gets_a_json_answer(tmp_path):
    """Four 200-character ids of 4-byte characters: ~9.7 KB of request line (schemathesis
    found aiohttp's 8190-byte default answering it in text/plain, outside the error shape)."""
    wide = "\U0001f600" * 200
    query = "&".join(f"{name}={quote(wide)}" for name in ("agentId", "missionId", "teamId",
                                                          "tenantId"))
    assert len(query) > 9000
    with Daemon(tmp_path / "wide.db") as daemon:
        status, body = call(daemon.url, "GET", f"/api/governance/preflight?{query}")
        assert status == 200 and body["allowed"] is True
        status, body = call(daemon.url, "GET", f"/api/governance/audit?agentId={quote(wide)}x")
        assert status == 400 and set(body) == {"error", "message", "details"}
