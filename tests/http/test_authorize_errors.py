"""Bad input on the authorize, receipt, settings, enforcement and report routes.

Each case is fired at a seeded daemon (a registered tool with a policy and a
guardrail, a receipt made with an idempotency key, patched settings); each
must answer its status and error code in the one error shape, and none may
change a byte of the database. test_errors.py's tripwire reads CASES.
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from conftest import dump
from errortable import Case, fire, j

AUTHORIZE = "/api/governance/authorize"
SETTINGS = "/api/governance/settings"
RECEIPTS = "/api/governance/receipts"
CHECK = "/api/governance/enforcement/check"
REPORT = "/api/governance/report"
STATS = "/api/governance/approval-stats"
LONG_ID = "x" * 201
ASK = {"agentId": "a1", "tool": "mail.send", "waitMs": 0}
SEEDED = {**ASK, "idempotencyKey": "seeded-key"}


def ask(**changes: Any) -> bytes:
    return j({k: v for k, v in {**ASK, **changes}.items() if v is not ...})


def raw(text: str) -> bytes:
    return text.encode()


BAD, UNPROCESSABLE = "invalid_input", "unprocessable"

CASES: list[Case] = [
    # --- POST /api/governance/authorize --------------------------------------------------
    Case("authorize-malformed", "POST", AUTHORIZE, 400, BAD, raw('{"agentId": ')),
    Case("authorize-array", "POST", AUTHORIZE, 400, BAD, j([ASK])),
    Case("authorize-empty", "POST", AUTHORIZE, 400, BAD, b""),
    Case("authorize-no-agent", "POST", AUTHORIZE, 400, BAD, ask(agentId=...)),
    Case("authorize-no-tool", "POST", AUTHORIZE, 400, BAD, ask(tool=...)),
    Case("authorize-tool-number", "POST", AUTHORIZE, 400, BAD, ask(tool=7)),
    Case("authorize-agent-too-long", "POST", AUTHORIZE, 400, BAD, ask(agentId=LONG_ID)),
    Case("authorize-unknown-field", "POST", AUTHORIZE, 400, BAD, ask(action="send")),
    Case("authorize-snake-field", "POST", AUTHORIZE, 400, BAD, ask(agent_id="a1")),
    Case("authorize-value-string", "POST", AUTHORIZE, 400, BAD, ask(value="5")),
    Case("authorize-value-bool", "POST", AUTHORIZE, 400, BAD, ask(value=True)),
    Case("authorize-value-huge", "POST", AUTHORIZE, 400, BAD,
         raw('{"agentId": "a1", "tool": "mail.send", "value": 1e16}')),
    Case("authorize-value-nan", "POST", AUTHORIZE, 400, BAD,
         raw('{"agentId": "a1", "tool": "mail.send", "value": NaN}')),
    Case("authorize-estimate-zero", "POST", AUTHORIZE, 400, BAD, ask(estimateUsdCents=0)),
    Case("authorize-estimate-negative", "POST", AUTHORIZE, 400, BAD,
         ask(estimateUsdCents=-1)),
    Case("authorize-estimate-string", "POST", AUTHORIZE, 400, BAD, ask(estimateUsdCents="1")),
    Case("authorize-wait-negative", "POST", AUTHORIZE, 400, BAD, ask(waitMs=-1)),
    Case("authorize-wait-fractional", "POST", AUTHORIZE, 400, BAD,
         raw('{"agentId": "a1", "tool": "mail.send", "waitMs": 1.5}')),
    Case("authorize-roles-string", "POST", AUTHORIZE, 400, BAD, ask(roles="dev")),
    Case("authorize-roles-too-many", "POST", AUTHORIZE, 400, BAD,
         ask(roles=[f"r{i}" for i in range(51)])),
    Case("authorize-args-list", "POST", AUTHORIZE, 400, BAD, ask(args=[1, 2])),
    Case("authorize-context-string", "POST", AUTHORIZE, 400, BAD, ask(context="prod")),
    Case("authorize-args-too-deep", "POST", AUTHORIZE, 400, BAD,
         raw('{"agentId": "a1", "tool": "mail.send", "args": ' + '{"a": ' * 40 + "1"
             + "}" * 40 + "}")),
    Case("authorize-key-empty", "POST", AUTHORIZE, 400, BAD, ask(idempotencyKey="")),
    Case("authorize-dup-key", "POST", AUTHORIZE, 400, BAD,
         raw('{"agentId": "a1", "tool": "mail.send", "tool": "shell.exec"}')),
    Case("authorize-unknown-run", "POST", AUTHORIZE, 404, "not_found", ask(runId="run_nope")),
    Case("authorize-key-other-body", "POST", AUTHORIZE, 409, "idempotency_conflict",
         j({**SEEDED, "value": 3})),
    Case("authorize-method-get", "GET", AUTHORIZE, 405, "method_not_allowed"),
    # --- GET /api/governance/receipts/{id} --------------------------------------------------
    Case("receipt-unknown", "GET", f"{RECEIPTS}/rcp_0000000000000000", 404, "not_found"),
    Case("receipt-id-too-long", "GET", f"{RECEIPTS}/{LONG_ID}", 400, BAD),
    # --- PATCH /api/governance/settings -----------------------------------------------------
    Case("settings-malformed", "PATCH", SETTINGS, 400, BAD, raw('{"allow_self_approval": ')),
    Case("settings-array", "PATCH", SETTINGS, 400, BAD, j([{"approval_threshold": 2}])),
    Case("settings-unknown-key", "PATCH", SETTINGS, 400, BAD, j({"quorum": 2})),
    Case("settings-camel-key", "PATCH", SETTINGS, 400, BAD, j({"approvalThreshold": 2})),
    Case("settings-flag-string", "PATCH", SETTINGS, 400, BAD,
         j({"require_approval_for_public_writes": "true"})),
    Case("settings-threshold-string", "PATCH", SETTINGS, 400, BAD,
         j({"approval_threshold": "2"})),
    Case("settings-threshold-float", "PATCH", SETTINGS, 400, BAD,
         raw('{"approval_threshold": 2.0}')),
    Case("settings-threshold-bool", "PATCH", SETTINGS, 400, BAD, j({"approval_threshold": True})),
    Case("settings-threshold-zero", "PATCH", SETTINGS, 422, UNPROCESSABLE,
         j({"approval_threshold": 0})),
    Case("settings-threshold-over", "PATCH", SETTINGS, 422, UNPROCESSABLE,
         j({"approval_threshold": 101})),
    Case("settings-flags-list", "PATCH", SETTINGS, 400, BAD, j({"category_flags": ["pii"]})),
    Case("settings-flags-unknown", "PATCH", SETTINGS, 400, BAD,
         j({"category_flags": {"weather": True}})),
    Case("settings-flags-number", "PATCH", SETTINGS, 400, BAD,
         j({"category_flags": {"pii": 1}})),
    Case("settings-dup-key", "PATCH", SETTINGS, 400, BAD,
         raw('{"approval_threshold": 2, "approval_threshold": 3}')),
    Case("settings-method-post", "POST", SETTINGS, 405, "method_not_allowed", j({})),
    # --- GET /api/governance/enforcement/check ----------------------------------------------
    Case("check-no-type", "GET", f"{CHECK}?resourceId=a1", 400, BAD),
    Case("check-no-id", "GET", f"{CHECK}?resourceType=agent", 400, BAD),
    Case("check-bad-type", "GET", f"{CHECK}?resourceType=app&resourceId=a1", 400, BAD),
    Case("check-id-too-long", "GET", f"{CHECK}?resourceType=agent&resourceId={LONG_ID}", 400,
         BAD),
    Case("check-id-empty", "GET", f"{CHECK}?resourceType=agent&resourceId=", 400, BAD),
    # --- reports ---------------------------------------------------------------------------
    Case("report-bad-period", "GET", f"{REPORT}?period=last_year", 400, BAD),
    Case("report-empty-period", "GET", f"{REPORT}?period=", 400, BAD),
    Case("stats-bad-period", "GET", f"{STATS}?period=today", 400, BAD),
]


def test_the_table_is_sound() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


async def _ok(client: TestClient[Any, Any], method: str, path: str, body: Any = None) -> Any:
    async with client.request(method, path, json=body) as resp:
        assert resp.status in (200, 201), (path, resp.status, await resp.text())
        return await resp.json()


async def seed(client: TestClient[Any, Any]) -> None:
    await _ok(client, "POST", "/api/tools", {"name": "mail.send", "categories": ["pii"]})
    await _ok(client, "POST", "/api/tool-policies", {"tool_name": "mail.send", "allowed": True})
    await _ok(client, "POST", "/api/guardrails",
              {"name": "mail", "rules": [{"tool": "mail.send", "decision": "ALLOW"}]})
    await _ok(client, "PATCH", SETTINGS, {"approval_threshold": 2})
    assert (await _ok(client, "POST", AUTHORIZE, SEEDED))["decision"] == "ALLOW"


async def test_every_bad_input_answers_its_code_and_changes_nothing(
    client: TestClient[Any, Any], db_path: Any
) -> None:
    await seed(client)
    before = dump(db_path)
    wrong = []
    for case in CASES:
        status, body = await fire(client, case)
        assert set(body) == {"error", "message", "details"}, (case.id, body)
        if (status, body["error"]) != (case.status, case.code):
            wrong.append((case.id, case.status, case.code, status, body))
    assert wrong == []
    assert dump(db_path) == before


async def test_edges_that_must_be_accepted(client: TestClient[Any, Any]) -> None:
    await seed(client)
    for body in ({**ASK, "value": 10**15}, {**ASK, "value": -3}, {**ASK, "roles": []},
                 {**ASK, "estimateUsdCents": 0.01}, {**ASK, "agentId": "y" * 200}):
        await _ok(client, "POST", AUTHORIZE, body)
    for patch in ({}, {"approval_threshold": 100}, {"approval_threshold": None},
                  {"category_flags": None}, {"allow_self_approval": None}):
        await _ok(client, "PATCH", SETTINGS, patch)
    settings = await _ok(client, "GET", SETTINGS)
    assert settings["approval_threshold"] == 1 and settings["category_flags"] == {}
