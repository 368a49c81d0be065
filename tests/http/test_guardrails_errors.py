"""Bad input on the guardrail and tool routes: the status and error code each must answer.

Guardrails speak seed 002's codes (`missing_parameter`, `invalid_parameter`,
`state_conflict`, `not_found`); the tool registry, tool policies and role
overrides the daemon's own. Each case is fired at a seeded daemon (a policy
with two versions, a deleted one, a registered tool with a policy and an
override, an archived tool); none may change a byte of the database.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import dump
from errortable import Case, fire, j

GUARDRAILS = "/api/guardrails"
EVALUATE = "/api/guardrails/evaluate"
LIVE = f"{GUARDRAILS}/grd_live"  # replaced by the seeded policy's id
GONE = f"{GUARDRAILS}/grd_gone"  # replaced by the deleted policy's id
RULE = {"tool": "order.refund", "decision": "ALLOW", "max_value": 250}
ACTION = {"connector": "cn_1", "tool": "order.refund", "value": 10}


def create(**changes: Any) -> bytes:
    return j({k: v for k, v in {"name": "new-policy", "rules": [RULE], **changes}.items()
              if v is not ...})


def rule(**changes: Any) -> bytes:
    return create(rules=[{k: v for k, v in {**RULE, **changes}.items() if v is not ...}])


def evaluate(**changes: Any) -> bytes:
    return j({k: v for k, v in {"action": ACTION, **changes}.items() if v is not ...})


INVALID, MISSING, CONFLICT, NOT_FOUND = (
    "invalid_parameter", "missing_parameter", "state_conflict", "not_found")

CASES: list[Case] = [
    # --- POST /api/guardrails -------------------------------------------------------------
    Case("create-malformed-json", "POST", GUARDRAILS, 400, INVALID, b'{"name": "x",'),
    Case("create-empty-body", "POST", GUARDRAILS, 400, INVALID, b""),
    Case("create-array", "POST", GUARDRAILS, 400, INVALID, j([RULE])),
    Case("create-no-name", "POST", GUARDRAILS, 400, MISSING, create(name=...)),
    Case("create-no-rules", "POST", GUARDRAILS, 400, MISSING, create(rules=...)),
    Case("create-empty-rules", "POST", GUARDRAILS, 400, MISSING, create(rules=[])),
    Case("create-name-short", "POST", GUARDRAILS, 400, INVALID, create(name="ab")),
    Case("create-name-long", "POST", GUARDRAILS, 400, INVALID, create(name="a" * 41)),
    Case("create-name-upper", "POST", GUARDRAILS, 400, INVALID, create(name="Refunds")),
    Case("create-name-underscore", "POST", GUARDRAILS, 400, INVALID, create(name="a_b_c")),
    Case("create-name-number", "POST", GUARDRAILS, 400, INVALID, create(name=123)),
    Case("create-duplicate-name", "POST", GUARDRAILS, 409, CONFLICT, create(name="seeded")),
    Case("create-deleted-name", "POST", GUARDRAILS, 409, CONFLICT, create(name="deleted")),
    Case("create-decision-block", "POST", GUARDRAILS, 400, INVALID, rule(decision="BLOCK")),
    Case("create-no-decision", "POST", GUARDRAILS, 400, INVALID, rule(decision=...)),
    Case("create-max-zero", "POST", GUARDRAILS, 400, INVALID, rule(max_value=0)),
    Case("create-max-negative", "POST", GUARDRAILS, 400, INVALID, rule(max_value=-5)),
    Case("create-max-string", "POST", GUARDRAILS, 400, INVALID, rule(max_value="250")),
    Case("create-unknown-rule-field", "POST", GUARDRAILS, 400, INVALID, rule(max_valu=1)),
    Case("create-unknown-field", "POST", GUARDRAILS, 400, INVALID, create(owner="me")),
    Case("create-status-bad", "POST", GUARDRAILS, 400, INVALID, create(status="on")),
    Case("create-expression-syntax", "POST", GUARDRAILS, 400, INVALID,
         rule(when="$.arguments.x >")),
    Case("create-idempotency-key-reused", "POST", GUARDRAILS, 409, CONFLICT, create(),
         (("Idempotency-Key", "seed-key"),)),
    Case("create-idempotency-key-long", "POST", GUARDRAILS, 400, INVALID, create(),
         (("Idempotency-Key", "k" * 201),)),
    # --- GET /api/guardrails ----------------------------------------------------------------
    Case("list-limit-zero", "GET", f"{GUARDRAILS}?limit=0", 400, INVALID),
    Case("list-limit-101", "GET", f"{GUARDRAILS}?limit=101", 400, INVALID),
    Case("list-limit-text", "GET", f"{GUARDRAILS}?limit=ten", 400, INVALID),
    Case("list-status-bad", "GET", f"{GUARDRAILS}?status=on", 400, INVALID),
    Case("list-cursor-bad", "GET", f"{GUARDRAILS}?cursor=nonsense", 400, INVALID),
    # --- GET|PATCH|DELETE /api/guardrails/{id} ------------------------------------------------
    Case("get-unknown", "GET", f"{GUARDRAILS}/grd_nope", 404, NOT_FOUND),
    Case("get-deleted", "GET", GONE, 404, NOT_FOUND),
    Case("get-version-zero", "GET", f"{LIVE}?version=0", 400, INVALID),
    Case("get-version-text", "GET", f"{LIVE}?version=two", 400, INVALID),
    Case("get-version-unknown", "GET", f"{LIVE}?version=9", 404, NOT_FOUND),
    Case("patch-name", "PATCH", LIVE, 400, INVALID, j({"name": "renamed"})),
    Case("patch-version", "PATCH", LIVE, 400, INVALID, j({"version": 7})),
    Case("patch-bad-rule", "PATCH", LIVE, 400, INVALID, j({"rules": [{"decision": "NO"}]})),
    Case("patch-empty-rules", "PATCH", LIVE, 400, MISSING, j({"rules": []})),
    Case("patch-malformed-json", "PATCH", LIVE, 400, INVALID, b"{"),
    Case("patch-unknown", "PATCH", f"{GUARDRAILS}/grd_nope", 404, NOT_FOUND, j({"rules": [RULE]})),
    Case("patch-deleted", "PATCH", GONE, 404, NOT_FOUND, j({"status": "disabled"})),
    Case("delete-unknown", "DELETE", f"{GUARDRAILS}/grd_nope", 404, NOT_FOUND),
    Case("delete-deleted", "DELETE", GONE, 404, NOT_FOUND),
    Case("id-too-long", "GET", f"{GUARDRAILS}/{'x' * 201}", 400, INVALID),
    # --- versions and rollback ------------------------------------------------------------------
    Case("versions-unknown", "GET", f"{GUARDRAILS}/grd_nope/versions", 404, NOT_FOUND),
    Case("rollback-unknown-version", "POST", f"{LIVE}/versions/9/rollback", 404, NOT_FOUND),
    Case("rollback-version-zero", "POST", f"{LIVE}/versions/0/rollback", 400, INVALID),
    Case("rollback-version-text", "POST", f"{LIVE}/versions/one/rollback", 400, INVALID),
    Case("rollback-deleted", "POST", f"{GONE}/versions/1/rollback", 404, NOT_FOUND),
    Case("rollback-message-number", "POST", f"{LIVE}/versions/1/rollback", 400, INVALID,
         j({"message": 5})),
    Case("rollback-malformed-json", "POST", f"{LIVE}/versions/1/rollback", 400, INVALID, b"{"),
    # --- POST /api/guardrails/evaluate ----------------------------------------------------------
    Case("evaluate-no-action", "POST", EVALUATE, 400, MISSING, evaluate(action=...)),
    Case("evaluate-no-tool", "POST", EVALUATE, 400, MISSING,
         evaluate(action={"connector": "cn_1"})),
    Case("evaluate-action-string", "POST", EVALUATE, 400, INVALID, evaluate(action="refund")),
    Case("evaluate-value-string", "POST", EVALUATE, 400, INVALID,
         evaluate(action={**ACTION, "value": "300"})),
    Case("evaluate-bad-hypothetical", "POST", EVALUATE, 400, INVALID,
         evaluate(policies=[{"rules": [{"decision": "BLOCK"}]}])),
    Case("evaluate-empty-hypothetical", "POST", EVALUATE, 400, INVALID,
         evaluate(policies=[{"rules": []}])),
    Case("evaluate-policies-object", "POST", EVALUATE, 400, INVALID, evaluate(policies={})),
    Case("evaluate-hypothetical-syntax", "POST", EVALUATE, 400, INVALID,
         evaluate(policies=[{"rules": [{"decision": "ALLOW", "when": "$.x === 1"}]}])),
    Case("evaluate-principal-roles", "POST", EVALUATE, 400, INVALID,
         evaluate(principal={"roles": "admin"})),
    Case("evaluate-context-array", "POST", EVALUATE, 400, INVALID, evaluate(context=[1])),
    Case("evaluate-unknown-field", "POST", EVALUATE, 400, INVALID, evaluate(plan="p")),
    Case("evaluate-operator", "POST", EVALUATE, 404, NOT_FOUND, evaluate(operator_id="op_1")),
    Case("evaluate-malformed-json", "POST", EVALUATE, 400, INVALID, b"[1,"),
    # --- the tool registry -----------------------------------------------------------------------
    Case("tools-include-archived-bad", "GET", "/api/tools?include_archived=yes", 400,
         "invalid_input"),
    Case("tools-malformed-json", "POST", "/api/tools", 400, "invalid_input", b"{"),
    Case("tools-no-categories", "POST", "/api/tools", 400, "invalid_input", j({"name": "x.y"})),
    Case("tools-bad-category", "POST", "/api/tools", 400, "invalid_input",
         j({"name": "x.y", "categories": ["weapons"]})),
    Case("tools-bad-name", "POST", "/api/tools", 400, "invalid_input",
         j({"name": "a/b", "categories": ["other"]})),
    Case("tools-reserved-name", "POST", "/api/tools", 400, "invalid_input",
         j({"name": "approvals", "categories": ["other"]})),
    Case("tools-duplicate", "POST", "/api/tools", 409, "conflict",
         j({"name": "http.request", "categories": ["other"]})),
    Case("deprecate-no-reason", "POST", "/api/tools/http.request/deprecate", 400,
         "invalid_input", j({})),
    Case("deprecate-unknown", "POST", "/api/tools/nope/deprecate", 404, "not_found",
         j({"reason": "old"})),
    Case("deprecate-archived", "POST", "/api/tools/old.tool/deprecate", 409, "conflict",
         j({"reason": "old"})),
    Case("deprecate-replacement-unknown", "POST", "/api/tools/http.request/deprecate", 422,
         "unprocessable", j({"reason": "old", "replacement": "nope"})),
    Case("archive-unknown", "POST", "/api/tools/nope/archive", 404, "not_found"),
    Case("archive-archived", "POST", "/api/tools/old.tool/archive", 409, "conflict"),
    # --- tool policies and role overrides --------------------------------------------------------
    Case("tool-policy-unregistered", "POST", "/api/tool-policies", 422, "unprocessable",
         j({"tool_name": "nope", "allowed": True})),
    Case("tool-policy-second", "POST", "/api/tool-policies", 409, "conflict",
         j({"tool_name": "http.request", "allowed": False})),
    Case("tool-policy-allowed-string", "POST", "/api/tool-policies", 400, "invalid_input",
         j({"tool_name": "http.request", "allowed": "yes"})),
    Case("tool-policy-size-zero", "POST", "/api/tool-policies", 400, "invalid_input",
         j({"tool_name": "http.request", "allowed": True,
            "restrictions": {"max_response_size_kb": 0}})),
    Case("tool-policy-domains-string", "POST", "/api/tool-policies", 400, "invalid_input",
         j({"tool_name": "http.request", "allowed": True,
            "restrictions": {"allowed_domains": "example.com"}})),
    Case("tool-policy-camel", "POST", "/api/tool-policies", 400, "invalid_input",
         j({"toolName": "http.request", "allowed": True})),
    Case("tool-policy-delete-unknown", "DELETE", "/api/tool-policies/tpol_nope", 404,
         "not_found"),
    Case("override-unregistered", "POST", "/api/role-policy-overrides", 422, "unprocessable",
         j({"role": "dev", "tool_name": "nope", "allowed": True})),
    Case("override-second", "POST", "/api/role-policy-overrides", 409, "conflict",
         j({"role": "developer", "tool_name": "http.request", "allowed": True})),
    Case("override-no-role", "POST", "/api/role-policy-overrides", 400, "invalid_input",
         j({"tool_name": "http.request", "allowed": True})),
    Case("override-delete-unknown", "DELETE", "/api/role-policy-overrides/rpo_nope", 404,
         "not_found"),
]


def test_the_table_is_sound() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


async def _ok(client: TestClient[Any, Any], method: str, path: str, body: Any = None,
              headers: dict[str, str] | None = None) -> Any:
    async with client.request(method, path, json=body, headers=headers) as resp:
        assert resp.status in (200, 201), (path, resp.status, await resp.text())
        return await resp.json()


async def seed(client: TestClient[Any, Any]) -> dict[str, str]:
    live = await _ok(client, "POST", GUARDRAILS, {"name": "seeded", "rules": [RULE]},
                     {"Idempotency-Key": "seed-key"})
    await _ok(client, "PATCH", f"{GUARDRAILS}/{live['id']}", {"rules": [RULE, RULE]})
    gone = await _ok(client, "POST", GUARDRAILS, {"name": "deleted", "rules": [RULE]})
    await _ok(client, "DELETE", f"{GUARDRAILS}/{gone['id']}")
    await _ok(client, "POST", "/api/tools", {"name": "http.request", "categories": ["other"]})
    await _ok(client, "POST", "/api/tools", {"name": "old.tool", "categories": ["other"]})
    await _ok(client, "POST", "/api/tools/old.tool/archive")
    await _ok(client, "POST", "/api/tool-policies", {"tool_name": "http.request",
                                                     "allowed": True})
    await _ok(client, "POST", "/api/role-policy-overrides",
              {"role": "developer", "tool_name": "http.request", "allowed": False})
    return {LIVE: f"{GUARDRAILS}/{live['id']}", GONE: f"{GUARDRAILS}/{gone['id']}"}


async def test_every_bad_input_answers_its_code_and_changes_nothing(
    client: TestClient[Any, Any], db_path: Any
) -> None:
    ids = await seed(client)
    before = dump(db_path)
    wrong = []
    for case in CASES:
        status, body = await fire(client, case, ids)
        assert set(body) == {"error", "message", "details"}, (case.id, body)
        if (status, body["error"]) != (case.status, case.code):
            wrong.append((case.id, case.status, case.code, status, body))
    assert wrong == []
    assert dump(db_path) == before


async def test_an_expression_error_names_the_expression_and_position(
    client: TestClient[Any, Any]
) -> None:
    status, body = await fire(client, next(c for c in CASES
                                           if c.id == "create-expression-syntax"), {})
    assert status == 400
    assert body["details"]["expression"] == "$.arguments.x >"
    assert body["details"]["position"] == 15
    assert body["details"]["field"] == "rules[0].when"


@pytest.mark.parametrize("name", ["abc", "a" * 40, "refund-ceiling-2"])
async def test_names_at_the_bounds_are_accepted(client: TestClient[Any, Any], name: str) -> None:
    await _ok(client, "POST", GUARDRAILS, {"name": name, "rules": [RULE]})
