"""Holds and budget windows on every engine (the Store contract, as test_contract.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from clawguard.core import budgets, commands, errors, holds, records, runs
from clawguard.runtime import config
from clawguard.store import contract
from engines.test_contract import OPERATOR, budget, ledger, spend

C = 10_000
OWNER = "key_exec"


def hold_request(cents: float | int | str, key: str, **ids: Any) -> commands.HoldRequest:
    return commands.HoldRequest.model_validate(
        {"amountUsdCents": Decimal(str(cents)), "idempotencyKey": key,
         **(ids or {"agentId": "a1"})})


async def place(db: contract.Store, request: commands.HoldRequest,
                ttl_ms: int = 60_000) -> records.Hold:
    return await db.place_hold(request, holds.fingerprint(request),
                               budgets.ledger_key(OWNER, request.idempotency_key) or "", ttl_ms)


async def commit(db: contract.Store, hold: records.Hold, cents: int | str
                 ) -> records.SpendCharged:
    request = holds.spend_of(hold, commands.HoldCommit.model_validate(
        {"costUsdCents": Decimal(str(cents))}))
    return await db.commit_hold(hold.id, request, budgets.fingerprint(request))


def ids(**named: str) -> commands.ScopeIds:
    return commands.ScopeIds.model_validate(named)


async def test_holds_reserve_under_a_cap_and_name_the_scope(
    store: contract.Store
) -> None:
    await store.set_budget(budget("agent", "a1", 100, "cap"), OPERATOR)
    await store.set_budget(budget("team", "t1", 1000), OPERATOR)  # warn: never refuses
    first = await place(store, hold_request(60, "h1", agentId="a1", teamId="t1"))
    assert [(s.scope, s.held_usd_micros) for s in first.scopes] == [
        ("agent", 60 * C), ("team", 60 * C)]
    with pytest.raises(errors.BudgetExhausted) as caught:
        await place(store, hold_request("40.0001", "h2", agentId="a1"))
    assert caught.value.details == {"scope": "agent", "scopeId": "a1"}
    second = await place(store, hold_request(40, "h3", agentId="a1"))  # exactly the limit
    [agent] = await store.scope_states(ids(agentId="a1"))
    assert (agent.held_usd_micros, agent.spent_usd_micros) == (100 * C, 0)
    [listed] = await store.list_budgets("agent", None)
    assert (listed.held_usd_micros, listed.held_usd_cents) == (100 * C, 100)
    # the same key and body answers the same hold; another body is a 409
    assert (await place(store, hold_request(40, "h3", agentId="a1"))).id == second.id
    with pytest.raises(errors.IdempotencyConflict):
        await place(store, hold_request(41, "h3", agentId="a1"))
    assert (await store.count_live_holds(store_now(store))) == (2, 100 * C)


def store_now(db: contract.Store) -> int:
    return db._clock()  # type: ignore[attr-defined]


async def test_commit_charges_as_a_spend_frees_the_hold_and_replays(
    store: contract.Store, settings: config.StorageConfig,
) -> None:
    await store.set_budget(budget("agent", "a1", 100, "cap"), OPERATOR)
    hold = await place(store, hold_request(50, "h1"))
    more = await commit(store, hold, 85)  # more than the estimate: charged in full
    [agent] = more.scopes
    assert (agent.spent_usd_micros, agent.crossed, agent.status) == (85 * C, "soft",
                                                                      "soft_capped")
    assert more.spend.duplicate is False
    got = await store.get_hold(hold.id)
    assert got is not None and (got.status, got.spend_id) == ("committed", more.spend.id)
    again = await commit(store, hold, 85)
    assert again.spend == more.spend.model_copy(update={"duplicate": True})
    assert again.scopes == more.scopes
    with pytest.raises(errors.IdempotencyConflict):
        await commit(store, hold, 84)
    with pytest.raises(errors.Conflict):
        await store.release_hold(hold.id)
    [state] = await store.scope_states(ids(agentId="a1"))
    assert (state.held_usd_micros, state.spent_usd_micros) == (0, 85 * C)
    less = await place(store, hold_request(15, "h2"))
    charged = await commit(store, less, 15)  # to the cent: crosses hard and pauses
    assert (charged.scopes[0].crossed, charged.scopes[0].status) == ("hard", "paused")
    with pytest.raises(errors.BudgetPaused):
        await place(store, hold_request(1, "h3"))
    assert all(spent == summed for _, spent, summed in ledger(settings))
    actions = [e.action for e in await store.list_audit(None, None, None, 50)]
    assert actions.count("budget.paused") == 1


async def test_release_expiry_and_the_sweep(
    store: contract.Store, clock: Any
) -> None:
    await store.set_budget(budget("agent", "a1", 10, "cap"), OPERATOR)
    kept = await place(store, hold_request(10, "h1"), ttl_ms=1_000)
    released = await store.release_hold(kept.id)
    assert released.status == "released"
    with pytest.raises(errors.Conflict):
        await store.release_hold(kept.id)
    with pytest.raises(errors.NotFound):
        await store.release_hold("hld_nope")
    lapsing = await place(store, hold_request(10, "h2"), ttl_ms=1_000)
    clock.advance(1_000)  # past expiry: it stops counting at once, before any sweep
    [state] = await store.scope_states(ids(agentId="a1"))
    assert state.held_usd_micros == 0
    stored = await store.get_hold(lapsing.id)
    assert stored is not None and stored.as_of(clock.now).status == "expired"
    with pytest.raises(errors.Conflict):
        await commit(store, lapsing, 1)
    await place(store, hold_request(10, "h3"), ttl_ms=60_000)  # the room is free again
    assert await store.expire_holds(100) == 1
    assert await store.expire_holds(100) == 0
    swept = await store.get_hold(lapsing.id)
    assert swept is not None and (swept.status, swept.resolved_at) == (
        "expired", lapsing.expires_at)


async def test_concurrent_holds_never_reserve_past_the_cap(
    store: contract.Store
) -> None:
    await store.set_budget(budget("tenant", "org", 1000, "cap"), OPERATOR)
    outcomes = await asyncio.gather(
        *(place(store, hold_request(30, f"c{i}", tenantId="org", agentId=f"a{i}"))
          for i in range(64)), return_exceptions=True)
    placed = [o for o in outcomes if isinstance(o, records.Hold)]
    refused = [o for o in outcomes if isinstance(o, errors.BudgetExhausted)]
    assert (len(placed), len(refused)) == (33, 31)  # 33 * 30 = 990 <= 1000 < 34 * 30
    [tenant] = await store.scope_states(ids(tenantId="org"))
    assert tenant.held_usd_micros == 990 * C


async def test_commits_releases_and_placements_at_once_each_see_the_ones_before(
    store: contract.Store, settings: config.StorageConfig,
) -> None:
    """Sent together (PostgreSQL decides them in one batch, in memory, in turn): the
    placements after the commits and releases find the room those left, no more."""
    await store.set_budget(budget("tenant", "org", 1000, "cap"), OPERATOR)
    first = [await place(store, hold_request(50, f"p{i}", tenantId="org", agentId=f"a{i}"))
             for i in range(10)]
    outcomes = await asyncio.gather(
        *(commit(store, hold, 50) for hold in first[:5]),
        *(store.release_hold(hold.id) for hold in first[5:]),
        place(store, hold_request(50, "p0", tenantId="org", agentId="a0")),  # a replay
        *(place(store, hold_request(30, f"n{i}", tenantId="org", agentId=f"b{i}"))
          for i in range(30)),
        return_exceptions=True)
    charged, released, [replayed], placed = (
        outcomes[:5], outcomes[5:10], outcomes[10:11], outcomes[11:])
    assert all(isinstance(o, records.SpendCharged) for o in charged), charged
    assert [o.status for o in released] == ["released"] * 5  # type: ignore[union-attr]
    assert (replayed.id, replayed.status) == (first[0].id, "committed")  # type: ignore[union-attr]
    # 1000 - 250 spent = 750 of room once the first ten are resolved: 25 holds of 30.
    assert [type(o).__name__ for o in placed] == ["Hold"] * 25 + ["BudgetExhausted"] * 5
    [tenant] = await store.scope_states(ids(tenantId="org"))
    assert (tenant.spent_usd_micros, tenant.held_usd_micros) == (250 * C, 750 * C)
    assert await store.count_live_holds(store_now(store)) == (25, 750 * C)
    assert all(spent == summed for _, spent, summed in ledger(settings))


async def test_the_sweep_expires_lapsed_run_leases(
    store: contract.Store, clock: Any
) -> None:
    started = await store.start_run(
        commands.RunStart.model_validate({"agentId": "a1"}), {"runs_per_hour": 10,
                                                             "concurrent_runs": 10},
        runs.Rules(lease_ms=1_000))
    assert await store.expire_runs(10) == 0
    clock.advance(1_000)
    assert await store.expire_runs(10) == 1
    run = await store.get_run(started.run.id)
    assert run is not None and (run.status, run.ended_at) == ("expired",
                                                              started.run.lease_expires_at)


def utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


async def test_a_monthly_budget_resets_at_the_boundary(
    store: contract.Store, clock: Any, settings: config.StorageConfig,
) -> None:
    clock.now = utc("2026-01-31T23:00")
    monthly = budget("agent", "a1", 10, "cap").model_copy(update={"window": "month"})
    made = await store.set_budget(monthly, OPERATOR)
    assert (made.window_start, made.window_end) == (utc("2026-01-01"), utc("2026-02-01"))
    paused = await store.record_spend(spend(10), budgets.fingerprint(spend(10)), None)
    assert paused.scopes[0].status == "paused"
    assert paused.scopes[0].window_end == utc("2026-02-01")
    clock.now = utc("2026-03-02T08:00")  # the daemon was down across two boundaries
    [read] = await store.list_budgets(None, None)
    assert (read.spent_usd_micros, read.status, read.window_start) == (
        0, "active", utc("2026-03-01"))
    [state] = await store.scope_states(ids(agentId="a1"))
    assert (state.status, state.window_end) == ("active", utc("2026-04-01"))
    assert await store.list_budgets(None, "paused") == []
    fresh = await store.record_spend(spend(8), budgets.fingerprint(spend(8)), None)
    assert (fresh.scopes[0].spent_usd_micros, fresh.scopes[0].crossed) == (8 * C, "soft")
    assert all(spent == summed for _, spent, summed in ledger(settings))
    # the window changed to none: spent is every charge since the row was made
    kept = await store.set_budget(budget("agent", "a1", 10).model_copy(
        update={"window": "none"}), OPERATOR)
    assert (kept.window, kept.spent_usd_micros, kept.status, kept.mode) == (
        "none", 18 * C, "paused", "cap")
    assert all(spent == summed for _, spent, summed in ledger(settings))
    # omitting window and timezone keeps them
    zoned = await store.set_budget(budget("agent", "a1", 100).model_copy(
        update={"window": "day", "timezone": "America/New_York"}), OPERATOR)
    again = await store.set_budget(budget("agent", "a1", 200), OPERATOR)
    assert (again.window, again.timezone) == ("day", "America/New_York") == (
        zoned.window, zoned.timezone)
    assert again.window_start == utc("2026-03-02T05:00")  # New York's midnight, in UTC


async def test_a_write_is_read_at_once_while_other_reads_interleave(
    store: contract.Store,
) -> None:
    """Each read after its write's answer sees it, however many reads are in flight: on
    SQLite one request's half-read statement once pinned an older snapshot for another, and
    a hold placed a moment before read as unknown."""
    await store.set_budget(budget("agent", "busy", 100), OPERATOR)
    stop = asyncio.Event()

    async def reading() -> None:
        while not stop.is_set():
            await store.list_budgets(None, None)

    readers = [asyncio.create_task(reading()) for _ in range(16)]
    try:
        for n in range(150):
            hold = await place(store, hold_request(1, f"r{n}", agentId=f"a{n}"))
            assert await store.get_hold(hold.id) is not None, n
    finally:
        stop.set()
        await asyncio.gather(*readers)
