"""The Store contract, run on every engine: the same calls must give the same answers.

Each test gets a fresh store of each engine (a SQLite file in tmp_path, an
empty PostgreSQL schema) driven by the same fake clock; nothing here names
an engine but the fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from clawguard.core import (
    approvals,
    audit,
    budgets,
    commands,
    errors,
    gate,
    guardrails,
    principals,
    records,
    runs,
)
from clawguard.core import ledger as ledger_rules
from clawguard.runtime import config
from clawguard.services import checkpoints
from clawguard.services import gate as gate_service
from clawguard.store import contract, engines
from clawguard.store.postgres import connection as pg_connection

LEADER = principals.Principal("key_lead", "lead", "leader")
REQUESTER = principals.Principal("key_exec", "exec", "executor")
OPERATOR = principals.Principal("key_ops", "ops", "operator")


def ledger(settings: config.StorageConfig) -> list[tuple[str, int, int]]:
    return engines.ledger(settings)[0]


def budget(scope: str, scope_id: str, limit: int, mode: str | None = None
           ) -> commands.BudgetSet:
    body: dict[str, Any] = {"scope": scope, "scopeId": scope_id, "limitUsdCents": limit}
    if mode is not None:
        body["mode"] = mode
    return commands.BudgetSet.model_validate(body)


def spend(cents: float | int, key: str | None = None, **ids: str) -> commands.SpendRequest:
    body: dict[str, Any] = {"costUsdCents": Decimal(str(cents)), **(ids or {"agentId": "a1"})}
    if key is not None:
        body["idempotencyKey"] = key
    return commands.SpendRequest.model_validate(body)


async def charge(
    store: contract.Store, request: commands.SpendRequest, owner: str = REQUESTER.key_id
) -> records.SpendCharged:
    key = budgets.ledger_key(owner, request.idempotency_key)
    return await store.record_spend(request, budgets.fingerprint(request), key)


def new_approval(approval_id: str, agent: str = "a1", tool: str = "shell",
                 requested_by: str | None = REQUESTER.key_id,
                 args: dict[str, Any] | None = None) -> records.NewApproval:
    args = {"cmd": "ls"} if args is None else args
    return records.NewApproval(id=approval_id, tool_name=tool, agent_id=agent,
                               args_summary=approvals.json_text(args), reason="why",
                               task_id="t1", tenant_id=None,
                               args_fingerprint=approvals.args_fingerprint(args),
                               requested_by_key=requested_by)


def chain_ok(settings: config.StorageConfig) -> audit.Verdict:
    return audit.verify(engines.audit_chain(settings))


# --- budgets ------------------------------------------------------------------------------


async def test_budgets_set_list_resume_delete(store: contract.Store, clock: Any,
                                              settings: config.StorageConfig) -> None:
    made = await store.set_budget(budget("agent", "a1", 100, "cap"), OPERATOR)
    assert (made.status, made.mode, made.limit_usd_cents) == ("active", "cap", 100)
    clock.advance(1)
    await store.set_budget(budget("team", "t1", 50), OPERATOR)
    listed = await store.list_budgets(None, None)
    assert [(b.scope, b.mode) for b in listed] == [("team", "warn"), ("agent", "cap")]
    assert [b.scope for b in await store.list_budgets("agent", None)] == ["agent"]
    kept = await store.set_budget(budget("agent", "a1", 10), OPERATOR)
    assert kept.mode == "cap"  # omitting mode keeps it
    await charge(store, spend(10))
    paused = (await store.list_budgets("agent", None))[0]
    assert paused.status == "paused"
    resumed = await store.resume_budget("agent", "a1", 5, OPERATOR)
    assert (resumed.budget.limit_usd_cents, resumed.budget.status) == (15, "active")
    assert resumed.will_repause is False
    resumed = await store.resume_budget("agent", "a1", None, OPERATOR)
    assert resumed.budget.status == "active"
    with pytest.raises(errors.NotFound):
        await store.resume_budget("mission", "nope", None, OPERATOR)
    await store.delete_budget("agent", "a1", OPERATOR)
    with pytest.raises(errors.NotFound):
        await store.delete_budget("agent", "a1", OPERATOR)
    assert [b.scope for b in await store.list_budgets(None, None)] == ["team"]
    actions = [e.action for e in await store.list_audit(None, None, None, 100)]
    assert actions[0] == "budget.deleted" and "budget.paused" in actions
    assert chain_ok(settings).ok


async def test_a_budget_keeps_its_tenant_until_one_is_given(store: contract.Store) -> None:
    def with_tenant(limit: int, **tenant: str | None) -> commands.BudgetSet:
        return commands.BudgetSet.model_validate(
            {"scope": "team", "scopeId": "t1", "limitUsdCents": limit, **tenant})

    made = await store.set_budget(with_tenant(100, tenantId="org"), OPERATOR)
    assert made.tenant_id == "org"
    kept = await store.set_budget(with_tenant(200), OPERATOR)  # omitted: kept
    assert (kept.tenant_id, kept.limit_usd_cents) == ("org", 200)
    moved = await store.set_budget(with_tenant(200, tenantId="org2"), OPERATOR)
    assert moved.tenant_id == "org2"
    await charge(store, spend(1, teamId="t1"))
    resumed = await store.resume_budget("team", "t1", None, OPERATOR)
    assert resumed.budget.tenant_id == "org2"
    assert [b.tenant_id for b in await store.list_budgets(None, None)] == ["org2"]
    cleared = await store.set_budget(with_tenant(200, tenantId=None), OPERATOR)
    assert cleared.tenant_id is None
    assert [b.tenant_id for b in await store.list_budgets("team", None)] == [None]
    [last, *_] = await store.list_audit(None, "budget", None, 10)
    assert (last.details["tenantId"], last.details["previousTenantId"]) == (None, "org2")


async def test_budget_changes_name_the_key_that_made_them(store: contract.Store) -> None:
    await store.set_budget(budget("agent", "a1", 100, "cap"), OPERATOR)
    await store.resume_budget("agent", "a1", None, LEADER)
    await store.delete_budget("agent", "a1", principals.ANONYMOUS)
    rows = {e.action: e.details for e in await store.list_audit(None, "budget", None, 10)}
    who = {action: (d["keyId"], d["keyName"], d["role"]) for action, d in rows.items()}
    assert who == {"budget.set": ("key_ops", "ops", "operator"),
                   "budget.resumed": ("key_lead", "lead", "leader"),
                   "budget.deleted": ("none", "anonymous", "admin")}


# --- spends -------------------------------------------------------------------------------


async def test_spend_charges_every_scope_crosses_once_and_pauses(
    store: contract.Store, settings: config.StorageConfig
) -> None:
    await store.set_budget(budget("agent", "a1", 10, "cap"), OPERATOR)
    await store.set_budget(budget("tenant", "org", 1000), OPERATOR)
    crossed = []
    for _ in range(6):
        charged = await charge(store, spend(2, agentId="a1", missionId="m1", tenantId="org"))
        crossed.append([s.crossed for s in charged.scopes])
        assert [s.scope for s in charged.scopes] == ["agent", "tenant"]
    assert crossed == [["none", "none"], ["none", "none"], ["none", "none"],
                       ["soft", "none"], ["hard", "none"], ["none", "none"]]
    assert charged.scopes[0].status == "paused" and charged.scopes[0].spent_usd_micros == 120_000
    assert budgets.stop_reason(charged.scopes) == "budget_paused:agent"
    ids = commands.ScopeIds.model_validate({"agentId": "a1", "tenantId": "org"})
    states = await store.scope_states(ids)
    assert [(s.scope, s.spent_usd_cents) for s in states] == [("agent", 12), ("tenant", 12)]
    actions = [e.action for e in await store.list_audit("a1", None, None, 100)]
    assert actions.count("budget.crossed_hard") == 1 and actions.count("budget.paused") == 1
    assert all(spent == charged_sum for _, spent, charged_sum in ledger(settings))


async def test_a_replayed_key_charges_once_and_another_body_is_409(
    store: contract.Store
) -> None:
    await store.set_budget(budget("agent", "a1", 100), OPERATOR)
    first = await charge(store, spend(3, "k1"))
    again = await charge(store, spend(3.0, "k1"))
    assert again.spend == first.spend.model_copy(update={"duplicate": True})
    assert again.scopes == first.scopes
    with pytest.raises(errors.IdempotencyConflict):
        await charge(store, spend(4, "k1"))
    both = await asyncio.gather(*(charge(store, spend(1, "k2")) for _ in range(10)))
    assert sum(not c.spend.duplicate for c in both) == 1
    assert (await store.list_budgets(None, None))[0].spent_usd_micros == 40_000


async def test_concurrent_spends_cross_the_cap_exactly_once(
    store: contract.Store, settings: config.StorageConfig
) -> None:
    await store.set_budget(budget("agent", "a1", 50, "cap"), OPERATOR)
    outcomes = await asyncio.gather(*(charge(store, spend(1, f"s{n}")) for n in range(80)))
    hard = [o for o in outcomes if o.scopes[0].crossed == "hard"]
    assert len(hard) == 1
    assert sorted(o.scopes[0].spent_usd_micros for o in outcomes) == [
        n * 10_000 for n in range(1, 81)]
    assert ledger(settings)[0][1:] == (800_000, 800_000)
    assert chain_ok(settings).ok


async def test_a_spend_that_would_overflow_is_refused_and_writes_nothing(
    store: contract.Store
) -> None:
    await store.set_budget(budget("agent", "a1", 10**12), OPERATOR)
    # The largest spend is 10**16 micros: 922 of them fit below 2**63, the 923rd does not.
    await asyncio.gather(*(charge(store, spend(10**12)) for _ in range(922)))
    with pytest.raises(errors.Unprocessable):
        await charge(store, spend(10**12))
    assert (await store.list_budgets(None, None))[0].spent_usd_micros == 922 * 10**16


# --- approvals ----------------------------------------------------------------------------


async def test_approval_decided_once_and_sticky(store: contract.Store, clock: Any) -> None:
    opened = await store.open_approval(new_approval("apr_1"), 60_000)
    assert opened.grant is None and opened.approval is not None
    assert opened.approval.status == "pending"
    assert [a.id for a in await store.list_pending_approvals(clock(), 10)] == ["apr_1"]
    assert await store.count_pending_approvals(clock()) == 1
    with pytest.raises(errors.Forbidden):
        await store.resolve_approval("apr_1", "allow_once", None, 0, REQUESTER)
    with pytest.raises(errors.NotFound):
        await store.resolve_approval("apr_x", "allow_once", None, 0, LEADER)
    decided = await asyncio.gather(
        *(store.resolve_approval("apr_1", "allow_always", "ann", 0, LEADER) for _ in range(20)),
        return_exceptions=True,
    )
    assert sum(isinstance(d, records.Approval) for d in decided) == 1
    assert all(isinstance(d, (records.Approval, errors.Conflict)) for d in decided)
    row = await store.get_approval("apr_1")
    assert row is not None and (row.status, row.resolved_by) == ("allow_always", "ann")
    sticky = await store.open_approval(new_approval("apr_2"), 60_000)
    assert sticky.approval is None and sticky.grant is not None
    grants = await store.list_grants(clock(), "a1")
    assert [g.id for g in grants] == [sticky.grant.id]
    history = await store.list_history("a1", 10)
    assert [h.action for h in history] == ["allow-always"]
    revoked = await store.revoke_grant(grants[0].id, "ann", LEADER)
    assert revoked.revoked_by == "ann"
    with pytest.raises(errors.Conflict):
        await store.revoke_grant(grants[0].id, "ann", LEADER)
    with pytest.raises(errors.NotFound):
        await store.revoke_grant("grt_none", "ann", LEADER)
    assert await store.list_grants(clock(), None) == []


async def test_a_refused_decision_writes_nothing_and_carries_its_audit_row(
    store: contract.Store, clock: Any, settings: config.StorageConfig
) -> None:
    outsider = principals.Principal("key_out", "outsider", "leader", frozenset({"b"}))
    await store.open_approval(new_approval("apr_1"), 60_000)
    head = await store.audit_head()
    for decider in (REQUESTER, outsider):
        with pytest.raises(errors.Refused) as refused:
            await store.resolve_approval("apr_1", "allow_always", None, 0, decider)
        event = refused.value.event
        assert (event.event_type, event.action, event.agent_id) == (
            "verification", "approval.decision_refused", "a1")
        assert (event.details["keyId"], event.details["role"]) == (
            decider.key_id, decider.role)
    assert await store.audit_head() == head  # the store wrote nothing; services audits it
    await store.resolve_approval("apr_1", "allow_always", None, 0, LEADER)
    [grant] = await store.list_grants(clock(), None)
    with pytest.raises(errors.Refused) as refused:
        await store.revoke_grant(grant.id, None, outsider)
    assert refused.value.event.action == "approval.revoke_refused"
    assert await store.list_grants(clock(), None) == [grant]
    await store.revoke_grant(grant.id, None, LEADER)
    [revoked] = [e for e in await store.list_audit(None, "approval", None, 10)
                 if e.action == "approval.grant_revoked"]
    assert (revoked.details["keyId"], revoked.details["keyName"]) == ("key_lead", "lead")
    assert chain_ok(settings).ok


async def test_pending_pages_newest_first_from_a_cursor_and_only_of_given_agents(
    store: contract.Store, clock: Any
) -> None:
    for n in range(7):
        await store.open_approval(new_approval(f"apr_{n}", agent=f"a{n % 3}"), 60_000)
        if n % 2:  # two rows a millisecond: the id orders them
            clock.advance(1)
    await store.open_approval(new_approval("apr_short", agent="a0"), 1)
    clock.advance(1)  # apr_short is past expiry: in no page
    everything = await store.list_pending_approvals(clock(), 100)
    order = [(a.created_at, a.id) for a in everything]
    assert order == sorted(order, reverse=True) and len(order) == 7
    pages, after = [], None
    while True:
        page = await store.list_pending_approvals(clock(), 3, after)
        pages.append([a.id for a in page])
        if len(page) < 3:
            break
        after = records.PendingKey.of(page[-1])
    assert [i for page in pages for i in page] == [a.id for a in everything]
    assert [len(page) for page in pages] == [3, 3, 1]
    theirs = [a.id for a in everything if a.agent_id in {"a0", "a2"}]
    first = await store.list_pending_approvals(clock(), 2, None, frozenset({"a0", "a2"}))
    rest = await store.list_pending_approvals(clock(), 10, records.PendingKey.of(first[-1]),
                                              frozenset({"a0", "a2"}))
    assert [a.id for a in first + rest] == theirs and len(first) == 2
    assert await store.list_pending_approvals(clock(), 10, None, frozenset()) == []
    await store.resolve_approval(everything[0].id, "deny", None, 0, LEADER)
    assert everything[0].id not in [a.id for a in await store.list_pending_approvals(clock(), 10)]


async def test_decisions_made_together_each_get_their_own_answer(
    store: contract.Store, clock: Any, settings: config.StorageConfig
) -> None:
    # Made at once, these share one batch (PostgreSQL: one transaction, ruled in turn).
    for n in (1, 2, 3):
        await store.open_approval(new_approval(f"apr_{n}"), 60_000)
    answers = await asyncio.gather(
        store.resolve_approval("apr_1", "allow_always", "ann", 0, LEADER),
        store.resolve_approval("apr_1", "deny", "bob", 0, LEADER),  # decided just before
        store.resolve_approval("apr_x", "deny", "bob", 0, LEADER),
        store.resolve_approval("apr_2", "allow_always", "ann", 0, REQUESTER),  # its asker
        store.resolve_approval("apr_3", "deny", "bob", 0, LEADER),
        store.resolve_approval("apr_2", "allow_always", "cat", 0, LEADER),
        return_exceptions=True,
    )
    kinds = [type(a) for a in answers]
    assert kinds == [records.Approval, errors.Conflict, errors.NotFound, errors.Refused,
                     records.Approval, records.Approval]
    assert [(a.id, a.status, a.resolved_by) for a in answers
            if isinstance(a, records.Approval)] == [
        ("apr_1", "allow_always", "ann"), ("apr_3", "deny", "bob"),
        ("apr_2", "allow_always", "cat")]
    for answer in answers:
        if isinstance(answer, records.Approval):
            assert await store.get_approval(answer.id) == answer
    # The later grant of the pair supersedes the earlier one made in the same batch.
    assert [g.approval_id for g in await store.list_grants(clock(), None)] == ["apr_2"]
    history = await store.list_history("a1", 10)
    assert [h.action for h in reversed(history)] == ["allow-always", "deny", "allow-always"]
    resolved = [e.details["approvalId"] for e in await store.list_audit(None, "approval", None, 20)
                if e.action == "approval.resolved"]
    assert list(reversed(resolved)) == ["apr_1", "apr_3", "apr_2"]
    assert chain_ok(settings).ok


async def test_a_new_sticky_grant_supersedes_the_old(store: contract.Store, clock: Any) -> None:
    for n in (1, 2):
        await store.open_approval(new_approval(f"apr_{n}"), 60_000)
    await store.resolve_approval("apr_1", "allow_always", None, 1_000, LEADER)
    clock.advance(2_000)  # the grant expired; a new request asks again
    await store.resolve_approval("apr_2", "allow_always", None, 0, LEADER)
    assert [g.approval_id for g in await store.list_grants(clock(), None)] == ["apr_2"]


async def test_grant_scopes_tool_and_args(store: contract.Store, clock: Any) -> None:
    rm_build = {"cmd": "rm", "args": ["-rf", "build"]}
    rm_root = {"cmd": "rm", "args": ["-rf", "/"]}
    opened = await store.open_approval(new_approval("apr_1", args=rm_build), 60_000)
    assert opened.approval is not None
    assert opened.approval.args_fingerprint == approvals.args_fingerprint(rm_build)
    await store.resolve_approval("apr_1", "allow_always", None, 0, LEADER, "args")
    [grant] = await store.list_grants(clock(), "a1")
    assert (grant.grant_scope, grant.args_fingerprint, grant.args_summary) == (
        "args", approvals.args_fingerprint(rm_build), approvals.json_text(rm_build))
    # The same arguments, keys in another order: let through by the args grant.
    same = await store.open_approval(
        new_approval("apr_2", args={"args": ["-rf", "build"], "cmd": "rm"}), 60_000)
    assert same.approval is None and same.grant is not None and same.grant.id == grant.id
    # Other arguments ask again, and another tool or agent is untouched.
    other = await store.open_approval(new_approval("apr_3", args=rm_root), 60_000)
    assert other.grant is None and other.approval is not None
    assert (await store.open_approval(new_approval("apr_4", agent="a2", args=rm_build),
                                      60_000)).grant is None
    # A tool grant for the pair sits beside the args grant and covers any arguments.
    await store.resolve_approval("apr_3", "allow_always", None, 0, LEADER, "tool")
    grants = await store.list_grants(clock(), "a1")
    assert sorted(g.grant_scope for g in grants) == ["args", "tool"]
    anything = await store.open_approval(new_approval("apr_5", args={"cmd": "x"}), 60_000)
    assert anything.grant is not None and anything.grant.grant_scope == "tool"
    [allowed] = [e for e in await store.list_audit("a1", "approval", None, 100)
                 if e.action == "approval.sticky_allowed" and e.details["grantScope"] == "tool"]
    assert allowed.details["argsSummary"] == '{"cmd":"x"}'
    assert allowed.details["argsFingerprint"] == approvals.args_fingerprint({"cmd": "x"})


async def test_a_new_args_grant_supersedes_only_its_own_arguments(
    store: contract.Store, clock: Any
) -> None:
    for n, cmd in ((1, "a"), (2, "a"), (3, "b")):  # all pending before any is decided
        await store.open_approval(new_approval(f"apr_{n}", args={"cmd": cmd}), 60_000)
    for n in (1, 2, 3):
        await store.resolve_approval(f"apr_{n}", "allow_always", None, 0, LEADER, "args")
    assert sorted(g.approval_id for g in await store.list_grants(clock(), None)) == [
        "apr_2", "apr_3"]


async def test_expiry_is_written_once(store: contract.Store, clock: Any,
                                      settings: config.StorageConfig) -> None:
    await store.open_approval(new_approval("apr_1"), 1_000)
    await store.open_approval(new_approval("apr_2"), 5_000)
    assert not await store.any_approval_due(clock())
    clock.advance(1_000)
    assert await store.any_approval_due(clock())
    with pytest.raises(errors.Conflict):
        await store.resolve_approval("apr_1", "deny", None, 0, LEADER)
    sweeps = await asyncio.gather(*(store.expire_approvals(10) for _ in range(5)))
    expired = [a for sweep in sweeps for a in sweep]
    assert [(a.id, a.status, a.resolved_at) for a in expired] == [
        ("apr_1", "expired", clock() )]
    assert await store.expire_approvals(10) == []
    assert [a.id for a in await store.list_pending_approvals(clock(), 10)] == ["apr_2"]
    actions = [e.action for e in await store.list_audit(None, "approval", None, 100)]
    assert actions.count("approval.expired") == 1
    assert chain_ok(settings).ok


# --- approvals with stages: votes, quorum, waivers -----------------------------------------


def leader(name: str, *groups: str) -> principals.Principal:
    return principals.Principal(f"key_{name}", name, "leader", groups=frozenset(groups) or None)


def staged_approval(approval_id: str, stages: list[dict[str, Any]], sticky: bool = True
                    ) -> records.NewApproval:
    return approvals.new_request(approval_id, "deploy", "a1", {"env": "prod"}, "why", "t1",
                                 None, REQUESTER, approvals.new_stages(stages), sticky)


def ballot(decision: str, conditions: str | None = None) -> approvals.Ballot:
    return approvals.Ballot(decision, None, conditions)  # type: ignore[arg-type]


TWO_STAGES = [{"name": "finance", "gates": [{"group": "finance", "count": 2}]},
              {"name": "security", "gates": [{"group": "security", "count": 1}]}]


async def test_votes_are_kept_stage_by_stage_and_decide_once(
    store: contract.Store, clock: Any, settings: config.StorageConfig
) -> None:
    ann, bob, cat = leader("ann", "finance"), leader("bob", "finance"), leader("cat", "security")
    opened = await store.open_approval(staged_approval("apr_s", TWO_STAGES), 60_000)
    assert opened.approval is not None and opened.approval.stages is not None
    with pytest.raises(errors.Forbidden):  # security does not count in the finance stage
        await store.vote_approval("apr_s", ballot("deny"), None, cat, False, 0)
    with pytest.raises(errors.Refused):  # the key that asked
        await store.vote_approval("apr_s", ballot("allow_always"), None, REQUESTER, False, 0)
    voted = await store.vote_approval("apr_s", ballot("allow_always"), "ann", ann, False, 0)
    assert voted.status == "pending" and voted.resolved_at is None
    with pytest.raises(errors.Conflict):  # one vote per key
        await store.vote_approval("apr_s", ballot("allow_always"), "ann", ann, False, 0)
    await store.vote_approval("apr_s", ballot("allow_always"), "bob", bob, False, 0)
    row = await store.get_approval("apr_s")
    assert row is not None and row.status == "pending" and row.stages is not None
    assert [s.status for s in row.stages] == ["approved", "pending"]
    assert [v.key_id for v in row.stages[0].gates[0].votes] == ["key_ann", "key_bob"]
    [listed] = await store.list_pending_approvals(clock(), 10)
    assert listed == row
    final = await store.vote_approval("apr_s", ballot("allow_always"), "cat", cat, False, 0)
    assert (final.status, final.resolved_by) == ("approved", "cat")
    assert await store.get_approval("apr_s") == final
    assert await store.list_pending_approvals(clock(), 10) == []
    [grant] = await store.list_grants(clock(), "a1")  # every vote was allow_always
    assert (grant.approval_id, grant.grant_scope) == ("apr_s", "tool")
    assert [h.action for h in await store.list_history("a1", 10)] == ["allow-always"]
    actions = [e.action for e in await store.list_audit(None, "approval", None, 100)]
    assert actions.count("approval.voted") == 2 and actions.count("approval.resolved") == 1
    assert chain_ok(settings).ok


async def test_twenty_concurrent_votes_on_a_two_of_n_gate_decide_once(
    store: contract.Store, clock: Any, settings: config.StorageConfig
) -> None:
    leaders = [leader(f"l{n}") for n in range(20)]
    # PostgreSQL: half the votes through a second daemon's store on the same database.
    # (SQLite has one writer, one daemon: its votes queue in that writer.)
    other = engines.open_store(settings, clock) if settings.engine == "postgres" else store
    if other is not store:
        await other.open()
    stores = [store, other] * 10
    try:
        for approval_id, decisions in (("apr_allow", ["allow_once"] * 20),
                                       ("apr_mixed", ["allow_once", "deny"] * 10)):
            await store.open_approval(
                staged_approval(approval_id, [{"gates": [{"count": 2}]}]), 60_000)
            answers = await asyncio.gather(
                *(db.vote_approval(approval_id, ballot(d), who.name, who, False, 0)
                  for db, who, d in zip(stores, leaders, decisions, strict=True)),
                return_exceptions=True,
            )
            await _one_outcome(store, approval_id, leaders, answers)
    finally:
        if other is not store:
            await other.close()
    resolved = [e for e in await store.list_audit(None, "approval", None, 200)
                if e.action == "approval.resolved"]
    assert sorted(e.details["approvalId"] for e in resolved) == ["apr_allow", "apr_mixed"]
    assert chain_ok(settings).ok


async def _one_outcome(store: contract.Store, approval_id: str,
                       voters: list[principals.Principal], answers: list[Any]) -> None:
    assert all(isinstance(a, records.Approval | errors.Conflict) for a in answers)
    taken = [a for a in answers if isinstance(a, records.Approval)]
    finals = [a for a in taken if a.status != "pending"]
    assert len(finals) == 1  # exactly one approval outcome
    row = await store.get_approval(approval_id)
    assert row is not None and row.stages is not None and row.status == finals[0].status
    stored = [v.key_id for v in row.stages[0].gates[0].votes]
    # no vote lost or counted twice: the votes answered 200 are the ones stored, each once
    counted = [who.key_id for who, a in zip(voters, answers, strict=True)
               if isinstance(a, records.Approval)]
    assert sorted(stored) == sorted(counted) and len(set(stored)) == len(stored)
    if approval_id == "apr_allow":
        assert (row.status, len(stored)) == ("approved", 2)


async def test_a_waiver_is_recorded_once_and_votes_survive_a_restart(
    store: contract.Store, clock: Any, settings: config.StorageConfig
) -> None:
    admin = principals.Principal("key_adm", "root", "admin")
    await store.open_approval(staged_approval("apr_w", TWO_STAGES, sticky=False), 60_000)
    await store.vote_approval("apr_w", ballot("conditional", "dry run first"), "ann",
                              leader("ann", "finance"), False, 0)
    await store.close()
    again = engines.open_store(settings, clock)  # a restart in the middle of the quorum
    await again.open()
    try:
        kept = await again.get_approval("apr_w")
        assert kept is not None and kept.stages is not None and kept.sticky is False
        [vote] = kept.stages[0].gates[0].votes
        assert (vote.key_id, vote.decision, vote.conditions) == (
            "key_ann", "conditional", "dry run first")
        waived = await again.waive_approval("apr_w", "ticket SEC-1234", "root", admin)
        assert waived.status == "approved" and waived.waiver is not None
        assert (waived.waiver.reason, waived.waiver.key_id) == ("ticket SEC-1234", "key_adm")
        assert await again.get_approval("apr_w") == waived
        with pytest.raises(errors.Conflict):
            await again.waive_approval("apr_w", "again", "root", admin)
        with pytest.raises(errors.Conflict):
            await again.vote_approval("apr_w", ballot("deny"), "bob", leader("bob", "finance"),
                                      False, 0)
        assert await again.list_grants(clock(), None) == []
        [event] = [e for e in await again.list_audit(None, "approval", None, 100)
                   if e.action == "approval.waived"]
        assert (event.details["reason"], event.details["keyId"]) == ("ticket SEC-1234",
                                                                    "key_adm")
        # a sticky grant of the pair does not satisfy a request that says sticky false
        await again.open_approval(new_approval("apr_g", tool="deploy"), 60_000)
        await again.resolve_approval("apr_g", "allow_always", None, 0, LEADER)
        strict = await again.open_approval(staged_approval("apr_n", TWO_STAGES, False), 60_000)
        assert strict.grant is None and strict.approval is not None
        clock.advance(60_000)
        assert [a.id for a in await again.expire_approvals(10)] == ["apr_n"]
        expired = await again.get_approval("apr_n")
        assert expired is not None and expired.status == "expired"
    finally:
        await again.close()
    assert chain_ok(settings).ok


async def test_history_keys_and_audit_head(store: contract.Store,
                                           settings: config.StorageConfig) -> None:
    record = await store.append_history("a1", "deny", "shell", '{"x":1}')
    assert [h.id for h in await store.list_history(None, 10)] == [record.id]
    assert not await store.has_keys()
    await store.add_key(principals.Principal("key_1", "ops", "operator"), "f" * 64)
    assert await store.has_keys()
    found = await store.find_key("f" * 64, 0)
    assert found is not None and (found.key_id, found.role) == ("key_1", "operator")
    assert await store.find_key("0" * 64, 0) is None
    await store.audit_event(audit.Event("tool_call", "tool.ran", "a1", {"token": "s3cret"}))
    head = await store.audit_head()
    verdict = audit.verify(engines.audit_chain(settings), (head.seq, head.hash))
    assert verdict.ok and verdict.checked == head.seq == 3
    [last] = await store.list_audit("a1", "tool_call", 0, 1)
    assert last.details["token"] != "s3cret"
    assert await store.ready() and await store.writable()


async def test_idempotency_keys_belong_to_the_key_that_spent(store: contract.Store) -> None:
    """Another executor reusing a key neither replays nor blocks the first one's spend."""
    first = await charge(store, spend(1, key="run-1/evt-1"), owner="key_a")
    other_body = await charge(store, spend(2, key="run-1/evt-1"), owner="key_b")
    same_body = await charge(store, spend(1, key="run-1/evt-1"), owner="key_c")
    assert not other_body.spend.duplicate and not same_body.spend.duplicate
    assert len({first.spend.id, other_body.spend.id, same_body.spend.id}) == 3
    replay = await charge(store, spend(1, key="run-1/evt-1"), owner="key_a")
    assert replay.spend.duplicate and replay.spend.id == first.spend.id
    with pytest.raises(errors.IdempotencyConflict):
        await charge(store, spend(5, key="run-1/evt-1"), owner="key_a")


