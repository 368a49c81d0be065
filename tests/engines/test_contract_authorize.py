"""The authorize half of the Store contract, on every engine: approval settings, receipts
(append-only, one a key, one outcome), the enforcement check's reads, the reports' SQL."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import psycopg
import pytest

from clawguard.core import approvals, authorize, commands, errors, principals, records
from clawguard.core.gate import settings as gate_settings
from clawguard.runtime import config
from clawguard.store import contract
from clawguard.store.postgres import connection

LEADER = principals.Principal("key_lead", "lead", "leader")
OPERATOR = principals.Principal("key_ops", "ops", "operator")


def receipt(receipt_id: str, decision: authorize.Decision = "ALLOW", key: str | None = None,
            approval_id: str | None = None, value: int = 1, tool: str = "mail.send",
            categories: tuple[str, ...] = ("pii",), **ids: str) -> authorize.NewReceipt:
    keyed = {} if key is None else {"idempotencyKey": key.partition(":")[2]}
    request = authorize.Request.model_validate(
        {"agentId": "a1", "tool": tool, "value": value, **keyed, **ids})
    document = {"decision": decision, "reasons": ["r"], "obligations": {}, "policies": [],
                "decidedBy": "guardrails", "approval": None, "request": request.document()}
    return authorize.NewReceipt(receipt_id, request, decision, approval_id, categories,
                                key, authorize.fingerprint(request), document)


def new_approval(approval_id: str, agent: str = "a1", tool: str = "mail.send",
                 tenant: str | None = None) -> records.NewApproval:
    return records.NewApproval(id=approval_id, tool_name=tool, agent_id=agent,
                               args_summary=None, reason="why", task_id=None, tenant_id=tenant,
                               args_fingerprint="f", requested_by_key="key_exec")


async def test_settings_default_patch_merge_and_move_the_gate(store: contract.Store) -> None:
    assert await store.get_settings() == gate_settings.DEFAULTS
    generation = await store.gate_generation()
    await store.patch_settings({"category_flags": {"pii": True, "financial": True}}, OPERATOR)
    after = await store.patch_settings(
        {"approval_threshold": 3, "category_flags": {"pii": None}}, OPERATOR)
    assert dict(after.category_flags) == {"financial": True}
    assert after.approval_threshold == 3
    assert await store.get_settings() == after
    assert await store.gate_generation() == generation + 2
    [row, _] = await store.list_audit(None, "install", None, 10)
    assert row.action == "settings.updated" and row.details["after"]["approval_threshold"] == 3


async def test_receipts_one_a_key_replayed_or_refused(store: contract.Store) -> None:
    stored, replayed = await store.write_receipt(receipt("rcp_1", key="o:k"))
    assert not replayed and stored.id == "rcp_1"
    again, replayed = await store.write_receipt(receipt("rcp_2", key="o:k"))
    assert replayed and again.id == "rcp_1"
    with pytest.raises(errors.IdempotencyConflict):
        await store.write_receipt(receipt("rcp_3", key="o:k", value=2))
    found = await store.find_receipt("o:k")
    assert found is not None and found.id == "rcp_1" and found.outcome is None
    got = await store.get_receipt("rcp_1")
    assert got is not None and got.document["request"]["value"] == 1
    assert await store.get_receipt("rcp_2") is None
    assert await store.find_receipt("o:other") is None
    audited = await store.list_audit(None, "tool_call", None, 10)
    assert [(a.action, a.details["receiptId"]) for a in audited] == [
        ("authorize.verdict", "rcp_1")]


async def test_racing_writes_of_one_key_make_one_receipt(store: contract.Store) -> None:
    written = await asyncio.gather(
        *(store.write_receipt(receipt(f"rcp_{i}", key="o:race")) for i in range(12)))
    assert len({stored.id for stored, _ in written}) == 1
    assert sum(not replayed for _, replayed in written) == 1
    assert len(await store.list_audit(None, "tool_call", None, 50)) == 1


async def test_an_outcome_is_appended_once_and_only_to_a_pending_receipt(
    store: contract.Store,
) -> None:
    await store.write_receipt(receipt("rcp_p", "PENDING", approval_id="apr_1"))
    await store.write_receipt(receipt("rcp_b", "BLOCK"))
    allow = {"decision": "ALLOW", "approvalId": "apr_1", "approvalStatus": "allow_once",
             "reasons": ["ok"], "obligations": {}}
    deny = {**allow, "decision": "BLOCK", "approvalStatus": "deny"}
    outcomes = await asyncio.gather(
        *(store.append_receipt_outcome("rcp_p", allow if i % 2 else deny) for i in range(6)))
    assert len({o.outcome["decision"] for o in outcomes if o.outcome}) == 1
    first = await store.get_receipt("rcp_p")
    assert first is not None and first.outcome is not None
    assert first.answer()["decision"] == first.outcome["decision"]
    with pytest.raises(errors.Conflict):
        await store.append_receipt_outcome("rcp_b", allow)
    with pytest.raises(errors.NotFound):
        await store.append_receipt_outcome("rcp_none", allow)
    actions = [a.action for a in await store.list_audit(None, "tool_call", None, 10)]
    assert actions.count("authorize.outcome") == 1


async def test_receipts_are_append_only_in_the_database(settings: config.StorageConfig,
                                                        store: contract.Store) -> None:
    await store.write_receipt(receipt("rcp_1"))
    for statement in ("UPDATE receipts SET decision = 'BLOCK'", "DELETE FROM receipts"):
        with pytest.raises(Exception, match="append-only"):
            engines_execute(settings, statement)
    stored = await store.get_receipt("rcp_1")
    assert stored is not None and stored.decision == "ALLOW"


def engines_execute(settings: config.StorageConfig, statement: str) -> None:
    """Run one statement on the store's database behind its back."""
    if settings.url is None:
        conn = sqlite3.connect(settings.location)
        try:
            conn.execute(statement)
        finally:
            conn.close()
        return
    with psycopg.connect(connection.conninfo(settings.location), autocommit=True) as conn:
        conn.execute(statement)


