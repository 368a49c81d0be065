"""The one error shape and the bad-input matrix of every route that takes input.

One JSON shape for every error, `{"error", "message", "details"}`, with the
status that fits and never a 500; and a refused request changes nothing: the
database dump is byte-for-byte the same after the whole table has been fired
at a seeded daemon (a paused cap budget, a soft-capped warn budget, spends
with idempotency keys, their audit rows).

The table lists each request with its expected status written out. Should a
case ever be known-wrong in the daemon, it keeps the RIGHT status and goes in
KNOWN_BUGS (a strict xfail: the fix turns it into a failure until the entry is
removed), never a relaxed status. The last part checks the other side: edge
values that must be accepted, so the validation is not over-strict.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import test_authorize_errors
import test_guardrails_errors
from aiohttp.test_utils import TestClient, TestServer
from conftest import FakeClock, dump
from errortable import j

from clawguard.http import application, routes
from clawguard.runtime import config

BUDGETS = "/api/governance/budgets"
SPEND = "/api/governance/spend"
PREFLIGHT = "/api/governance/preflight"
AUDIT = "/api/governance/audit"
DELEGATE = "/api/governance/delegation-approval"
TOOLS = "/api/tools/approvals"
GRANTS = "/api/tools/approvals/grants"
HISTORY = "/api/approvals"
SUMMARY = "/api/governance/spend/summary"
KEYS = "/api/keys"
UNKNOWN_APPROVAL = f"{TOOLS}/apr_0000000000000000"
RUNS = "/api/governance/runs"
UNKNOWN_RUN = f"{RUNS}/run_0000000000000000"
QUOTA = "/api/tenants/org/quota"
HOLDS = "/api/governance/holds"
UNKNOWN_HOLD = f"{HOLDS}/hld_0000000000000000"
# The seeded hold, exactly as sent: its key reused with another body is a 409.
SEED_HOLD = {"agentId": "h9", "amountUsdCents": 1, "idempotencyKey": "hold-1"}
MIB = 1024 * 1024
ERROR_KEYS = {"error", "message", "details"}

LONG_ID = "x" * 201  # one over the 1..200 bound
MAX_ID = "y" * 200  # exactly at the bound
DIGITS_5000 = "1" + "0" * 4999  # a 5000-digit integer literal
HUGE_EXPONENT = "1E+1000000000000000000"  # a literal Decimal itself refuses to build
DEEP_ARRAY = "[" * 100_000  # well under 1 MiB, far deeper than the recursion limit


def raw(text: str) -> bytes:
    return text.encode()


def payload_of(body: bytes | None) -> Any:
    """aiohttp warns (an error here) on a large raw-bytes body; a stream says the same bytes."""
    return io.BytesIO(body) if body is not None and len(body) > 64 * 1024 else body


def resume(scope: str, scope_id: str) -> str:
    return f"{BUDGETS}/{scope}/{scope_id}/resume"


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    body: bytes | None = None


# A valid body for each route, so each bad case below differs from it in one thing.
BUDGET = {"scope": "agent", "scopeId": "a1", "limitUsdCents": 200, "mode": "cap"}
SPENT = {"agentId": "a1", "teamId": "t1", "costUsdCents": 1}
# The first seeded spend, exactly as sent: its key reused with another body is a 409.
SEED_SPEND = {"agentId": "a1", "teamId": "t1", "costUsdCents": 5, "idempotencyKey": "run-1/evt-1"}


def budget_with(**changes: Any) -> bytes:
    return j({**BUDGET, **changes})


def budget_without(name: str) -> bytes:
    return j({k: v for k, v in BUDGET.items() if k != name})


def budget_limit(literal: str) -> bytes:
    return raw(f'{{"scope": "agent", "scopeId": "a1", "limitUsdCents": {literal}}}')


def spend_with(**changes: Any) -> bytes:
    return j({**SPENT, **changes})


def spend_cost(literal: str) -> bytes:
    return raw(f'{{"agentId": "a1", "teamId": "t1", "costUsdCents": {literal}}}')


def grace(literal: str) -> bytes:
    return raw(f'{{"graceUsdCents": {literal}}}')


CASES: list[Case] = [
    # --- POST /api/governance/budgets ------------------------------------------------
    Case("budgets-malformed-json", "POST", BUDGETS, 400, raw('{"scope": "agent",')),
    Case("budgets-form-encoded", "POST", BUDGETS, 400, raw("scope=agent&scopeId=a1")),
    Case("budgets-trailing-garbage", "POST", BUDGETS, 400, budget_with() + b" x"),
    Case("budgets-empty-body", "POST", BUDGETS, 400, b""),
    Case("budgets-whitespace-body", "POST", BUDGETS, 400, b"  \n "),
    Case("budgets-array", "POST", BUDGETS, 400, j([BUDGET])),
    Case("budgets-null", "POST", BUDGETS, 400, b"null"),
    Case("budgets-string", "POST", BUDGETS, 400, j("agent a1 200")),
    Case("budgets-number", "POST", BUDGETS, 400, b"200"),
    Case("budgets-empty-object", "POST", BUDGETS, 400, j({})),
    Case("budgets-limit-string", "POST", BUDGETS, 400, budget_with(limitUsdCents="500")),
    Case("budgets-limit-fractional", "POST", BUDGETS, 400, budget_limit("10.5")),
    Case("budgets-limit-float-integral", "POST", BUDGETS, 400, budget_limit("10.0")),
    Case("budgets-limit-zero", "POST", BUDGETS, 400, budget_limit("0")),
    Case("budgets-limit-negative", "POST", BUDGETS, 400, budget_limit("-100")),
    Case("budgets-limit-negative-zero", "POST", BUDGETS, 400, budget_limit("-0")),
    Case("budgets-limit-true", "POST", BUDGETS, 400, budget_limit("true")),
    Case("budgets-limit-null", "POST", BUDGETS, 400, budget_limit("null")),
    Case("budgets-limit-nan", "POST", BUDGETS, 400, budget_limit("NaN")),
    Case("budgets-limit-infinity", "POST", BUDGETS, 400, budget_limit("Infinity")),
    Case("budgets-limit-minus-infinity", "POST", BUDGETS, 400, budget_limit("-Infinity")),
    Case("budgets-limit-1e13-float", "POST", BUDGETS, 400, budget_limit("1e13")),
    Case("budgets-limit-10e13-int", "POST", BUDGETS, 400, budget_limit(str(10**13))),
    Case("budgets-limit-just-over-max", "POST", BUDGETS, 400, budget_limit(str(10**12 + 1))),
    Case("budgets-limit-10e30", "POST", BUDGETS, 400, budget_limit(str(10**30))),
    Case("budgets-limit-5000-digits", "POST", BUDGETS, 400, budget_limit(DIGITS_5000)),
    Case("budgets-limit-huge-exponent", "POST", BUDGETS, 400, budget_limit(HUGE_EXPONENT)),
    Case("budgets-missing-limit", "POST", BUDGETS, 400, budget_without("limitUsdCents")),
    Case("budgets-missing-scope", "POST", BUDGETS, 400, budget_without("scope")),
    Case("budgets-missing-scope-id", "POST", BUDGETS, 400, budget_without("scopeId")),
    Case("budgets-unknown-field", "POST", BUDGETS, 400, budget_with(note="raise it")),
    Case("budgets-tenant-number", "POST", BUDGETS, 400, budget_with(tenantId=7)),
    Case("budgets-tenant-empty", "POST", BUDGETS, 400, budget_with(tenantId="")),
    Case("budgets-tenant-too-long", "POST", BUDGETS, 400, budget_with(tenantId=LONG_ID)),
    Case("budgets-tenant-object", "POST", BUDGETS, 400, budget_with(tenantId={"id": "org"})),
    Case("budgets-tenant-snake-case", "POST", BUDGETS, 400, budget_with(tenant_id="org")),
    Case("budgets-snake-case-field", "POST", BUDGETS, 400,
         j({"scope": "agent", "scope_id": "a1", "limit_usd_cents": 200})),
    Case("budgets-unknown-scope", "POST", BUDGETS, 400, budget_with(scope="org")),
    Case("budgets-scope-wrong-case", "POST", BUDGETS, 400, budget_with(scope="Agent")),
    Case("budgets-scope-number", "POST", BUDGETS, 400, budget_with(scope=1)),
    Case("budgets-unknown-mode", "POST", BUDGETS, 400, budget_with(mode="pause")),
    Case("budgets-mode-bool", "POST", BUDGETS, 400, budget_with(mode=True)),
    Case("budgets-scope-id-empty", "POST", BUDGETS, 400, budget_with(scopeId="")),
    Case("budgets-scope-id-too-long", "POST", BUDGETS, 400, budget_with(scopeId=LONG_ID)),
    Case("budgets-scope-id-number", "POST", BUDGETS, 400, budget_with(scopeId=7)),
    Case("budgets-scope-id-null", "POST", BUDGETS, 400, budget_with(scopeId=None)),
    Case("budgets-deeply-nested", "POST", BUDGETS, 400, raw(DEEP_ARRAY)),
    Case("budgets-body-over-1mib", "POST", BUDGETS, 413, budget_with() + b" " * MIB),
    # --- DELETE /api/governance/budgets/{scope}/{scopeId} --------------------------------
    Case("delete-unknown-scope", "DELETE", f"{BUDGETS}/org/a1", 400),
    Case("delete-scope-plural", "DELETE", f"{BUDGETS}/agents/a1", 400),
    Case("delete-scope-id-too-long", "DELETE", f"{BUDGETS}/agent/{LONG_ID}", 400),
    Case("delete-unknown-budget", "DELETE", f"{BUDGETS}/agent/nobody", 404),
    Case("delete-id-under-other-scope", "DELETE", f"{BUDGETS}/mission/a1", 404),
    Case("delete-empty-scope-id", "DELETE", f"{BUDGETS}/agent/", 404),  # no such route
    # --- POST /api/governance/budgets/{scope}/{scopeId}/resume ---------------------------
    Case("resume-malformed-json", "POST", resume("agent", "a1"), 400, raw('{"graceUsdCents": ')),
    Case("resume-array", "POST", resume("agent", "a1"), 400, j([{"graceUsdCents": 5}])),
    Case("resume-null", "POST", resume("agent", "a1"), 400, b"null"),
    Case("resume-number", "POST", resume("agent", "a1"), 400, b"5"),
    Case("resume-grace-zero", "POST", resume("agent", "a1"), 400, grace("0")),
    Case("resume-grace-negative", "POST", resume("agent", "a1"), 400, grace("-5")),
    Case("resume-grace-fractional", "POST", resume("agent", "a1"), 400, grace("2.5")),
    Case("resume-grace-string", "POST", resume("agent", "a1"), 400, grace('"5"')),
    Case("resume-grace-true", "POST", resume("agent", "a1"), 400, grace("true")),
    Case("resume-grace-nan", "POST", resume("agent", "a1"), 400, grace("NaN")),
    Case("resume-grace-infinity", "POST", resume("agent", "a1"), 400, grace("Infinity")),
    Case("resume-grace-10e30", "POST", resume("agent", "a1"), 400, grace(str(10**30))),
    Case("resume-grace-5000-digits", "POST", resume("agent", "a1"), 400, grace(DIGITS_5000)),
    Case("resume-unknown-field", "POST", resume("agent", "a1"), 400, j({"grace": 5})),
    Case("resume-snake-case-field", "POST", resume("agent", "a1"), 400,
         j({"grace_usd_cents": 5})),
    Case("resume-unknown-scope", "POST", resume("org", "a1"), 400, j({})),
    Case("resume-scope-id-too-long", "POST", resume("agent", LONG_ID), 400, j({})),
    Case("resume-unknown-budget", "POST", resume("agent", "nobody"), 404, b""),
    Case("resume-unknown-budget-with-grace", "POST", resume("team", "a1"), 404, grace("5")),
    Case("resume-empty-scope-id", "POST", f"{BUDGETS}/agent//resume", 404, b""),
    Case("resume-deeply-nested", "POST", resume("agent", "a1"), 400, raw(DEEP_ARRAY)),
    Case("resume-body-over-1mib", "POST", resume("agent", "a1"), 413, b" " * (MIB + 1)),
    # --- POST /api/governance/spend --------------------------------------------------------
    Case("spend-malformed-json", "POST", SPEND, 400, raw('{"agentId": "a1", "costUsdCents"')),
    Case("spend-single-quotes", "POST", SPEND, 400, raw("{'agentId': 'a1', 'costUsdCents': 1}")),
    Case("spend-trailing-garbage", "POST", SPEND, 400, spend_with() + b"}"),
    Case("spend-empty-body", "POST", SPEND, 400, b""),
    Case("spend-array", "POST", SPEND, 400, j([SPENT])),
    Case("spend-null", "POST", SPEND, 400, b"null"),
    Case("spend-invalid-utf8", "POST", SPEND, 400, b'{"agentId": "\xff", "costUsdCents": 1}'),
    Case("spend-lone-surrogate-id", "POST", SPEND, 400,
         raw('{"agentId": "\\ud800", "costUsdCents": 1}')),
    Case("spend-cost-string", "POST", SPEND, 400, spend_with(costUsdCents="500")),
    Case("spend-cost-true", "POST", SPEND, 400, spend_cost("true")),
    Case("spend-cost-null", "POST", SPEND, 400, spend_cost("null")),
    Case("spend-cost-array", "POST", SPEND, 400, spend_cost("[1]")),
    Case("spend-cost-object", "POST", SPEND, 400, spend_cost('{"cents": 1}')),
    Case("spend-cost-negative", "POST", SPEND, 400, spend_cost("-1")),
    Case("spend-cost-negative-fraction", "POST", SPEND, 400, spend_cost("-0.0001")),
    Case("spend-cost-nan", "POST", SPEND, 400, spend_cost("NaN")),
    Case("spend-cost-infinity", "POST", SPEND, 400, spend_cost("Infinity")),
    Case("spend-cost-minus-infinity", "POST", SPEND, 400, spend_cost("-Infinity")),
    Case("spend-cost-1e13-float", "POST", SPEND, 400, spend_cost("1e13")),
    Case("spend-cost-10e13-int", "POST", SPEND, 400, spend_cost(str(10**13))),
    Case("spend-cost-just-over-max", "POST", SPEND, 400, spend_cost("1000000000001")),
    Case("spend-cost-fraction-over-max", "POST", SPEND, 400, spend_cost("1000000000000.0001")),
    Case("spend-cost-10e30", "POST", SPEND, 400, spend_cost(str(10**30))),
    Case("spend-cost-5000-digits", "POST", SPEND, 400, spend_cost(DIGITS_5000)),
    Case("spend-cost-huge-exponent", "POST", SPEND, 400, spend_cost(HUGE_EXPONENT)),
    Case("spend-missing-cost", "POST", SPEND, 400, j({"agentId": "a1", "teamId": "t1"})),
    Case("spend-no-scope-id", "POST", SPEND, 400, j({"costUsdCents": 1})),
    Case("spend-null-scope-ids", "POST", SPEND, 400,
         j({"agentId": None, "missionId": None, "teamId": None, "tenantId": None,
            "costUsdCents": 1})),
    Case("spend-agent-id-empty", "POST", SPEND, 400, j({"agentId": "", "costUsdCents": 1})),
    Case("spend-agent-id-too-long", "POST", SPEND, 400, spend_with(agentId=LONG_ID)),
    Case("spend-mission-id-too-long", "POST", SPEND, 400, spend_with(missionId=LONG_ID)),
    Case("spend-team-id-empty", "POST", SPEND, 400, spend_with(teamId="")),
    Case("spend-tenant-id-too-long", "POST", SPEND, 400, spend_with(tenantId=LONG_ID)),
    Case("spend-agent-id-number", "POST", SPEND, 400, spend_with(agentId=7)),
    Case("spend-unknown-field", "POST", SPEND, 400, spend_with(costUsd=1)),
    Case("spend-snake-case-field", "POST", SPEND, 400, j({"agentId": "a1", "cost_usd_cents": 1})),
    Case("spend-idempotency-key-empty", "POST", SPEND, 400, spend_with(idempotencyKey="")),
    Case("spend-idempotency-key-too-long", "POST", SPEND, 400, spend_with(idempotencyKey=LONG_ID)),
    Case("spend-idempotency-key-number", "POST", SPEND, 400, spend_with(idempotencyKey=42)),
    Case("spend-task-id-too-long", "POST", SPEND, 400, spend_with(taskId=LONG_ID)),
    Case("spend-model-too-long", "POST", SPEND, 400, spend_with(model=LONG_ID)),
    Case("spend-tokens-negative", "POST", SPEND, 400, spend_with(inputTokens=-1)),
    Case("spend-tokens-fractional", "POST", SPEND, 400, raw(
        '{"agentId": "a1", "costUsdCents": 1, "outputTokens": 1.5}')),
    Case("spend-tokens-string", "POST", SPEND, 400, spend_with(inputTokens="10")),
    Case("spend-tokens-true", "POST", SPEND, 400, spend_with(outputTokens=True)),
    Case("spend-tokens-over-2e53", "POST", SPEND, 400, spend_with(inputTokens=2**53 + 1)),
    Case("spend-key-reused-other-amount", "POST", SPEND, 409, j({**SEED_SPEND, "costUsdCents": 6})),
    Case("spend-key-reused-other-scopes", "POST", SPEND, 409,
         j({k: v for k, v in SEED_SPEND.items() if k != "teamId"})),
    Case("spend-key-reused-other-task", "POST", SPEND, 409, j({**SEED_SPEND, "taskId": "task-2"})),
    # no costUsdCents: priced from the model and tokens, or refused
    Case("spend-unpriced-no-model", "POST", SPEND, 400,
         j({"agentId": "a1", "inputTokens": 10, "outputTokens": 10})),
    Case("spend-unpriced-no-tokens", "POST", SPEND, 400, j({"agentId": "a1", "model": "gpt-4o"})),
    Case("spend-unpriced-unknown-model", "POST", SPEND, 400,
         j({"agentId": "a1", "model": "no-such-model", "inputTokens": 10})),
    Case("spend-unpriced-absurd-tokens", "POST", SPEND, 400,
         j({"agentId": "a1", "model": "claude-opus-4-1", "outputTokens": 2**53})),
    Case("spend-unpriced-reused-key", "POST", SPEND, 409,
         j({**{k: v for k, v in SEED_SPEND.items() if k != "costUsdCents"}, "model": "gpt-4o",
            "inputTokens": 1})),
    Case("spend-deeply-nested", "POST", SPEND, 400, raw('{"agentId": ' * 50_000)),
    Case("spend-body-over-1mib", "POST", SPEND, 413, spend_with() + b" " * MIB),
    # --- GET /api/governance/preflight -----------------------------------------------------
    Case("preflight-no-scope-id", "GET", PREFLIGHT, 400),
    Case("preflight-agent-id-empty", "GET", f"{PREFLIGHT}?agentId=", 400),
    Case("preflight-agent-id-too-long", "GET", f"{PREFLIGHT}?agentId={LONG_ID}", 400),
    Case("preflight-tenant-id-too-long", "GET", f"{PREFLIGHT}?agentId=a1&tenantId={LONG_ID}", 400),
    Case("preflight-unknown-parameter", "GET", f"{PREFLIGHT}?agentId=a1&scope=agent", 400),
    # --- GET /api/governance/budgets ---------------------------------------------------------
    Case("list-budgets-unknown-scope", "GET", f"{BUDGETS}?scope=org", 400),
    Case("list-budgets-empty-scope", "GET", f"{BUDGETS}?scope=", 400),
    Case("list-budgets-unknown-status", "GET", f"{BUDGETS}?status=stopped", 400),
    Case("list-budgets-status-wrong-case", "GET", f"{BUDGETS}?status=PAUSED", 400),
    Case("list-budgets-mode-as-status", "GET", f"{BUDGETS}?scope=agent&status=cap", 400),
    # --- GET /api/governance/audit -----------------------------------------------------------
    Case("audit-since-word", "GET", f"{AUDIT}?since=yesterday", 400),
    Case("audit-since-empty", "GET", f"{AUDIT}?since=", 400),
    Case("audit-since-fractional", "GET", f"{AUDIT}?since=1.5", 400),
    Case("audit-since-exponent", "GET", f"{AUDIT}?since=1e3", 400),
    Case("audit-since-iso-date", "GET", f"{AUDIT}?since=2026-01-01", 400),
    Case("audit-since-21-digits", "GET", f"{AUDIT}?since={'9' * 21}", 400),
    Case("audit-since-double-minus", "GET", f"{AUDIT}?since=--5", 400),
    Case("audit-since-superscript-digit", "GET", f"{AUDIT}?since=%C2%B2", 400),
    Case("audit-since-over-int64", "GET", f"{AUDIT}?since={'9' * 20}", 400),
    Case("audit-since-under-int64", "GET", f"{AUDIT}?since=-{'9' * 19}", 400),
    Case("audit-agent-id-too-long", "GET", f"{AUDIT}?agentId={LONG_ID}", 400),
    Case("history-agent-id-too-long", "GET", f"{HISTORY}?agentId={LONG_ID}", 400),
    Case("grants-agent-id-too-long", "GET", f"{GRANTS}?agentId={LONG_ID}", 400),
    # --- approvals (none of these may block: a valid handshake waits for a decision) ---------
    Case("delegate-empty-body", "POST", DELEGATE, 400, b""),
    Case("delegate-malformed-json", "POST", DELEGATE, 400, raw('{"leaderAgentId": ')),
    Case("delegate-missing-leader", "POST", DELEGATE, 400, j({"kind": "code", "task": "x"})),
    Case("delegate-leader-empty", "POST", DELEGATE, 400, j({"leaderAgentId": ""})),
    Case("delegate-leader-too-long", "POST", DELEGATE, 400, j({"leaderAgentId": LONG_ID})),
    Case("delegate-leader-number", "POST", DELEGATE, 400, j({"leaderAgentId": 7})),
    Case("delegate-kind-with-space", "POST", DELEGATE, 400,
         j({"leaderAgentId": "l", "kind": "two words"})),
    Case("delegate-wait-negative", "POST", DELEGATE, 400, j({"leaderAgentId": "l", "waitMs": -1})),
    Case("delegate-wait-fractional", "POST", DELEGATE, 400,
         raw('{"leaderAgentId": "l", "waitMs": 1.5}')),
    Case("delegate-unknown-field", "POST", DELEGATE, 400, j({"leaderAgentId": "l", "leader": "x"})),
    Case("delegate-deeply-nested", "POST", DELEGATE, 400, raw(DEEP_ARRAY)),
    Case("tool-approval-array", "POST", TOOLS, 400, j([{"toolName": "rm", "agentId": "a1"}])),
    Case("tool-approval-missing-agent", "POST", TOOLS, 400, j({"toolName": "rm"})),
    Case("tool-approval-args-array", "POST", TOOLS, 400,
         j({"toolName": "rm", "agentId": "a1", "args": ["-rf"]})),
    Case("tool-approval-args-too-deep", "POST", TOOLS, 400, raw(
        '{"toolName": "rm", "agentId": "a1", "args": {"x": ' + "[" * 40 + "]" * 40 + "}}")),
    Case("tool-approval-args-lone-surrogate", "POST", TOOLS, 400,
         raw('{"toolName": "rm", "agentId": "a1", "args": {"x": "\\ud800"}}')),
    Case("tool-approval-wait-string", "POST", TOOLS, 400,
         j({"toolName": "rm", "agentId": "a1", "waitMs": "10"})),
    Case("tool-approval-wait-nan", "POST", TOOLS, 400,
         raw('{"toolName": "rm", "agentId": "a1", "waitMs": NaN}')),
    Case("tool-approval-unknown-id", "GET", UNKNOWN_APPROVAL, 404),
    Case("tool-approval-wait-word", "GET", f"{UNKNOWN_APPROVAL}?waitMs=soon", 400),
    Case("tool-approval-wait-negative", "GET", f"{UNKNOWN_APPROVAL}?waitMs=-1", 400),
    Case("tool-approval-wait-5000-digits", "GET", f"{UNKNOWN_APPROVAL}?waitMs={'9' * 5000}", 400),
    Case("tool-approval-id-too-long", "GET", f"{TOOLS}/{LONG_ID}", 400),
    Case("resolve-unknown-decision", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "allow"})),
    Case("resolve-hyphenated-decision", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "allow-once"})),
    Case("resolve-missing-decision", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400, j({})),
    Case("resolve-unknown-grant-scope", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "allow_always", "grantScope": "everything"})),
    Case("resolve-grant-scope-wrong-case", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "allow_always", "grantScope": "Args"})),
    Case("resolve-grant-scope-null", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "allow_always", "grantScope": None})),
    Case("resolve-grant-scope-list", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "allow_always", "grantScope": ["args"]})),
    Case("resolve-grant-scope-snake-case", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "allow_always", "grant_scope": "args"})),
    Case("resolve-unknown-approval", "POST", f"{UNKNOWN_APPROVAL}/resolve", 404,
         j({"decision": "deny"})),
    # votes on approvals with stages, and waivers
    Case("resolve-conditional-without-conditions", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "conditional"})),
    Case("resolve-conditional-conditions-null", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "conditional", "conditions": None})),
    Case("resolve-conditional-conditions-empty", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "conditional", "conditions": ""})),
    Case("resolve-conditions-not-a-string", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "conditional", "conditions": ["dry run"]})),
    Case("resolve-conditions-with-allow", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "allow_once", "conditions": "dry run"})),
    Case("resolve-comments-number", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "deny", "comments": 5})),
    Case("resolve-comments-too-long", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "deny", "comments": "c" * 10_001})),
    Case("resolve-decision-uppercase", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         j({"decision": "CONDITIONAL", "conditions": "x"})),
    Case("resolve-unknown-approval-conditional", "POST", f"{UNKNOWN_APPROVAL}/resolve", 404,
         j({"decision": "conditional", "conditions": "dry run"})),
    Case("waive-missing-reason", "POST", f"{UNKNOWN_APPROVAL}/waive", 400, j({})),
    Case("waive-empty-reason", "POST", f"{UNKNOWN_APPROVAL}/waive", 400, j({"reason": ""})),
    Case("waive-blank-reason", "POST", f"{UNKNOWN_APPROVAL}/waive", 400, j({"reason": "  \n"})),
    Case("waive-reason-null", "POST", f"{UNKNOWN_APPROVAL}/waive", 400, j({"reason": None})),
    Case("waive-reason-number", "POST", f"{UNKNOWN_APPROVAL}/waive", 400, j({"reason": 1})),
    Case("waive-reason-too-long", "POST", f"{UNKNOWN_APPROVAL}/waive", 400,
         j({"reason": "r" * 10_001})),
    Case("waive-unknown-field", "POST", f"{UNKNOWN_APPROVAL}/waive", 400,
         j({"reason": "r", "decision": "allow_once"})),
    Case("waive-no-body", "POST", f"{UNKNOWN_APPROVAL}/waive", 400),
    Case("waive-malformed", "POST", f"{UNKNOWN_APPROVAL}/waive", 400, raw('{"reason": ')),
    Case("waive-array", "POST", f"{UNKNOWN_APPROVAL}/waive", 400, j(["r"])),
    Case("waive-id-too-long", "POST", f"{TOOLS}/{LONG_ID}/waive", 400, j({"reason": "r"})),
    Case("waive-unknown-approval", "POST", f"{UNKNOWN_APPROVAL}/waive", 404, j({"reason": "r"})),
    Case("pending-unknown-reviewer", "GET", f"{TOOLS}?reviewer=alice", 400),
    Case("pending-reviewer-uppercase", "GET", f"{TOOLS}?reviewer=ME", 400),
    Case("revoke-unknown-grant", "DELETE", f"{GRANTS}/grt_0000000000000000", 404),
    Case("revoke-grant-id-too-long", "DELETE", f"{GRANTS}/{LONG_ID}", 400),
    Case("history-missing-action", "POST", HISTORY, 400, j({"agentId": "a1", "toolName": "t"})),
    Case("history-underscored-action", "POST", HISTORY, 400,
         j({"agentId": "a1", "action": "allow_once", "toolName": "t"})),
    Case("history-details-string", "POST", HISTORY, 400,
         j({"agentId": "a1", "action": "deny", "toolName": "t", "details": "{}"})),
    # --- GET /api/governance/spend/summary -----------------------------------------------------
    Case("summary-no-group", "GET", SUMMARY, 400),
    Case("summary-unknown-group", "GET", f"{SUMMARY}?groupBy=task", 400),
    Case("summary-group-uppercase", "GET", f"{SUMMARY}?groupBy=Agent", 400),
    Case("summary-since-word", "GET", f"{SUMMARY}?groupBy=agent&since=yesterday", 400),
    Case("summary-until-fraction", "GET", f"{SUMMARY}?groupBy=agent&until=1.5", 400),
    Case("summary-until-5000-digits", "GET", f"{SUMMARY}?groupBy=agent&until={'9' * 5000}", 400),
    Case("method-post-summary", "POST", SUMMARY, 405, j({"groupBy": "agent"})),
    # --- /api/keys ------------------------------------------------------------------------------
    Case("keys-malformed-json", "POST", KEYS, 400, raw('{"role": ')),
    Case("keys-empty-object", "POST", KEYS, 400, j({})),
    Case("keys-unknown-role", "POST", KEYS, 400, j({"role": "root"})),
    Case("keys-role-number", "POST", KEYS, 400, j({"role": 1})),
    Case("keys-name-empty", "POST", KEYS, 400, j({"role": "executor", "name": ""})),
    Case("keys-name-too-long", "POST", KEYS, 400, j({"role": "executor", "name": LONG_ID})),
    Case("keys-unknown-field", "POST", KEYS, 400, j({"role": "executor", "key": "cgk_x"})),
    Case("keys-leads-not-a-leader", "POST", KEYS, 400, j({"role": "executor", "leads": ["a1"]})),
    Case("keys-leads-empty", "POST", KEYS, 400, j({"role": "leader", "leads": []})),
    Case("keys-leads-string", "POST", KEYS, 400, j({"role": "leader", "leads": "a1,a2"})),
    Case("keys-groups-not-a-leader", "POST", KEYS, 400,
         j({"role": "operator", "groups": ["finance"]})),
    Case("keys-groups-id-too-long", "POST", KEYS, 400, j({"role": "leader", "groups": [LONG_ID]})),
    Case("keys-expiry-zero", "POST", KEYS, 400, j({"role": "executor", "expiresInMs": 0})),
    Case("keys-expiry-negative", "POST", KEYS, 400, j({"role": "executor", "expiresInMs": -5})),
    Case("keys-expiry-string", "POST", KEYS, 400, j({"role": "executor", "expiresInMs": "60000"})),
    Case("keys-expiry-fraction", "POST", KEYS, 400,
         raw('{"role": "executor", "expiresInMs": 1.5}')),
    Case("keys-expiry-huge", "POST", KEYS, 400, j({"role": "executor", "expiresInMs": 10**20})),
    Case("keys-revoke-unknown", "DELETE", f"{KEYS}/key_000000000000", 404),
    Case("keys-revoke-id-too-long", "DELETE", f"{KEYS}/{LONG_ID}", 400),
    Case("method-put-keys", "PUT", KEYS, 405, j({"role": "executor"})),
    # --- routing -----------------------------------------------------------------------------
    Case("route-unknown", "GET", "/api/governance/nope", 404),
    Case("route-unknown-post", "POST", "/api/governance/spends", 404, spend_with()),
    Case("route-root", "GET", "/", 404),
    Case("route-budget-without-id", "DELETE", f"{BUDGETS}/agent", 404),
    Case("method-put-budgets", "PUT", BUDGETS, 405, budget_with()),
    Case("method-get-spend", "GET", SPEND, 405),
    Case("method-delete-spend", "DELETE", SPEND, 405),
    Case("method-post-preflight", "POST", PREFLIGHT, 405, j({"agentId": "a1"})),
    Case("method-get-one-budget", "GET", f"{BUDGETS}/agent/a1", 405),
    Case("method-post-one-budget", "POST", f"{BUDGETS}/agent/a1", 405, budget_with()),
    Case("method-get-resume", "GET", resume("agent", "a1"), 405),
    Case("method-patch-audit", "PATCH", AUDIT, 405),
    Case("method-delete-healthz", "DELETE", "/healthz", 405),
    Case("method-post-audit-head", "POST", f"{AUDIT}/head", 405, j({})),
    # --- a key twice in one object: refused everywhere, never last-one-wins -----------------
    Case("dup-spend-cost", "POST", SPEND, 400,
         raw('{"agentId": "a1", "costUsdCents": 1, "costUsdCents": 1000}')),
    Case("dup-spend-same-value", "POST", SPEND, 400,
         raw('{"agentId": "a1", "agentId": "a1", "costUsdCents": 1}')),
    Case("dup-budget-limit", "POST", BUDGETS, 400, raw(
        '{"scope": "agent", "scopeId": "a1", "limitUsdCents": 1, "limitUsdCents": 9999}')),
    Case("dup-resume-grace", "POST", resume("agent", "a1"), 400,
         raw('{"graceUsdCents": 1, "graceUsdCents": 100000}')),
    Case("dup-tool-args-nested", "POST", TOOLS, 400, raw(
        '{"toolName": "shell", "agentId": "a1", "waitMs": 0,'
        ' "args": {"cmd": "ls", "cmd": "rm -rf /"}}')),
    Case("dup-delegation-kind", "POST", DELEGATE, 400,
         raw('{"leaderAgentId": "lead", "kind": "code", "kind": "deploy", "waitMs": 0}')),
    Case("dup-resolve-decision", "POST", f"{UNKNOWN_APPROVAL}/resolve", 400,
         raw('{"decision": "deny", "decision": "allow_always"}')),
    Case("dup-history-action", "POST", HISTORY, 400, raw(
        '{"agentId": "a1", "action": "deny", "action": "allow-always", "toolName": "rm"}')),
    # --- runs -------------------------------------------------------------------------------
    Case("runs-malformed-json", "POST", RUNS, 400, raw('{"agentId": ')),
    Case("runs-array", "POST", RUNS, 400, j([{"agentId": "a1"}])),
    Case("runs-missing-agent", "POST", RUNS, 400, j({"tenantId": "org"})),
    Case("runs-agent-number", "POST", RUNS, 400, j({"agentId": 7})),
    Case("runs-unknown-field", "POST", RUNS, 400, j({"agentId": "a1", "depth": 0})),
    Case("runs-parent-too-long", "POST", RUNS, 400, j({"agentId": "a1", "parentRunId": LONG_ID})),
    Case("runs-key-empty", "POST", RUNS, 400, j({"agentId": "a1", "idempotencyKey": ""})),
    Case("runs-unknown-parent", "POST", RUNS, 404,
         j({"agentId": "a1", "parentRunId": "run_nope"})),
    Case("runs-list-unknown-status", "GET", f"{RUNS}?status=paused", 400),
    Case("runs-list-limit-zero", "GET", f"{RUNS}?limit=0", 400),
    Case("runs-list-limit-text", "GET", f"{RUNS}?limit=x", 400),
    Case("runs-list-limit-over", "GET", f"{RUNS}?limit=501", 400),
    Case("runs-list-agent-too-long", "GET", f"{RUNS}?agentId={LONG_ID}", 400),
    Case("run-id-too-long", "GET", f"{RUNS}/{LONG_ID}", 400),
    Case("run-unknown", "GET", UNKNOWN_RUN, 404),
    Case("run-end-unknown", "POST", f"{UNKNOWN_RUN}/end", 404),
    Case("run-end-id-too-long", "POST", f"{RUNS}/{LONG_ID}/end", 400),
    Case("events-unknown-run", "POST", f"{UNKNOWN_RUN}/events", 404, j({"kind": "tool-call"})),
    Case("events-unknown-kind", "POST", f"{UNKNOWN_RUN}/events", 400, j({"kind": "think"})),
    Case("events-empty-list", "POST", f"{UNKNOWN_RUN}/events", 400, j([])),
    Case("events-list-too-long", "POST", f"{UNKNOWN_RUN}/events", 400,
         j([{"kind": "tool-call"}] * 257)),
    Case("events-item-not-object", "POST", f"{UNKNOWN_RUN}/events", 400,
         j([{"kind": "tool-call"}, 5])),
    Case("events-second-item-bad", "POST", f"{UNKNOWN_RUN}/events", 400,
         j([{"kind": "tool-call"}, {"kind": "cost", "tokens": -1}])),
    Case("events-null", "POST", f"{UNKNOWN_RUN}/events", 400, b"null"),
    Case("events-ok-string", "POST", f"{UNKNOWN_RUN}/events", 400,
         j({"kind": "tool-result", "ok": "true"})),
    Case("events-tokens-fractional", "POST", f"{UNKNOWN_RUN}/events", 400,
         raw('{"kind": "cost", "tokens": 1.5}')),
    Case("events-ts-string", "POST", f"{UNKNOWN_RUN}/events", 400, j({"kind": "cost", "ts": "1"})),
    Case("events-signature-too-long", "POST", f"{UNKNOWN_RUN}/events", 400,
         j({"kind": "tool-call", "signature": LONG_ID})),
    Case("events-unknown-field", "POST", f"{UNKNOWN_RUN}/events", 400,
         j({"kind": "tool-call", "tool": "x"})),
    Case("quota-tenant-too-long", "GET", f"/api/tenants/{LONG_ID}/quota", 400),
    Case("quota-patch-unknown-key", "PATCH", QUOTA, 400, j({"memory_mb": 5})),
    Case("quota-patch-camel-key", "PATCH", QUOTA, 400, j({"runsPerHour": 5})),
    Case("quota-patch-string", "PATCH", QUOTA, 400, j({"runs_per_hour": "5"})),
    Case("quota-patch-float", "PATCH", QUOTA, 400, raw('{"runs_per_hour": 5.0}')),
    Case("quota-patch-bool", "PATCH", QUOTA, 400, j({"concurrent_runs": True})),
    Case("quota-patch-array", "PATCH", QUOTA, 400, j([{"runs_per_hour": 5}])),
    Case("quota-patch-malformed", "PATCH", QUOTA, 400, raw('{"runs_per_hour": ')),
    Case("quota-patch-zero", "PATCH", QUOTA, 422, j({"runs_per_hour": 0})),
    Case("quota-patch-negative", "PATCH", QUOTA, 422, j({"concurrent_runs": -1})),
    Case("quota-patch-over-100x", "PATCH", QUOTA, 422, j({"concurrent_runs": 1001})),
    Case("quota-patch-dup-key", "PATCH", QUOTA, 400,
         raw('{"runs_per_hour": 5, "runs_per_hour": 6}')),
    Case("preflight-unknown-run", "GET", f"{PREFLIGHT}?agentId=a1&runId=run_nope", 404),
    Case("preflight-run-too-long", "GET", f"{PREFLIGHT}?agentId=a1&runId={LONG_ID}", 400),
    Case("spend-run-too-long", "POST", SPEND, 400, spend_with(runId=LONG_ID)),
    # --- budget windows -------------------------------------------------------------------
    Case("budgets-unknown-timezone", "POST", BUDGETS, 400, budget_with(timezone="Mars/Olympus")),
    Case("budgets-timezone-path", "POST", BUDGETS, 400, budget_with(timezone="../etc/passwd")),
    Case("budgets-timezone-empty", "POST", BUDGETS, 400, budget_with(timezone="")),
    Case("budgets-timezone-number", "POST", BUDGETS, 400, budget_with(timezone=1)),
    Case("budgets-unknown-window", "POST", BUDGETS, 400, budget_with(window="year")),
    Case("budgets-window-null-case", "POST", BUDGETS, 400, budget_with(window="Month")),
    # --- holds ----------------------------------------------------------------------------
    Case("holds-malformed-json", "POST", HOLDS, 400, raw('{"agentId": ')),
    Case("holds-no-scope", "POST", HOLDS, 400, j({"amountUsdCents": 1, "idempotencyKey": "k"})),
    Case("holds-no-key", "POST", HOLDS, 400, j({"agentId": "h1", "amountUsdCents": 1})),
    Case("holds-no-amount", "POST", HOLDS, 400, j({"agentId": "h1", "idempotencyKey": "k"})),
    Case("holds-amount-string", "POST", HOLDS, 400,
         j({"agentId": "h1", "amountUsdCents": "1", "idempotencyKey": "k"})),
    Case("holds-amount-negative", "POST", HOLDS, 400,
         j({"agentId": "h1", "amountUsdCents": -1, "idempotencyKey": "k"})),
    Case("holds-amount-absurd", "POST", HOLDS, 400,
         raw('{"agentId": "h1", "amountUsdCents": 1e13, "idempotencyKey": "k"}')),
    Case("holds-ttl-over-24h", "POST", HOLDS, 400,
         j({"agentId": "h1", "amountUsdCents": 1, "idempotencyKey": "k", "ttlMs": 86_400_001})),
    Case("holds-ttl-zero", "POST", HOLDS, 400,
         j({"agentId": "h1", "amountUsdCents": 1, "idempotencyKey": "k", "ttlMs": 0})),
    Case("holds-ttl-fractional", "POST", HOLDS, 400,
         raw('{"agentId": "h1", "amountUsdCents": 1, "idempotencyKey": "k", "ttlMs": 1.5}')),
    Case("holds-unknown-field", "POST", HOLDS, 400,
         j({"agentId": "h1", "amountUsdCents": 1, "idempotencyKey": "k", "cost": 1})),
    Case("holds-key-too-long", "POST", HOLDS, 400,
         j({"agentId": "h1", "amountUsdCents": 1, "idempotencyKey": LONG_ID})),
    Case("holds-unknown-run", "POST", HOLDS, 404,
         j({"agentId": "h1", "amountUsdCents": 1, "idempotencyKey": "k", "runId": "run_nope"})),
    Case("holds-paused-scope", "POST", HOLDS, 409,
         j({"agentId": "a1", "amountUsdCents": 1, "idempotencyKey": "k"})),
    Case("holds-key-other-body", "POST", HOLDS, 409, j({**SEED_HOLD, "amountUsdCents": 2})),
    Case("hold-id-too-long", "GET", f"{HOLDS}/{LONG_ID}", 400),
    Case("hold-unknown", "GET", UNKNOWN_HOLD, 404),
    Case("hold-commit-unknown", "POST", f"{UNKNOWN_HOLD}/commit", 404, j({"costUsdCents": 1})),
    Case("hold-commit-no-cost", "POST", f"{UNKNOWN_HOLD}/commit", 400, j({})),
    Case("hold-commit-cost-string", "POST", f"{UNKNOWN_HOLD}/commit", 400,
         j({"costUsdCents": "1"})),
    Case("hold-commit-unknown-field", "POST", f"{UNKNOWN_HOLD}/commit", 400,
         j({"costUsdCents": 1, "agentId": "x"})),
    Case("hold-commit-malformed", "POST", f"{UNKNOWN_HOLD}/commit", 400, raw("{")),
    Case("hold-release-unknown", "POST", f"{UNKNOWN_HOLD}/release", 404),
    Case("hold-release-id-too-long", "POST", f"{HOLDS}/{LONG_ID}/release", 400),
]

# case id -> what the daemon gets wrong. Empty since 1ce6722 fixed what this file first found:
# deep nesting and huge exponents (500s), `since` parsing and its int64 bounds.
KNOWN_BUGS: dict[str, str] = {}


def test_the_table_is_sound() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert set(KNOWN_BUGS) <= set(ids)
    assert all(400 <= case.status < 500 for case in CASES)


# Routes with nothing to malform (no body, no path or query parameter).
NO_INPUT = {"/healthz", "/readyz", "/metrics", "/openapi.json",
            "/api/governance/audit/head",
            # lenient GETs: an agentId filter, and a limit where anything non-numeric
            # means the default (the POSTs on the same paths have their cases above)
            "/api/tools/approvals", "/api/tools/approvals/grants", "/api/approvals",
            "/api/keys", "/api/tool-policies", "/api/role-policy-overrides",
            "/api/governance/settings",  # its PATCH has cases in test_authorize_errors
            # its one input is the Last-Event-ID header: test_event_stream.py refuses a bad one
            "/api/events", "/api/me"}


def test_the_table_covers_every_route_that_takes_input() -> None:
    """A tripwire: a new route in web.ROUTES must join the table (or NO_INPUT)."""

    def matches(template: str, path: str) -> bool:
        parts, wanted = path.split("?")[0].split("/"), template.split("/")
        return len(parts) == len(wanted) and all(
            w.startswith("{") or w == p for w, p in zip(wanted, parts, strict=True)
        )

    # The gate's and authorize's routes have their own tables.
    cases = [*CASES, *test_guardrails_errors.CASES, *test_authorize_errors.CASES]
    missing = [
        (route.method, route.path) for route in routes.ROUTES
        if route.path not in NO_INPUT and not any(
            case.method == route.method and case.status in (400, 404, 409, 413)
            and matches(route.path, case.path) for case in cases
        )
    ]
    assert missing == [], "routes with no bad-input case in CASES"


def param(case: Case) -> Any:
    marks = [pytest.mark.xfail(reason=KNOWN_BUGS[case.id], strict=True)] if (
        case.id in KNOWN_BUGS) else []
    return pytest.param(case, id=case.id, marks=marks)


# --- helpers ----------------------------------------------------------------------------


async def call(client: TestClient[Any, Any], case: Case) -> tuple[int, str, bytes]:
    headers = {"Content-Type": "application/json"} if case.body is not None else {}
    data = payload_of(case.body)
    async with client.request(case.method, case.path, data=data, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.read()


def error_body(status: int, content_type: str, payload: bytes) -> dict[str, Any]:
    """The one error shape; returns the decoded body."""
    assert content_type == "application/json", (status, content_type, payload[:200])
    body = json.loads(payload)
    assert isinstance(body, dict), body
    assert set(body) == ERROR_KEYS, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["message"], str), body
    return body


async def post_ok(client: TestClient[Any, Any], path: str, body: Any) -> dict[str, Any]:
    data = payload_of(body if isinstance(body, bytes) else j(body))
    async with client.post(path, data=data, headers={"Content-Type": "application/json"}) as r:
        payload = await r.read()
        assert r.status == 200, (path, body, r.status, payload[:300])
        result: dict[str, Any] = json.loads(payload)
        return result


async def seed(client: TestClient[Any, Any]) -> None:
    """A paused cap budget, a soft-capped warn budget, keyed spends and their audit rows."""
    await post_ok(client, BUDGETS, {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100,
                                    "mode": "cap"})
    await post_ok(client, BUDGETS, {"scope": "team", "scopeId": "t1", "limitUsdCents": 500})
    await post_ok(client, SPEND, SEED_SPEND)
    await post_ok(client, SPEND, raw(
        '{"agentId": "a1", "costUsdCents": 0.4, "idempotencyKey": "run-1/evt-2"}'))
    await post_ok(client, SPEND, {"teamId": "t1", "costUsdCents": 450,
                                  "idempotencyKey": "run-1/evt-3"})
    last = await post_ok(client, SPEND, {"agentId": "a1", "teamId": "t1", "costUsdCents": 120,
                                         "idempotencyKey": "run-1/evt-4", "taskId": "task-9"})
    assert last["stop"] is True and last["stopReason"] == "budget_paused:agent"
    async with client.post(RUNS, json={"agentId": "a1", "tenantId": "org"}) as started:
        assert started.status == 201
    async with client.post(HOLDS, json=SEED_HOLD) as held:
        assert held.status == 201
    states = {(s["scope"], s["status"], s["mode"]) for s in last["scopes"]}
    assert states == {("agent", "paused", "cap"), ("team", "soft_capped", "warn")}


# --- the bad-input matrix ------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seeded(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[TestClient[Any, Any], Path]]:
    """One app and one seeded database for the whole matrix: every case must leave it as it
    found it, so nothing is lost by sharing it, and 200 cases need not migrate 200 files."""
    db_path = tmp_path_factory.mktemp("errors") / "clawguard.db"
    cfg = config.Config(storage=config.StorageConfig(path=str(db_path)),
                        auth=config.AuthConfig(mode="none"))
    app = application.create_app(cfg, clock=FakeClock())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await seed(client)
        yield client, db_path


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", [param(case) for case in CASES])
async def test_bad_request_is_a_json_4xx_and_changes_nothing(
    seeded: tuple[TestClient[Any, Any], Path], case: Case
) -> None:
    client, db_path = seeded
    before = dump(db_path)

    status, content_type, payload = await call(client, case)

    assert status == case.status, (case.id, status, payload[:300])
    error_body(status, content_type, payload)
    assert dump(db_path) == before


async def test_every_error_path_has_one_shape_and_the_whole_table_changes_nothing(
    client: TestClient[Any, Any], db_path: Any
) -> None:
    """Datasette style: walk every error path on one database; exactly one error shape."""
    await seed(client)
    before = dump(db_path)

    shapes: set[frozenset[str]] = set()
    codes: set[tuple[int, str]] = set()
    wrong: list[tuple[str, int, int]] = []
    for case in CASES:
        status, content_type, payload = await call(client, case)
        assert content_type == "application/json", (case.id, content_type)
        body = json.loads(payload)
        shapes.add(frozenset(body))
        codes.add((status, body["error"]))
        if status != case.status and case.id not in KNOWN_BUGS:
            wrong.append((case.id, case.status, status))

    assert shapes == {frozenset(ERROR_KEYS)}
    assert wrong == []
    assert dump(db_path) == before
    # Each error code means one status, so a client may switch on either.
    statuses_of: dict[str, set[int]] = {}
    for status, code in codes:
        statuses_of.setdefault(code, set()).add(status)
    assert all(len(statuses) == 1 for statuses in statuses_of.values()), statuses_of


async def test_405_names_the_allowed_methods(client: TestClient[Any, Any]) -> None:
    async with client.put(BUDGETS) as resp:
        assert resp.status == 405
        allowed = resp.headers.get("Allow", "").replace(" ", "").split(",")
        assert set(allowed) == {"GET", "HEAD", "POST"}
    # "evaluate" also matches /api/guardrails/{id}: only its own route's methods are offered
    async with client.options("/api/guardrails/evaluate") as resp:
        assert resp.status == 405 and resp.headers["Allow"] == "POST"
    async with client.put("/api/tools/approvals/grants") as resp:
        assert resp.status == 405 and resp.headers["Allow"] == "GET,HEAD"


async def test_a_spend_past_the_int64_column_is_refused_not_a_500(
    client: TestClient[Any, Any], db_path: Any
) -> None:
    """922 maximal spends fill the 64-bit spent column; the 923rd is a 422, not a 500."""
    await post_ok(client, BUDGETS, {"scope": "agent", "scopeId": "big", "limitUsdCents": 10**12})
    max_spend = {"agentId": "big", "costUsdCents": 10**12}

    async def spend() -> int:
        async with client.post(SPEND, json=max_spend) as resp:
            await resp.read()
            return resp.status

    assert set(await asyncio.gather(*(spend() for _ in range(922)))) == {200}
    before = dump(db_path)

    async with client.post(SPEND, json=max_spend) as resp:
        status, content_type, payload = resp.status, resp.content_type, await resp.read()

    assert status == 422, (status, payload)
    error_body(status, content_type, payload)
    assert dump(db_path) == before


# --- edge values that must be accepted --------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "micros"),
    [
        ("0", 0),
        ("0.0", 0),
        ("-0", 0),
        ("0.0001", 1),
        ("1e-4", 1),  # a JSON float literal, read as a decimal
        ("1E-4", 1),
        ("7", 70_000),  # an integer cost
        ("0.4", 4_000),
        ("0.00025", 3),  # sub-micro: rounded half-up once, at the edge
        ("0.00005", 1),
        ("0.000049", 0),
        ("1e-999999999", 0),
        ("999999999999.9999", 9_999_999_999_999_999),
        ("1000000000000", 10**16),
        ("1e12", 10**16),  # exactly the maximum, as a float literal
    ],
)
async def test_spend_amount_is_accepted_and_stored_exactly(
    client: TestClient[Any, Any], literal: str, micros: int
) -> None:
    await post_ok(client, BUDGETS, {"scope": "agent", "scopeId": "e1", "limitUsdCents": 10**12})
    result = await post_ok(client, SPEND, raw(f'{{"agentId": "e1", "costUsdCents": {literal}}}'))
    assert result["spend"]["costUsdMicros"] == micros
    assert result["spend"]["duplicate"] is False
    [scope] = result["scopes"]
    assert scope["spentUsdMicros"] == micros
    assert scope["spentUsdCents"] == micros // 10_000


async def test_the_maximum_spend_is_accepted_and_one_cent_more_is_refused(
    client: TestClient[Any, Any], db_path: Any
) -> None:
    result = await post_ok(client, SPEND, raw('{"tenantId": "org", "costUsdCents": 1e12}'))
    assert result["spend"]["costUsdMicros"] == 10**16
    before = dump(db_path)
    over = raw('{"tenantId": "org", "costUsdCents": 1000000000001}')
    case = Case("one-cent-over", "POST", SPEND, 400, over)
    status, content_type, payload = await call(client, case)
    assert status == 400
    assert error_body(status, content_type, payload)["details"]
    assert dump(db_path) == before


async def test_limit_edges_are_accepted(client: TestClient[Any, Any]) -> None:
    one = await post_ok(client, BUDGETS, {"scope": "mission", "scopeId": "m1", "limitUsdCents": 1})
    assert one["budget"]["limitUsdCents"] == 1 and one["budget"]["status"] == "active"
    top = await post_ok(client, BUDGETS, {"scope": "tenant", "scopeId": "org",
                                          "limitUsdCents": 10**12, "mode": "cap"})
    assert top["budget"]["limitUsdCents"] == 10**12 and top["budget"]["mode"] == "cap"


async def test_identifiers_at_the_bound_are_accepted(client: TestClient[Any, Any]) -> None:
    made = await post_ok(client, BUDGETS, {"scope": "agent", "scopeId": MAX_ID,
                                           "limitUsdCents": 10})
    assert made["budget"]["scopeId"] == MAX_ID
    spent = await post_ok(client, SPEND, {
        "agentId": MAX_ID, "missionId": "m", "teamId": MAX_ID, "tenantId": MAX_ID,
        "costUsdCents": 1, "idempotencyKey": MAX_ID, "taskId": MAX_ID, "model": MAX_ID,
        "inputTokens": 0, "outputTokens": 2**53,
    })
    assert [s["scopeId"] for s in spent["scopes"]] == [MAX_ID]
    async with client.get(PREFLIGHT, params={"agentId": MAX_ID}) as resp:
        assert resp.status == 200
        assert (await resp.json())["scopes"][0]["scopeId"] == MAX_ID
    resumed = await post_ok(client, resume("agent", MAX_ID), b"")
    assert resumed["budget"]["scopeId"] == MAX_ID
    async with client.delete(f"{BUDGETS}/agent/{MAX_ID}") as resp:
        assert resp.status == 204


async def test_resume_bodies_that_must_be_accepted(client: TestClient[Any, Any]) -> None:
    await post_ok(client, BUDGETS, {"scope": "agent", "scopeId": "r1", "limitUsdCents": 10,
                                    "mode": "cap"})
    await post_ok(client, SPEND, {"agentId": "r1", "costUsdCents": 12})
    for body in (b"", b"  ", j({})):
        resumed = await post_ok(client, resume("agent", "r1"), body)
        assert resumed["budget"]["limitUsdCents"] == 10 and resumed["willRepause"] is True
    resumed = await post_ok(client, resume("agent", "r1"), grace("1"))
    assert resumed["budget"]["limitUsdCents"] == 13  # spent 12 + grace 1
    assert resumed["willRepause"] is False


async def test_an_idempotent_retry_is_not_a_conflict(client: TestClient[Any, Any]) -> None:
    first = await post_ok(client, SPEND, raw(
        '{"agentId": "i1", "costUsdCents": 0.4, "idempotencyKey": "k"}'))
    again = await post_ok(client, SPEND, raw(
        '{"agentId": "i1", "costUsdCents": 0.40, "idempotencyKey": "k"}'))
    assert again["spend"] == {**first["spend"], "duplicate": True}


async def test_a_body_of_exactly_1_mib_is_accepted(client: TestClient[Any, Any]) -> None:
    body = j({"agentId": "big-body", "costUsdCents": 1})
    result = await post_ok(client, SPEND, body + b" " * (MIB - len(body)))
    assert result["spend"]["costUsdMicros"] == 10_000


@pytest.mark.parametrize(
    "query",
    [
        "",
        "since=-5",
        "since=0",
        "agentId=",
        "eventType=bogus",  # an unknown type is ignored, not refused
        "limit=abc",  # zero, negative or non-numeric means the default
        "limit=0",
        "limit=-5",
        "limit=1.5",
        "limit=99999",
        "limit=%C2%B2",  # a Unicode digit is not numeric here
        f"limit={'9' * 5000}",  # past int()'s 4300-digit limit: the maximum, not a 500
    ],
)
async def test_audit_queries_that_must_be_accepted(
    client: TestClient[Any, Any], query: str
) -> None:
    async with client.get(f"{AUDIT}?{query}") as resp:
        assert resp.status == 200, await resp.text()
        assert "audit" in await resp.json()


async def test_a_duplicate_key_is_named(client: TestClient[Any, Any]) -> None:
    async with client.post(SPEND, data=raw(
            '{"agentId": "a1", "costUsdCents": 1, "costUsdCents": 1000}')) as resp:
        body = error_body(resp.status, resp.content_type, await resp.read())
    assert resp.status == 400 and body["details"] == {"key": "costUsdCents"}


async def test_every_405_offers_exactly_its_route_templates_methods(
    client: TestClient[Any, Any]
) -> None:
    """Whatever order the route table adds a template's methods in (aiohttp makes a resource
    per run of adjacent routes), a 405 names all of them and no other template's."""
    methods: dict[str, set[str]] = {}
    for route in routes.ROUTES:
        methods.setdefault(route.path, set()).add(route.method)
    for path, allowed in methods.items():
        expected = allowed | ({"HEAD"} if "GET" in allowed else set())
        async with client.options(re.sub(r"\{\w+\}", "x", path)) as resp:
            assert resp.status == 405, path
            assert set(resp.headers["Allow"].split(",")) == expected, path