def corrupt(settings: config.StorageConfig, sql: str) -> None:
    """An edit made behind the daemon's back, straight in the database."""
    if settings.engine == "postgres":
        with psycopg.connect(pg_connection.conninfo(settings.location), autocommit=True) as conn:
            conn.execute(sql)
    else:
        with contextlib.closing(sqlite3.connect(settings.location)) as conn, conn:
            conn.execute(sql)


async def test_ledger_verify_catches_an_edited_spent_and_a_forged_charge(
    store: contract.Store, settings: config.StorageConfig
) -> None:
    await store.set_budget(budget("agent", "a1", 100, "cap"), OPERATOR)
    for cents in (1, 2, 3):
        await charge(store, spend(cents))
    assert ledger_rules.verify(*engines.ledger(settings)).ok
    corrupt(settings, "UPDATE budgets SET spent_micros = spent_micros - 10000")
    verdict = ledger_rules.verify(*engines.ledger(settings))
    assert not verdict.ok and "spent 50000 micros, but its charges sum to 60000" in (
        verdict.problems[0])
    corrupt(settings, "UPDATE budgets SET spent_micros = spent_micros + 10000")
    corrupt(settings, "UPDATE spend_charges SET micros = micros + 1"
                      " WHERE spend_id = (SELECT min(spend_id) FROM spend_charges)")
    verdict = ledger_rules.verify(*engines.ledger(settings))
    assert [problem for problem in verdict.problems if "which cost 10000" in problem]


