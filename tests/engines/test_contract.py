"""The Store contract, run on every engine: the same calls must give the same answers.

Each test gets a fresh store of each engine (a SQLite file in tmp_path, an
empty PostgreSQL schema) driven by the same fake clock; nothing here names
an engine but the fixture.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from clawguard.core import audit, budgets, commands, errors, principals, records
from clawguard.runtime import config
from clawguard.store import contract, engines, postgres, sqlite

LEADER = principals.Principal("key_lead", "lead", "leader")
REQUESTER = principals.Principal("key_exec", "exec", "executor")


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> config.StorageConfig:
    if request.param == "sqlite":
        return config.StorageConfig(path=str(tmp_path / "clawguard.db"))
    return config.StorageConfig(url=request.getfixturevalue("pg_url"))


@pytest.fixture
async def store(settings: config.StorageConfig, clock: Any) -> AsyncIterator[contract.Store]:
    db = engines.open_store(settings, clock)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


def ledger(settings: config.StorageConfig) -> list[tuple[str, int, int]]:
    if settings.engine == "postgres":
        return postgres.ledger_check(settings.location)
    return sqlite.ledger_check(settings.location)


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


async def charge(store: contract.Store, request: commands.SpendRequest) -> records.SpendCharged:
    return await store.record_spend(request, budgets.fingerprint(request))


def new_approval(approval_id: str, agent: str = "a1", tool: str = "shell",
                 requested_by: str | None = REQUESTER.key_id) -> records.NewApproval:
    return records.NewApproval(id=approval_id, tool_name=tool, agent_id=agent,
                               args_summary='{"cmd":"ls"}', reason="why", task_id="t1",
                               tenant_id=None, requested_by_key=requested_by)


def chain_ok(settings: config.StorageConfig) -> audit.Verdict:
    return audit.verify(engines.audit_chain(settings))


# --- budgets ------------------------------------------------------------------------------


async def test_budgets_set_list_resume_delete(store: contract.Store, clock: Any,
                                              settings: config.StorageConfig) -> None:
    made = await store.set_budget(budget("agent", "a1", 100, "cap"))
    assert (made.status, made.mode, made.limit_usd_cents) == ("active", "cap", 100)
    clock.advance(1)
    await store.set_budget(budget("team", "t1", 50))
    listed = await store.list_budgets(None, None)
    assert [(b.scope, b.mode) for b in listed] == [("team", "warn"), ("agent", "cap")]
    assert [b.scope for b in await store.list_budgets("agent", None)] == ["agent"]
    kept = await store.set_budget(budget("agent", "a1", 10))
    assert kept.mode == "cap"  # omitting mode keeps it
    await charge(store, spend(10))
    paused = (await store.list_budgets("agent", None))[0]
    assert paused.status == "paused"
    resumed = await store.resume_budget("agent", "a1", 5)
    assert (resumed.budget.limit_usd_cents, resumed.budget.status) == (15, "active")
    assert resumed.will_repause is False
    resumed = await store.resume_budget("agent", "a1", None)
    assert resumed.budget.status == "active"
    with pytest.raises(errors.NotFound):
        await store.resume_budget("mission", "nope", None)
    await store.delete_budget("agent", "a1")
    with pytest.raises(errors.NotFound):
        await store.delete_budget("agent", "a1")
    assert [b.scope for b in await store.list_budgets(None, None)] == ["team"]
    actions = [e.action for e in await store.list_audit(None, None, None, 100)]
    assert actions[0] == "budget.deleted" and "budget.paused" in actions
    assert chain_ok(settings).ok


# --- spends -------------------------------------------------------------------------------


async def test_spend_charges_every_scope_crosses_once_and_pauses(
    store: contract.Store, settings: config.StorageConfig
) -> None:
    await store.set_budget(budget("agent", "a1", 10, "cap"))
    await store.set_budget(budget("tenant", "org", 1000))
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
    await store.set_budget(budget("agent", "a1", 100))
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
    await store.set_budget(budget("agent", "a1", 50, "cap"))
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
    await store.set_budget(budget("agent", "a1", 10**12))
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


async def test_a_new_sticky_grant_supersedes_the_old(store: contract.Store, clock: Any) -> None:
    for n in (1, 2):
        await store.open_approval(new_approval(f"apr_{n}"), 60_000)
    await store.resolve_approval("apr_1", "allow_always", None, 1_000, LEADER)
    clock.advance(2_000)  # the grant expired; a new request asks again
    await store.resolve_approval("apr_2", "allow_always", None, 0, LEADER)
    assert [g.approval_id for g in await store.list_grants(clock(), None)] == ["apr_2"]


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


async def test_history_keys_and_audit_head(store: contract.Store,
                                           settings: config.StorageConfig) -> None:
    record = await store.append_history("a1", "deny", "shell", '{"x":1}')
    assert [h.id for h in await store.list_history(None, 10)] == [record.id]
    assert not await store.has_keys()
    await store.add_key(principals.Principal("key_1", "ops", "operator"), "f" * 64)
    assert await store.has_keys()
    found = await store.find_key("f" * 64)
    assert found is not None and (found.key_id, found.role) == ("key_1", "operator")
    assert await store.find_key("0" * 64) is None
    await store.audit_event(audit.Event("tool_call", "tool.ran", "a1", {"token": "s3cret"}))
    head = await store.audit_head()
    verdict = audit.verify(engines.audit_chain(settings), (head.seq, head.hash))
    assert verdict.ok and verdict.checked == head.seq == 3
    [last] = await store.list_audit("a1", "tool_call", 0, 1)
    assert last.details["token"] != "s3cret"
    assert await store.ready() and await store.writable()
