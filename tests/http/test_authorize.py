"""Authorize over HTTP: each verdict and what decided it, approvals, idempotency, receipts,
the approval settings, the enforcement check and the reports."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

AUTHORIZE = "/api/governance/authorize"
SETTINGS = "/api/governance/settings"
RECEIPTS = "/api/governance/receipts"
CHECK = "/api/governance/enforcement/check"
REPORT = "/api/governance/report"
STATS = "/api/governance/approval-stats"
TOOLS = "/api/tools/approvals"

Client = TestClient[Any, Any]


async def ok(client: Client, method: str, path: str, body: Any = None, status: int = 200
             ) -> Any:
    async with client.request(method, path, json=body) as resp:
        payload = await resp.json()
        assert resp.status == status, (path, resp.status, payload)
        return payload


async def setup_tool(client: Client, name: str = "mail.send",
                     categories: tuple[str, ...] = ("external_comm",),
                     rules: list[dict[str, Any]] | None = None, max_kb: int | None = None
                     ) -> dict[str, Any]:
    """A registered, allowed tool and a guardrail over it; the guardrail as created."""
    await ok(client, "POST", "/api/tools", {"name": name, "categories": list(categories)}, 201)
    restrictions = {} if max_kb is None else {"restrictions": {"max_response_size_kb": max_kb}}
    await ok(client, "POST", "/api/tool-policies",
             {"tool_name": name, "allowed": True, **restrictions}, 201)
    rules = rules or [{"tool": name, "decision": "ALLOW"}]
    policy: dict[str, Any] = await ok(
        client, "POST", "/api/guardrails",
        {"name": name.replace(".", "-") + "-policy", "rules": rules}, 201)
    return policy


async def authorize(client: Client, status: int = 200, **body: Any) -> Any:
    return await ok(client, "POST", AUTHORIZE,
                    {"agentId": "a1", "tool": "mail.send", "waitMs": 0, **body}, status)


# --- the approval settings ---------------------------------------------------------------


async def test_settings_default_then_patch_merges_flags_and_is_audited(client: Client) -> None:
    assert await ok(client, "GET", SETTINGS) == {
        "require_approval_for_external_comm": False, "require_approval_for_public_writes": False,
        "require_approval_for_permission_changes": False, "allow_self_approval": False,
        "approval_threshold": 1, "category_flags": {}}
    await ok(client, "PATCH", SETTINGS, {"category_flags": {"financial": True, "pii": True}})
    patched = await ok(client, "PATCH", SETTINGS, {
        "require_approval_for_external_comm": True, "approval_threshold": 2,
        "category_flags": {"pii": None, "other": False}})
    assert patched["category_flags"] == {"financial": True, "other": False}
    assert patched["approval_threshold"] == 2
    assert patched["require_approval_for_external_comm"] is True
    assert await ok(client, "GET", SETTINGS) == patched
    audit = await ok(client, "GET", "/api/governance/audit?eventType=install")
    assert [row["action"] for row in audit["audit"]][:2] == ["settings.updated"] * 2


async def test_settings_refuse_bad_values_by_name(client: Client) -> None:
    for body, status, key in [
        ({"approval_threshold": 0}, 422, "approval_threshold"),
        ({"approval_threshold": "2"}, 400, "approval_threshold"),
        ({"allow_self_approval": "yes"}, 400, "allow_self_approval"),
        ({"category_flags": {"weather": True}}, 400, "category_flags.weather"),
        ({"surprise": True}, 400, "surprise"),
    ]:
        answer = await ok(client, "PATCH", SETTINGS, body, status)
        assert answer["details"]["key"] == key, answer


# --- the verdicts, in the order the checks run ---------------------------------------------


async def test_allow_cites_versions_obligations_and_leaves_a_receipt(client: Client) -> None:
    policy = await setup_tool(client, max_kb=512)
    answer = await authorize(client, args={"to": "x@example.com", "apiKey": "sk-secret"},
                             idempotencyKey="k1")
    assert answer["decision"] == "ALLOW"
    assert answer["obligations"] == {"max_response_size_kb": 512}
    assert answer["policies"] == [{"policyId": policy["id"], "name": "mail-send-policy",
                                   "version": 1}]
    assert "approval" not in answer and answer["receiptId"].startswith("rcp_")
    receipt = await ok(client, "GET", f"{RECEIPTS}/{answer['receiptId']}")
    assert receipt["decision"] == "ALLOW" and receipt["decidedBy"] == "guardrails"
    assert receipt["request"]["args"]["apiKey"] != "sk-secret"  # masked before it is stored
    assert receipt["access"]["decidedBy"] == "tool_policy"
    assert receipt["settings"]["approval_threshold"] == 1
    assert receipt["guardrails"]["matched"][0]["policyVersion"] == 1
    assert receipt["tool"] == {"name": "mail.send", "categories": ["external_comm"],
                               "flagged": []}
    audit = await ok(client, "GET", "/api/governance/audit?eventType=tool_call")
    [row] = audit["audit"]
    assert row["details"]["receiptId"] == answer["receiptId"]


async def test_a_paused_cap_blocks_first(client: Client) -> None:
    await setup_tool(client)
    await ok(client, "POST", "/api/governance/budgets",
             {"scope": "team", "scopeId": "t1", "limitUsdCents": 1, "mode": "cap"})
    await ok(client, "POST", "/api/governance/spend", {"teamId": "t1", "costUsdCents": 2})
    answer = await authorize(client, teamId="t1", tool="not.registered")
    assert answer["decision"] == "BLOCK" and answer["reasons"] == ["budget_paused:team"]


async def test_a_tripped_or_ended_run_blocks_and_an_unknown_one_is_404(client: Client) -> None:
    await setup_tool(client)
    run = (await ok(client, "POST", "/api/governance/runs", {"agentId": "a1"}, 201))["run"]
    assert (await authorize(client, runId=run["id"]))["decision"] == "ALLOW"
    await ok(client, "POST", f"/api/governance/runs/{run['id']}/events",
             [{"kind": "policy-denied", "signature": "s"}] * 2)
    tripped = await authorize(client, runId=run["id"])
    assert tripped["decision"] == "BLOCK" and tripped["reasons"] == ["circuit_break"]
    other = (await ok(client, "POST", "/api/governance/runs", {"agentId": "a1"}, 201))["run"]
    await ok(client, "POST", f"/api/governance/runs/{other['id']}/end")
    ended = await authorize(client, runId=other["id"])
    assert ended["reasons"] == ["run_ended"]
    await authorize(client, status=404, runId="run_nope")


async def test_access_and_guardrail_refusals_block_with_their_reasons(client: Client) -> None:
    await setup_tool(client, rules=[{"tool": "mail.send", "decision": "ALLOW", "max_value": 10}])
    unknown = await authorize(client, tool="shell.exec")
    assert unknown["decision"] == "BLOCK"
    assert "not in the tool registry" in unknown["reasons"][0]
    over = await authorize(client, value=11)
    assert over["decision"] == "BLOCK"
    assert any("exceeds max_value" in reason for reason in over["reasons"])
    assert (await authorize(client, value=10))["decision"] == "ALLOW"


# --- ALERT: approvals, grants, settings ---------------------------------------------------


async def test_a_flagged_category_opens_an_approval_and_the_outcome_is_appended(
    client: Client,
) -> None:
    await setup_tool(client)
    await ok(client, "PATCH", SETTINGS, {"require_approval_for_external_comm": True,
                                         "approval_threshold": 2})
    pending = await authorize(client, idempotencyKey="send-1")
    assert pending["decision"] == "PENDING"
    approval = pending["approval"]
    assert approval["status"] == "pending"
    assert approval["stages"] == [{"name": "approval", "gates": [{"count": 2, "votes": []}],
                                   "status": "pending"}]
    assert any("external_comm" in reason for reason in pending["reasons"])
    for who in ("ann", "bob"):  # the threshold's two votes (auth off: told apart by name)
        await ok(client, "POST", f"{TOOLS}/{approval['approvalId']}/resolve",
                 {"decision": "allow_once", "resolvedBy": who})
    replay = await authorize(client, idempotencyKey="send-1")
    assert replay["decision"] == "ALLOW" and replay["receiptId"] == pending["receiptId"]
    assert replay["approval"]["status"] == "approved"
    [gate] = replay["approval"]["stages"][0]["gates"]
    assert [vote["keyName"] for vote in gate["votes"]] == ["ann", "bob"]
    again = await authorize(client, idempotencyKey="send-1")
    assert again == replay
    receipt = await ok(client, "GET", f"{RECEIPTS}/{pending['receiptId']}")
    assert receipt["decision"] == "PENDING"  # the verdict given stays as it was
    assert receipt["outcome"]["decision"] == "ALLOW"
    assert receipt["approvalNow"]["status"] == "approved"
    actions = [row["action"] for row in
               (await ok(client, "GET", "/api/governance/audit?eventType=tool_call"))["audit"]]
    assert actions == ["authorize.outcome", "authorize.verdict"]


async def test_a_denied_approval_blocks_and_a_waiting_call_hears_it(client: Client) -> None:
    await setup_tool(client, rules=[{"tool": "mail.send", "decision": "ALERT", "approvals": [
        {"name": "finance", "gates": [{"count": 1}]}]}])
    waiting = asyncio.create_task(authorize(client, waitMs=10_000))
    for _ in range(200):
        queue = (await ok(client, "GET", TOOLS))["approvals"]
        if queue:
            break
        await asyncio.sleep(0.01)
    [row] = queue
    await ok(client, "POST", f"{TOOLS}/{row['id']}/resolve",
             {"decision": "deny", "resolvedBy": "ann", "comments": "not today"})
    answer = await waiting
    assert answer["decision"] == "BLOCK"
    [stage] = answer["approval"]["stages"]
    assert stage["name"] == "finance" and stage["status"] == "deny"
    [gate] = stage["gates"]
    assert gate["count"] == 1 and [(v["keyName"], v["decision"], v["comments"])
                                   for v in gate["votes"]] == [("ann", "deny", "not today")]


TWO_STAGES = [{"name": "finance", "gates": [{"count": 2}]},
              {"name": "security", "gates": [{"count": 1}]}]


async def vote(client: Client, approval_id: str, who: str, decision: str, **extra: Any
               ) -> Any:
    return await ok(client, "POST", f"{TOOLS}/{approval_id}/resolve",
                    {"decision": decision, "resolvedBy": who, **extra})


async def test_a_rule_with_two_stages_opens_them_and_their_votes_decide_the_key(
    client: Client,
) -> None:
    await setup_tool(client, rules=[
        {"tool": "mail.send", "decision": "ALERT", "approvals": TWO_STAGES}])
    pending = await authorize(client, idempotencyKey="two")
    assert pending["decision"] == "PENDING"
    approval_id = pending["approval"]["approvalId"]
    opened = (await ok(client, "GET", f"{TOOLS}/{approval_id}"))["approval"]
    assert [(s["name"], [g["count"] for g in s["gates"]], s["status"])
            for s in opened["stages"]] == [("finance", [2], "pending"),
                                            ("security", [1], "pending")]
    await vote(client, approval_id, "ann", "allow_once")
    await vote(client, approval_id, "bob", "allow_once")
    # the first stage is approved; the second still waits: the key still answers PENDING
    assert (await authorize(client, idempotencyKey="two"))["decision"] == "PENDING"
    await vote(client, approval_id, "cat", "allow_once")
    answer = await authorize(client, idempotencyKey="two")
    assert answer["decision"] == "ALLOW" and answer["receiptId"] == pending["receiptId"]
    assert answer["approval"]["status"] == "approved" and answer["obligations"] == {}
    assert [s["status"] for s in answer["approval"]["stages"]] == ["approved", "approved"]
    assert [v["keyName"] for s in answer["approval"]["stages"] for g in s["gates"]
            for v in g["votes"]] == ["ann", "bob", "cat"]
    receipt = await ok(client, "GET", f"{RECEIPTS}/{pending['receiptId']}")
    assert receipt["outcome"]["decision"] == "ALLOW"
    assert len(receipt["approvalNow"]["stages"]) == 2


async def test_a_conditional_approval_makes_its_conditions_the_obligations(
    client: Client,
) -> None:
    await setup_tool(client, max_kb=64, rules=[
        {"tool": "mail.send", "decision": "ALERT", "approvals": [{"gates": [{"count": 2}]}]}])
    pending = await authorize(client, idempotencyKey="cond")
    approval_id = pending["approval"]["approvalId"]
    await vote(client, approval_id, "ann", "conditional", conditions="no attachments")
    await vote(client, approval_id, "bob", "conditional", conditions="bcc legal")
    answer = await authorize(client, idempotencyKey="cond")
    assert answer["decision"] == "ALLOW"
    assert answer["obligations"] == {"max_response_size_kb": 64,
                                     "conditions": ["no attachments", "bcc legal"]}


async def test_sticky_false_on_the_rule_is_the_approval_s_sticky(client: Client) -> None:
    await setup_tool(client, rules=[{"tool": "mail.send", "decision": "ALERT", "sticky": False}])
    pending = await authorize(client)
    approval_id = pending["approval"]["approvalId"]
    assert (await ok(client, "GET", f"{TOOLS}/{approval_id}"))["approval"]["sticky"] is False
    await vote(client, approval_id, "ann", "allow_always")
    assert (await ok(client, "GET", f"{TOOLS}/grants"))["grants"] == []
    assert (await authorize(client))["decision"] == "PENDING"


# --- estimates: a hold per ALLOW --------------------------------------------------------------


async def test_an_estimate_holds_on_allow_once_per_key_and_blocks_when_it_cannot_fit(
    client: Client,
) -> None:
    await setup_tool(client)
    await ok(client, "POST", "/api/governance/budgets",
             {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100, "mode": "cap"})
    first = await authorize(client, idempotencyKey="h1", estimateUsdCents=60)
    assert first["decision"] == "ALLOW" and first["holdId"].startswith("hld_")
    assert await authorize(client, idempotencyKey="h1", estimateUsdCents=60) == first
    hold = await ok(client, "GET", f"/api/governance/holds/{first['holdId']}")
    assert hold["hold"]["status"] == "held" and hold["hold"]["amountUsdMicros"] == 600_000
    # 60 held of 100: another 60 cannot be held, so the step may not run
    refused = await authorize(client, idempotencyKey="h2", estimateUsdCents=60)
    assert refused["decision"] == "BLOCK" and "holdId" not in refused
    assert refused["reasons"][-1] == "budget_exhausted:agent"
    receipt = await ok(client, "GET", f"{RECEIPTS}/{refused['receiptId']}")
    assert receipt["decidedBy"] == "budget" and receipt["holdId"] is None
    assert receipt["reasons"][-1] == "budget_exhausted:agent"
    # committed at its actual cost, the hold frees the rest
    await ok(client, "POST", f"/api/governance/holds/{first['holdId']}/commit",
             {"costUsdCents": 10})
    assert (await authorize(client, estimateUsdCents=60))["decision"] == "ALLOW"
    # without an estimate, no hold
    assert "holdId" not in await authorize(client)


async def test_an_approved_alert_holds_its_estimate_when_its_outcome_is_appended(
    client: Client,
) -> None:
    await setup_tool(client, rules=[{"tool": "mail.send", "decision": "ALERT"}])
    await ok(client, "POST", "/api/governance/budgets",
             {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100, "mode": "cap"})
    fits = await authorize(client, idempotencyKey="e1", estimateUsdCents=70)
    too_much = await authorize(client, idempotencyKey="e2", estimateUsdCents=70)
    assert fits["decision"] == too_much["decision"] == "PENDING" and "holdId" not in fits
    for pending in (fits, too_much):
        await vote(client, pending["approval"]["approvalId"], "ann", "allow_once")
    allowed = await authorize(client, idempotencyKey="e1", estimateUsdCents=70)
    assert allowed["decision"] == "ALLOW" and allowed["holdId"].startswith("hld_")
    assert await authorize(client, idempotencyKey="e1", estimateUsdCents=70) == allowed
    blocked = await authorize(client, idempotencyKey="e2", estimateUsdCents=70)
    assert blocked["decision"] == "BLOCK" and "holdId" not in blocked
    assert blocked["reasons"][-1] == "budget_exhausted:agent"


async def test_a_sticky_grant_satisfies_an_alert_unless_a_rule_says_sticky_false(
    client: Client,
) -> None:
    await setup_tool(client, rules=[{"tool": "mail.send", "decision": "ALERT"}])
    first = await authorize(client)
    await ok(client, "POST", f"{TOOLS}/{first['approval']['approvalId']}/resolve",
             {"decision": "allow_always"})
    granted = await authorize(client)
    assert granted["decision"] == "ALLOW" and "approval" not in granted
    assert any("sticky grant" in reason for reason in granted["reasons"])
    await ok(client, "POST", "/api/guardrails", {"name": "no-sticky", "rules": [
        {"tool": "mail.send", "decision": "ALERT", "sticky": False}]}, 201)
    strict = await authorize(client)
    assert strict["decision"] == "PENDING"


async def test_a_block_is_never_turned_into_allow_by_a_grant(client: Client) -> None:
    await setup_tool(client, rules=[{"tool": "mail.send", "decision": "ALERT", "max_value": 5}])
    first = await authorize(client, value=1)
    await ok(client, "POST", f"{TOOLS}/{first['approval']['approvalId']}/resolve",
             {"decision": "allow_always"})
    assert (await authorize(client, value=1))["decision"] == "ALLOW"
    assert (await authorize(client, value=6))["decision"] == "BLOCK"


async def test_an_idempotency_key_answers_one_receipt_and_refuses_another_body(
    client: Client,
) -> None:
    await setup_tool(client)
    first = await authorize(client, idempotencyKey="k")
    second = await authorize(client, idempotencyKey="k", waitMs=5)
    assert second == first
    conflict = await authorize(client, status=409, idempotencyKey="k", value=3)
    assert conflict["error"] == "idempotency_conflict"
    report = await ok(client, "GET", REPORT)
    assert report["total_executions"] == 1


# --- receipts reconstruct their verdict -------------------------------------------------------


async def test_the_cited_versions_reevaluate_to_the_same_decision_after_a_change(
    client: Client,
) -> None:
    policy = await setup_tool(client, rules=[
        {"tool": "mail.send", "decision": "ALLOW", "max_value": 100}])
    answer = await authorize(client, value=50, connector="smtp")
    assert answer["decision"] == "ALLOW"
    await ok(client, "PATCH", f"/api/guardrails/{policy['id']}",
             {"rules": [{"tool": "mail.send", "decision": "ALLOW", "max_value": 10}]})
    assert (await authorize(client, value=50, connector="smtp"))["decision"] == "BLOCK"

    receipt = await ok(client, "GET", f"{RECEIPTS}/{answer['receiptId']}")
    cited = [await ok(client, "GET", f"/api/guardrails/{p['policyId']}?version={p['version']}")
             for p in receipt["policies"]]
    request = receipt["request"]
    replayed = await ok(client, "POST", "/api/guardrails/evaluate", {
        "action": {"tool": request["tool"], "connector": request["connector"],
                   "value": request["value"]},
        "policies": [{"name": p["name"], "rules": p["rules"]} for p in cited],
        "principal": {"agentId": request["agentId"]}})
    assert replayed["decision"] == receipt["guardrails"]["decision"] == "ALLOW"


# --- the enforcement check and the reports --------------------------------------------------------


async def test_enforcement_check_lists_each_kind(client: Client) -> None:
    await setup_tool(client, rules=[{"tool": "mail.send", "decision": "ALERT"}])
    clear = await ok(client, "GET", f"{CHECK}?resourceType=agent&resourceId=a1")
    assert clear == {"allowed": True, "resourceType": "agent", "resourceId": "a1",
                     "blocking": []}
    await ok(client, "POST", "/api/governance/budgets",
             {"scope": "agent", "scopeId": "a1", "limitUsdCents": 1, "mode": "cap"})
    await ok(client, "POST", "/api/governance/spend", {"agentId": "a1", "costUsdCents": 1})
    run = (await ok(client, "POST", "/api/governance/runs",
                    {"agentId": "a1", "tenantId": "org", "missionId": "m1"}, 201))["run"]
    await ok(client, "POST", f"/api/governance/runs/{run['id']}/events",
             [{"kind": "policy-denied", "signature": "s"}] * 2)
    await ok(client, "POST", "/api/governance/budgets",
             {"scope": "agent", "scopeId": "a2", "limitUsdCents": 100, "mode": "cap"})
    pending = await authorize(client, agentId="a2", missionId="m1")
    assert pending["decision"] == "PENDING"
    blocked = await ok(client, "GET", f"{CHECK}?resourceType=agent&resourceId=a1")
    assert blocked["allowed"] is False
    assert [b["kind"] for b in blocked["blocking"]] == ["budget_paused", "run_tripped"]
    mission = await ok(client, "GET", f"{CHECK}?resourceType=mission&resourceId=m1")
    assert [b["kind"] for b in mission["blocking"]] == ["run_tripped", "approval_pending"]
    await ok(client, "PATCH", "/api/tenants/org/quota", {"concurrent_runs": 1})
    await ok(client, "POST", "/api/governance/runs", {"agentId": "a3", "tenantId": "org"}, 201)
    tenant = await ok(client, "GET", f"{CHECK}?resourceType=tenant&resourceId=org")
    assert [(b["kind"], b.get("key")) for b in tenant["blocking"]] == [
        ("run_tripped", None), ("quota_exhausted", "concurrent_runs")]


async def test_report_and_approval_stats_count_verdicts_and_approvals(
    client: Client, clock: Any,
) -> None:
    await setup_tool(client, rules=[{"tool": "mail.send", "decision": "ALERT"}])
    await setup_tool(client, name="db.read", categories=("pii", "other"),
                     rules=[{"tool": "db.read", "decision": "ALERT"}])
    ids = [(await authorize(client, tool=tool))["approval"]["approvalId"]
           for tool in ("mail.send", "mail.send", "db.read", "db.read")]
    await authorize(client, tool="nope")  # a BLOCK: counted, not gated
    clock.advance(120_000)
    await ok(client, "POST", f"{TOOLS}/{ids[0]}/resolve", {"decision": "allow_once"})
    await ok(client, "POST", f"{TOOLS}/{ids[1]}/resolve", {"decision": "deny"})
    await ok(client, "POST", f"{TOOLS}/{ids[2]}/resolve", {"decision": "allow_always"})
    report = await ok(client, "GET", f"{REPORT}?period=last_24_hours")
    assert report == {
        "period": "last_24_hours", "total_executions": 5, "gated_executions": 4,
        "approved": 2, "rejected": 1, "approval_rate": 0.667,
        "avg_approval_time_minutes": 2.0,
        "top_approvers": [{"user_id": "none", "approvals": 2}]}  # auth off: the anonymous key
    stats = await ok(client, "GET", STATS)
    assert stats["by_tool"] == [
        {"tool_name": "db.read", "total": 2, "approved": 1, "rejected": 0},
        {"tool_name": "mail.send", "total": 2, "approved": 1, "rejected": 1}]
    assert stats["by_category"] == {"external_comm": {"total": 2, "approved": 1},
                                    "other": {"total": 2, "approved": 1},
                                    "pii": {"total": 2, "approved": 1}}
    clock.advance(2 * 86_400_000)
    later = await ok(client, "GET", f"{REPORT}?period=last_24_hours")
    assert later["total_executions"] == 0 and later["approval_rate"] is None


async def test_verdicts_are_counted_by_decision_once(client: Client) -> None:
    await setup_tool(client)
    await authorize(client, idempotencyKey="m1")
    await authorize(client, idempotencyKey="m1")
    await authorize(client, tool="nope")
    text = await (await client.get("/metrics")).text()
    assert 'clawguard_verdicts_total{decision="ALLOW"} 1.0' in text
    assert 'clawguard_verdicts_total{decision="BLOCK"} 1.0' in text