# --- spend summary ------------------------------------------------------------------------


def spent(cents: int, model: str | None = None, tokens: tuple[int, int] | None = None,
          **ids: str) -> commands.SpendRequest:
    body: dict[str, Any] = {"costUsdCents": cents, **ids}
    if model is not None:
        body["model"] = model
    if tokens is not None:
        body["inputTokens"], body["outputTokens"] = tokens
    return commands.SpendRequest.model_validate(body)


async def test_spend_summary_groups_sums_and_orders_by_sql(store: contract.Store,
                                                           clock: Any) -> None:
    await charge(store, spent(5, "m1", (10, 1), agentId="a1", teamId="t1"))
    await charge(store, spent(7, "m2", (20, 2), agentId="a2", teamId="t1"))
    clock.advance(1_000)
    await charge(store, spent(3, "m1", (30, 3), agentId="a1"))
    await charge(store, spent(1, None, None, agentId="b0", teamId="t2"))
    await charge(store, spent(9, None, None, missionId="m-only"))

    def rows(groups: list[records.SpendGroup]) -> list[tuple[Any, ...]]:
        return [(g.key, g.spent_usd_micros, g.spends, g.input_tokens, g.output_tokens)
                for g in groups]

    assert rows(await store.spend_summary("agent", None, None)) == [
        (None, 90_000, 1, 0, 0), ("a1", 80_000, 2, 40, 4), ("a2", 70_000, 1, 20, 2),
        ("b0", 10_000, 1, 0, 0),
    ]
    # Ties by key, the group of spends that do not name one last.
    assert rows(await store.spend_summary("model", None, None)) == [
        (None, 100_000, 2, 0, 0), ("m1", 80_000, 2, 40, 4), ("m2", 70_000, 1, 20, 2),
    ]
    assert rows(await store.spend_summary("team", None, None)) == [
        ("t1", 120_000, 2, 30, 3), (None, 120_000, 2, 30, 3), ("t2", 10_000, 1, 0, 0),
    ]
    start = clock.now - 1_000
    assert rows(await store.spend_summary("agent", start, clock.now)) == [
        ("a2", 70_000, 1, 20, 2), ("a1", 50_000, 1, 10, 1),
    ]
    assert rows(await store.spend_summary("agent", clock.now, None))[0][:3] == (None, 90_000, 1)
    assert await store.spend_summary("tenant", clock.now + 1, None) == []