async def test_enforcement_blockers_by_resource(store: contract.Store, clock: Any) -> None:
    rules = config.Config().run_rules()
    plan = {"runs_per_hour": 300, "concurrent_runs": 10}
    started = await store.start_run(commands.RunStart.model_validate(
        {"agentId": "a1", "missionId": "m1", "tenantId": "org"}), plan, rules)
    await store.run_events(started.run.id, [commands.RunEvent.model_validate(
        {"kind": "policy-denied", "signature": "s"})] * 2, rules)
    await store.start_run(commands.RunStart.model_validate({"agentId": "a2", "tenantId": "org"}),
                          plan, rules)
    await store.open_approval(new_approval("apr_a", agent="a1"), 60_000)
    await store.open_approval(new_approval("apr_t", agent="a3", tenant="org"), 60_000)
    await store.open_approval(new_approval("apr_m", agent="a4"), 60_000)
    await store.write_receipt(receipt("rcp_m", "PENDING", approval_id="apr_m", agentId="a4",
                                      missionId="m9"))
    agent = await store.enforcement_blockers("agent", "a1", clock())
    assert [r[0] for r in agent.tripped_runs] == [started.run.id]
    assert [p[0] for p in agent.pending_approvals] == ["apr_a"]
    assert agent.tenant_load is None
    tenant = await store.enforcement_blockers("tenant", "org", clock())
    assert [p[0] for p in tenant.pending_approvals] == ["apr_t"]
    assert tenant.tenant_load is not None
    assert (tenant.tenant_load.running, tenant.tenant_load.started_last_hour) == (1, 2)
    mission = await store.enforcement_blockers("mission", "m9", clock())
    assert [p[0] for p in mission.pending_approvals] == ["apr_m"]
    assert mission.tripped_runs == []
    clock.advance(3_600_000)  # the tripped run's lease and the approvals' expiry are past
    later = await store.enforcement_blockers("agent", "a1", clock())
    assert later.tripped_runs == [] and later.pending_approvals == []