async def test_a_replayed_spend_is_summed_once(store: contract.Store) -> None:
    keyed = commands.SpendRequest.model_validate(
        {"agentId": "a1", "costUsdCents": 4, "model": "m1", "idempotencyKey": "k1"})
    for _ in range(3):
        await charge(store, keyed)
    [group] = await store.spend_summary("agent", None, None)
    assert (group.spent_usd_micros, group.spends) == (40_000, 1)


# --- keys ---------------------------------------------------------------------------------


async def test_keys_made_listed_expired_revoked_and_touched(
    store: contract.Store, clock: Any, settings: config.StorageConfig
) -> None:
    lead = principals.make("leader", "alice", frozenset({"a2", "a1"}), frozenset({"fin"}),
                           expires_at=clock.now + 60_000)
    made = await store.add_key(lead, "a" * 64)
    assert (made.id, made.leads, made.groups, made.expires_at, made.created_at) == (
        lead.key_id, ["a1", "a2"], ["fin"], clock.now + 60_000, clock.now)
    ops = await store.add_key(principals.make("operator", None), "b" * 64)
    assert {k.id for k in await store.list_keys()} == {made.id, ops.id}
    found = await store.find_key("a" * 64, clock.now + 59_999)
    assert found is not None and found.groups == frozenset({"fin"})
    assert found.leads == frozenset({"a1", "a2"})
    assert await store.find_key("a" * 64, clock.now + 60_000) is None  # expired

    await store.touch_keys({made.id: clock.now + 5, ops.id: clock.now + 9})
    await store.touch_keys({made.id: clock.now + 1})  # never moves back
    used = {k.id: k.last_used_at for k in await store.list_keys()}
    assert used == {made.id: clock.now + 5, ops.id: clock.now + 9}

    clock.advance(10)
    revoked = await store.revoke_key(ops.id)
    assert revoked.revoked_at == clock.now and revoked.last_used_at == clock.now - 1
    assert await store.find_key("b" * 64, clock.now) is None
    with pytest.raises(errors.Conflict):
        await store.revoke_key(ops.id)
    with pytest.raises(errors.NotFound):
        await store.revoke_key("key_unknown")
    actions = [e.action for e in await store.list_audit(None, "verification", None, 10)]
    assert actions == ["key.revoked", "key.created", "key.created"]
    assert chain_ok(settings).ok


# --- guardrail policies, the tool registry, tool policies, role overrides ----------------

OPS = principals.Principal("key_ops", "ops", "operator")
CEILING = {"tool": "order.refund", "decision": "ALLOW", "max_value": Decimal("250.10")}
PAGER = {"tool": "order.refund", "decision": "ALERT"}


def draft(name: str, *rules: dict[str, Any], message: str | None = None) -> gate.Draft:
    body: dict[str, Any] = {"name": name, "rules": list(rules or [CEILING])}
    if message is not None:
        body["message"] = message
    return gate.validate_create(body)


async def test_guardrail_versions_rollback_and_delete(store: contract.Store, clock: Any,
                                                      settings: config.StorageConfig) -> None:
    generation = await store.gate_generation()
    made, replayed = await store.create_guardrail(draft("refunds", message="first"), None, OPS)
    assert not replayed and made.head.id.startswith("grd_") and made.version.version == 1
    assert made.version.rules == (CEILING,)  # the Decimal comes back as written
    assert await store.gate_generation() > generation
    with pytest.raises(guardrails.StateConflict):
        await store.create_guardrail(draft("refunds"), None, OPS)
    pid = made.head.id
    clock.advance(1_000)
    described = await store.update_guardrail(
        pid, gate.validate_update({"description": "d", "rules": [CEILING]}), OPS)
    assert (described.version.version, described.head.description) == (1, "d")
    bumped = await store.update_guardrail(
        pid, gate.validate_update({"rules": [CEILING, PAGER], "message": "page"}), OPS)
    assert bumped.version.version == bumped.head.version == 2
    back = await store.rollback_guardrail(pid, 1, None, OPS)
    assert (back.new_version, back.rolled_back_from, back.deployed_at) == (3, 1, clock())
    current = await store.get_guardrail(pid, None)
    assert current is not None and current.version.rules == (CEILING,)
    old = await store.get_guardrail(pid, 2)
    assert old is not None and old.version.rules == (CEILING, PAGER)
    history = await store.guardrail_versions(pid)
    assert [(v.version, v.created_by, v.message) for v in history] == [
        (3, "ops", "rollback to version 1"), (2, "ops", "page"), (1, "ops", "first")]
    with pytest.raises(errors.NotFound):
        await store.rollback_guardrail(pid, 9, None, OPS)
    await store.delete_guardrail(pid, OPS)
    with pytest.raises(errors.NotFound):
        await store.delete_guardrail(pid, OPS)
    with pytest.raises(errors.NotFound):
        await store.update_guardrail(pid, gate.validate_update({"status": "disabled"}), OPS)
    assert await store.list_guardrails() == []
    deleted = await store.get_guardrail(pid, None)
    assert deleted is not None and deleted.head.deleted_at is not None
    assert len(await store.guardrail_versions(pid)) == 3
    assert await store.get_guardrail("grd_none", None) is None
    actions = [e.action for e in await store.list_audit(None, "install", None, 20)]
    assert actions == ["guardrail.delete", "guardrail.rollback", "guardrail.update",
                       "guardrail.update", "guardrail.create"]
    assert chain_ok(settings).ok