async def test_report_figures_and_stats_are_sql_aggregates(store: contract.Store,
                                                           clock: Any) -> None:
    since = clock()
    for n, (tool, categories) in enumerate([("mail.send", ("external_comm",)),
                                            ("mail.send", ("external_comm",)),
                                            ("db.read", ("pii", "other"))]):
        await store.open_approval(new_approval(f"apr_{n}", tool=tool), 600_000)
        await store.write_receipt(receipt(f"rcp_{n}", "PENDING", approval_id=f"apr_{n}",
                                          tool=tool, categories=categories))
    await store.write_receipt(receipt("rcp_x", "BLOCK"))
    clock.advance(60_000)
    await store.resolve_approval("apr_0", "allow_once", "ann", 0, LEADER)
    await store.resolve_approval("apr_1", "deny", "ann", 0, LEADER)
    figures = await store.report_figures(since, clock())
    assert figures == authorize.ReportFigures(4, 3, 1, 1, 60_000, [("key_lead", 1)])
    assert authorize.report("last_24_hours", figures)["approval_rate"] == 0.5
    by_tool, by_category = await store.approval_stats(since, clock())
    assert by_tool == [("mail.send", 2, 1, 1), ("db.read", 1, 0, 0)]
    assert by_category == [("external_comm", 2, 1), ("other", 1, 0), ("pii", 1, 0)]
    clock.advance(600_000)  # apr_2 expires unswept: rejected already
    assert (await store.report_figures(since, clock())).rejected == 2
    assert (await store.report_figures(clock() + 1, clock())).total == 0


async def test_top_approvers_count_the_voters_of_an_approval_with_stages(
        store: contract.Store, clock: Any) -> None:
    since = clock()
    other = principals.Principal("key_lead2", "lead2", "leader")
    no = principals.Principal("key_lead3", "lead3", "leader")
    for n in range(3):
        staged = new_approval(f"apr_s{n}").model_copy(
            update={"stages": approvals.threshold_stages(2)})
        await store.open_approval(staged, 600_000)
        await store.write_receipt(receipt(f"rcp_s{n}", "PENDING", approval_id=f"apr_s{n}"))
    await store.open_approval(new_approval("apr_one"), 600_000)  # without stages: its decider
    await store.write_receipt(receipt("rcp_one", "PENDING", approval_id="apr_one"))
    allow, deny = approvals.Ballot("allow_once"), approvals.Ballot("deny")
    for voter in (LEADER, other):
        await store.vote_approval("apr_s0", allow, None, voter, False, 0)
    await store.vote_approval("apr_s1", approvals.Ballot("conditional", conditions="c"), None,
                              other, False, 0)
    await store.vote_approval("apr_s1", allow, None, no, False, 0)
    await store.vote_approval("apr_s2", allow, None, LEADER, False, 0)
    await store.vote_approval("apr_s2", deny, None, no, False, 0)  # denied: nobody counted
    await store.resolve_approval("apr_one", "allow_once", "ann", 0, no)
    figures = await store.report_figures(since, clock())
    assert figures.approved == 3
    assert figures.top_approvers == [("key_lead2", 2), ("key_lead3", 2), ("key_lead", 1)]


async def test_authorize_reads_the_chain_and_the_generation_at_once(
    store: contract.Store,
) -> None:
    ids = commands.ScopeIds.model_validate({"agentId": "a1", "teamId": "t1"})
    assert await store.authorize_reads(ids) == ([], await store.gate_generation())
    for body in ({"scope": "agent", "scopeId": "a1", "limitUsdCents": 5, "mode": "cap"},
                 {"scope": "team", "scopeId": "t1", "limitUsdCents": 9},
                 {"scope": "team", "scopeId": "t2", "limitUsdCents": 9}):
        await store.set_budget(commands.BudgetSet.model_validate(body), OPERATOR)
    await store.patch_settings({"allow_self_approval": True}, OPERATOR)
    scopes, generation = await store.authorize_reads(ids)
    assert scopes == await store.scope_states(ids)
    assert [(s.scope, s.scope_id) for s in scopes] == [("agent", "a1"), ("team", "t1")]
    assert generation == await store.gate_generation()