async def test_guardrail_idempotency_key_answers_the_same_policy(store: contract.Store) -> None:
    first, replayed = await store.create_guardrail(draft("one"), "k-1", OPS)
    assert not replayed
    again = await asyncio.gather(*(store.create_guardrail(draft("one"), "k-1", OPS)
                                   for _ in range(5)))
    assert {s.head.id for s, _ in again} == {first.head.id} and all(r for _, r in again)
    with pytest.raises(guardrails.StateConflict):
        await store.create_guardrail(draft("one", PAGER), "k-1", OPS)
    assert len(await store.list_guardrails()) == 1


async def test_guardrails_list_newest_first_and_page(store: contract.Store) -> None:
    ids = [(await store.create_guardrail(draft(f"p-{n}"), None, OPS))[0].head.id
           for n in range(5)]
    listed = await store.list_guardrails()
    assert [s.head.id for s in listed] == ids[::-1]
    first = guardrails.page(listed, None, None, None, 2)
    assert [s.head.id for s in first.data] == ids[:2:-1] and first.has_more
    assert first.next_cursor is not None
    second = guardrails.page(listed, None, None, first.next_cursor, 2)
    assert [s.head.id for s in second.data] == ids[2:0:-1]
    await store.delete_guardrail(ids[2], OPS)  # a cursor survives a deletion
    rest = guardrails.page(await store.list_guardrails(), None, None, second.next_cursor, 2)
    assert [s.head.id for s in rest.data] == ids[:1] and not rest.has_more


async def test_tool_registry_lifecycle(store: contract.Store,
                                       settings: config.StorageConfig) -> None:
    tool = await store.register_tool("http.request", ["external_comm"], "fetch", OPS)
    assert (tool.name, tool.status) == ("http.request", "active")
    await store.register_tool("http.get", ["external_comm"], None, OPS)
    with pytest.raises(errors.Conflict):
        await store.register_tool("http.request", ["other"], None, OPS)
    with pytest.raises(errors.InvalidInput):
        await store.register_tool("approvals", ["other"], None, OPS)
    with pytest.raises(errors.Unprocessable):
        await store.deprecate_tool("http.request", "old", "nope", OPS)
    old = await store.deprecate_tool("http.request", "old", "http.get", OPS)
    assert (old.status, old.reason, old.replacement) == ("deprecated", "old", "http.get")
    with pytest.raises(errors.Conflict):
        await store.deprecate_tool("http.request", "again", None, OPS)
    assert (await store.archive_tool("http.request", OPS)).status == "archived"
    for transition in (store.archive_tool("http.request", OPS),
                       store.deprecate_tool("http.request", "x", None, OPS)):
        with pytest.raises(errors.Conflict):
            await transition
    with pytest.raises(errors.NotFound):
        await store.archive_tool("nothing", OPS)
    assert [t.name for t in await store.list_tools(False)] == ["http.get"]
    assert [t.name for t in await store.list_tools(True)] == ["http.request", "http.get"]
    assert chain_ok(settings).ok


async def test_tool_policies_and_role_overrides(store: contract.Store) -> None:
    await store.register_tool("http.request", ["external_comm"], None, OPS)
    with pytest.raises(errors.Unprocessable):
        await store.create_tool_policy("unknown.tool", True, None, None, OPS)
    policy = await store.create_tool_policy("http.request", True, ["api.example.com"], 1024, OPS)
    assert policy.id.startswith("tpol_") and policy.allowed_domains == ("api.example.com",)
    with pytest.raises(errors.Conflict):
        await store.create_tool_policy("http.request", False, None, None, OPS)
    assert await store.list_tool_policies() == [policy]
    override = await store.create_role_override("developer", "http.request", False, OPS)
    with pytest.raises(errors.Conflict):
        await store.create_role_override("developer", "http.request", True, OPS)
    with pytest.raises(errors.Unprocessable):
        await store.create_role_override("developer", "shell.exec", True, OPS)
    assert await store.list_role_overrides() == [override]
    generation = await store.gate_generation()
    await store.delete_tool_policy(policy.id, OPS)
    await store.delete_role_override(override.id, OPS)
    assert await store.gate_generation() == generation + 2
    for delete in (store.delete_tool_policy(policy.id, OPS),
                   store.delete_role_override(override.id, OPS)):
        with pytest.raises(errors.NotFound):
            await delete
    assert await store.list_tool_policies() == [] and await store.list_role_overrides() == []


async def test_gate_verdict_sees_another_daemons_change(
    store: contract.Store, settings: config.StorageConfig, clock: Any
) -> None:
    """Two daemons on one database: the second's write reaches the first's compiled sets."""
    other = engines.open_store(settings, clock)
    await other.open()
    try:
        compiled = gate_service.Gate(store)
        action = gate.Action("http.request", None, 10, {"url": "https://api.example.com/x"})
        dev = gate.Principal("a1", ("developer",), ())
        access, verdict = await gate_service.gate_verdict(compiled, action, dev, None)
        assert (access.decision, access.decided_by) == ("BLOCK", "registry")
        assert verdict.decision == "BLOCK"  # no policy: default-closed
        await other.register_tool("http.request", ["external_comm"], None, OPS)
        await other.create_tool_policy("http.request", True, ["example.com"], 64, OPS)
        await other.create_guardrail(draft("http", {"tool": "http.request", "decision": "ALLOW",
                                                    "max_value": 100}), None, OPS)
        access, verdict = await gate_service.gate_verdict(compiled, action, dev, None)
        assert (access.decision, access.decided_by) == ("ALLOW", "tool_policy")
        assert access.obligations == {"max_response_size_kb": 64}
        assert verdict.decision == "ALLOW" and verdict.policies[0].name == "http"
        compilations = compiled.compilations
        await gate_service.gate_verdict(compiled, action, dev, None)
        assert compiled.compilations == compilations  # nothing changed: nothing recompiled
        await other.create_role_override("developer", "http.request", False, OPS)
        access, _ = await gate_service.gate_verdict(compiled, action, dev, None)
        assert (access.decision, access.decided_by) == ("BLOCK", "role_override")
        await other.archive_tool("http.request", OPS)
        access, _ = await gate_service.gate_verdict(compiled, action, gate.ANONYMOUS, None)
        assert (access.decision, access.decided_by) == ("BLOCK", "registry")
    finally:
        await other.close()


# --- runs, quotas, breakers, caps ---------------------------------------------------------

RULES = runs.Rules()
PLAN = {"runs_per_hour": 300, "concurrent_runs": 10}


def run_start(**fields: Any) -> commands.RunStart:
    return commands.RunStart.model_validate({"agentId": "a1", **fields})


def run_event(kind: str, **fields: Any) -> commands.RunEvent:
    return commands.RunEvent.model_validate({"kind": kind, **fields})


async def test_runs_start_end_and_expire_with_the_clock(store: contract.Store, clock: Any
                                                         ) -> None:
    started = await store.start_run(run_start(tenantId="org"), PLAN, RULES)
    run = started.run
    assert (run.status, run.depth, run.lease_expires_at) == (
        "running", 0, clock.now + RULES.lease_ms)
    assert await store.get_run(run.id) == run
    assert await store.count_running_runs(clock.now) == 1
    other = (await store.start_run(run_start(), PLAN, RULES)).run
    clock.advance(1)
    ended = await store.end_run(run.id)
    assert (ended.status, ended.ended_at) == ("ended", clock.now)
    assert await store.end_run(run.id) == ended  # twice: as it is
    clock.advance(RULES.lease_ms)
    assert await store.count_running_runs(clock.now) == 0
    [expired] = await store.list_runs("expired", None, clock.now, 10)
    assert expired.id == other.id and expired.as_of(clock.now).status == "expired"
    assert [r.id for r in await store.list_runs(None, "a1", clock.now, 10)] == [other.id, run.id]
    with pytest.raises(errors.Conflict):
        await store.end_run(other.id)
    with pytest.raises(errors.NotFound):
        await store.end_run("run_nope")


async def test_run_quotas_refuse_audit_and_free_with_the_lease(
    store: contract.Store, clock: Any, settings: config.StorageConfig
) -> None:
    assert await store.set_quota_overrides("org", {"concurrent_runs": 2}) == {
        "concurrent_runs": 2}
    assert await store.quota_overrides("org") == {"concurrent_runs": 2}
    for _ in range(2):
        await store.start_run(run_start(tenantId="org"), PLAN, RULES)
        clock.advance(1000)
    with pytest.raises(errors.QuotaExceeded) as refused:
        await store.start_run(run_start(tenantId="org"), PLAN, RULES)
    assert refused.value.details == {"key": "concurrent_runs", "limit": 2,
                                     "retryAfterMs": RULES.lease_ms - 2000}
    await store.start_run(run_start(), PLAN, RULES)  # tenant "default" is another tenant
    clock.advance(RULES.lease_ms - 2000)  # the first lease lapses
    await store.start_run(run_start(tenantId="org"), PLAN, RULES)
    # The hour now holds the second start and the last one (the first is an hour old).
    await store.set_quota_overrides("org", {"concurrent_runs": None, "runs_per_hour": 2})
    with pytest.raises(errors.QuotaExceeded) as refused:
        await store.start_run(run_start(tenantId="org"), PLAN, RULES)
    assert refused.value.details["key"] == "runs_per_hour"
    actions = [e.action for e in await store.list_audit(None, "cap_hit", None, 10)]
    assert actions == ["quota.exceeded", "quota.exceeded"]
    assert chain_ok(settings).ok


async def test_events_and_trips_are_stored(
    store: contract.Store, settings: config.StorageConfig, clock: Any
) -> None:
    run = (await store.start_run(run_start(), PLAN, RULES)).run
    clock.advance(10)
    applied = await store.run_events(run.id, [run_event("tool-result", signature="x",
                                                        ok=False)] * 2, RULES)
    assert applied.tripped is None and applied.run.lease_expires_at == clock.now + RULES.lease_ms
    assert (await store.get_run(run.id)).lease_expires_at == clock.now + RULES.lease_ms  # type: ignore[union-attr]
    # The third failure trips only because the first two were stored with the run.
    applied = await store.run_events(run.id, [run_event("tool-result", signature="x")], RULES)
    assert applied.tripped is not None and applied.tripped.reason == "repeat-failure"
    assert applied.tripped.counters.consec_failures == 3
    assert (await store.get_run(run.id)).status == "tripped"  # type: ignore[union-attr]
    with pytest.raises(errors.Conflict):
        await store.run_events(run.id, [run_event("tool-call")], RULES)
    with pytest.raises(errors.NotFound):
        await store.run_events("run_nope", [run_event("tool-call")], RULES)
    trips = await store.list_audit(None, "circuit_break", None, 10)
    assert [e.action for e in trips] == ["breaker.repeat-failure"]
    assert chain_ok(settings).ok


async def test_delegation_caps_and_idempotent_starts(store: contract.Store) -> None:
    rules = runs.Rules(delegation=runs.Delegation(max_depth=1, max_children=1, max_root_runs=2))
    root = (await store.start_run(run_start(idempotencyKey="k"), PLAN, rules)).run
    replayed = await store.start_run(run_start(idempotencyKey="k"), PLAN, rules)
    assert replayed.replayed and replayed.run == root
    with pytest.raises(errors.IdempotencyConflict):
        await store.start_run(run_start(idempotencyKey="k", tenantId="x"), PLAN, rules)
    child = (await store.start_run(run_start(parentRunId=root.id), PLAN, rules)).run
    assert child.depth == 1 and child.parent_run_id == root.id
    with pytest.raises(errors.DelegationCap) as capped:
        await store.start_run(run_start(parentRunId=child.id), PLAN, rules)
    assert capped.value.details == {"cap": "max_depth", "limit": 1}
    await store.end_run(child.id)
    with pytest.raises(errors.DelegationCap) as capped:  # ended children count
        await store.start_run(run_start(parentRunId=root.id), PLAN, rules)
    assert capped.value.details["cap"] == "max_children"
    await store.start_run(run_start(), PLAN, rules)
    with pytest.raises(errors.DelegationCap) as capped:
        await store.start_run(run_start(), PLAN, rules)
    assert capped.value.details["cap"] == "max_root_runs"
    await store.start_run(run_start(agentId="a2"), PLAN, rules)  # per agent
    with pytest.raises(errors.NotFound):
        await store.start_run(run_start(parentRunId="run_nope"), PLAN, rules)


async def test_200_concurrent_starts_take_exactly_the_concurrency_limit(
    store: contract.Store, settings: config.StorageConfig, clock: Any
) -> None:
    # On PostgreSQL, half the starts go through a second daemon's store on the same database.
    stores = [store]
    if settings.engine == "postgres":
        second = engines.open_store(settings, clock)
        await second.open()
        stores.append(second)
    try:
        outcomes = await asyncio.gather(*(
            stores[i % len(stores)].start_run(run_start(agentId=f"a{i}"), PLAN, RULES)
            for i in range(200)
        ), return_exceptions=True)
    finally:
        for extra in stores[1:]:
            await extra.close()
    started = [o for o in outcomes if isinstance(o, runs.Started)]
    refused = [o for o in outcomes if isinstance(o, errors.QuotaExceeded)]
    assert (len(started), len(refused)) == (10, 190), [
        o for o in outcomes if isinstance(o, BaseException) and o not in refused][:3]
    assert await store.count_running_runs(clock.now) == 10


async def test_ledger_checkpoints_cover_the_rows_and_name_a_deleted_one(
    store: contract.Store, settings: config.StorageConfig, clock: Any
) -> None:
    """The running digest: a spend deleted with its charges, and its amount taken off its
    budget, passes the spent = charges check, but not its checkpoint."""
    await store.set_budget(budget("agent", "a1", 100, "cap"), OPERATOR)
    for cents in (1, 2, 3):
        await charge(store, spend(cents, key=f"k{cents}"))
    writer = checkpoints.Checkpoints(store, clock, 60_000)
    assert await writer.checkpoint() == 0  # too fresh: they may not all have settled
    clock.advance(ledger_rules.SETTLE_MS + 1)
    assert await writer.checkpoint() == 3
    await charge(store, spend(4, key="k4"))
    clock.advance(ledger_rules.SETTLE_MS + 1)
    assert await writer.checkpoint() == 1 and await writer.checkpoint() == 0

    def judged() -> tuple[list[str], int]:
        points = [json.loads(row.details_json) for row in engines.audit_chain(settings)
                  if row.action == ledger_rules.CHECKPOINT]
        assert len(points) == 2
        return ledger_rules.verify_checkpoints(engines.ledger_rows(settings), points)

    rows = engines.ledger_rows(settings)
    assert judged() == ([], rows[-1][0])
    second = rows[1][0]
    corrupt(settings, f"DELETE FROM spend_charges WHERE spend_id = {second}")
    corrupt(settings, f"DELETE FROM spends WHERE id = {second}")
    corrupt(settings, "UPDATE budgets SET spent_micros = spent_micros - 20000")
    assert ledger_rules.verify(*engines.ledger(settings)).ok  # the totals still agree
    problems, covered = judged()
    assert covered == 0 and "2 rows now, 3 when checkpointed" in problems[0]


# --- the audit chain as an event log --------------------------------------------------------


async def test_audit_rows_are_read_after_a_seq_and_each_commit_announces_its_last(
    store: contract.Store, clock: Any
) -> None:
    """The event stream's two needs: a wake after every commit that appends audit rows (on
    PostgreSQL through LISTEN, so for this instance too), and the rows after a seq."""
    heard: list[int] = []
    grew = asyncio.Event()

    def wake(seq: int) -> None:
        heard.append(seq)
        grew.set()

    store.watch_audit(wake)
    await store.set_budget(budget("agent", "a1", 10, "cap"), OPERATOR)
    await asyncio.wait_for(grew.wait(), 5)
    assert heard[-1] == (await store.audit_head()).seq == 1
    grew.clear()
    await charge(store, spend(1))  # no crossing: no audit row, no announcement
    await store.open_approval(new_approval("apr_1"), 60_000)
    await asyncio.wait_for(grew.wait(), 5)
    assert heard == [1, 2]
    grew.clear()
    await charge(store, spend(20))  # crosses 100% and pauses: two rows, one commit
    await asyncio.wait_for(grew.wait(), 5)
    assert heard == [1, 2, 4]
    rows = await store.audit_after(1, 10)
    assert [(r.seq, r.action) for r in rows] == [
        (2, "approval.requested"), (3, "budget.crossed_hard"), (4, "budget.paused")]
    assert [r.seq for r in await store.audit_after(1, 2)] == [2, 3]
    assert await store.audit_after(4, 10) == []
    assert audit.verify(await store.audit_after(0, 10)).ok  # the rows as stored, hashes too


async def test_a_vote_reads_allow_self_approval_in_its_own_transaction(
    store: contract.Store,
) -> None:
    lee = leader("lee", "g")
    one_gate = approvals.new_stages([{"name": "only", "gates": [{"group": "g", "count": 1}]}])
    for approval_id in ("apr_self1", "apr_self2"):
        await store.open_approval(approvals.new_request(
            approval_id, "deploy", "a1", {}, "why", None, None, lee, one_gate, True), 60_000)
    with pytest.raises(errors.Refused):  # the stored default: an asker may not vote
        await store.vote_approval("apr_self1", ballot("allow_once"), "lee", lee, None, 0)
    await store.patch_settings({"allow_self_approval": True}, OPERATOR)
    voted = await store.vote_approval("apr_self1", ballot("allow_once"), "lee", lee, None, 0)
    assert voted.status == "approved"
    with pytest.raises(errors.Refused):  # a caller's explicit answer wins over the stored one
        await store.vote_approval("apr_self2", ballot("allow_once"), "lee", lee, False, 0)
