"""The hold rules as tables: what fits under a cap, which scope refuses, replay, commit, release."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from clawguard.core import budgets, commands, errors, holds, records

C = 10_000
NOW = 1_800_000_000_000


def row(scope: records.Scope, limit: int, spent: int, mode: records.Mode = "cap",
        status: records.Status = "active") -> budgets.Level:
    return budgets.Level(f"bud_{scope}", scope, f"{scope[0]}1", limit, spent, status, mode)


def hold_request(cents: str, **extra: Any) -> commands.HoldRequest:
    return commands.HoldRequest.model_validate(
        {"agentId": "a1", "teamId": "t1", "amountUsdCents": Decimal(cents),
         "idempotencyKey": "k", **extra})


@pytest.mark.parametrize(
    ("chain", "held", "cents", "refused"),
    [
        ([row("agent", 100, 0)], {}, "100", None),  # exactly the limit fits
        ([row("agent", 100, 0)], {}, "100.0001", ("budget_exhausted", "agent")),
        ([row("agent", 100, 60 * C)], {"agent": 30 * C}, "10", None),
        ([row("agent", 100, 60 * C)], {"agent": 30 * C}, "10.0001", ("budget_exhausted", "agent")),
        # warn mode tracks, never refuses
        ([row("agent", 100, 99 * C, "warn")], {"agent": 50 * C}, "500", None),
        # the first scope in chain order that does not fit is named
        ([row("agent", 100, 0), row("team", 10, 5 * C)], {}, "6", ("budget_exhausted", "team")),
        # a paused cap anywhere is named before a cap the hold would merely exhaust
        ([row("agent", 1, 0), row("team", 10, 10 * C, status="paused")], {}, "5",
         ("budget_paused", "team")),
    ],
)
def test_place(chain: list[budgets.Level], held: dict[str, int], cents: str,
               refused: tuple[str, str] | None) -> None:
    request = hold_request(cents)
    if refused is not None:
        with pytest.raises((errors.BudgetExhausted, errors.BudgetPaused)) as caught:
            holds.place(chain, held, request, NOW, 1000, "hld_1")
        assert (caught.value.code, caught.value.details["scope"]) == refused
        return
    hold = holds.place(chain, held, request, NOW, 1000, "hld_1")
    assert (hold.status, hold.expires_at, hold.amount_usd_micros) == (
        "held", NOW + 1000, request.amount_micros)
    assert [s.held_usd_micros for s in hold.scopes] == [
        held.get(r.scope, 0) + request.amount_micros for r in chain]


def test_a_windowed_cap_paused_last_month_takes_a_hold_this_month() -> None:
    jan, feb = 1_767_225_600_000, 1_769_904_000_000  # 2026-01-01, 2026-02-01 UTC
    paused = budgets.Level("bud_1", "agent", "a1", 100, 100 * C, "paused", "cap", "month",
                           "UTC", jan)
    with pytest.raises(errors.BudgetPaused):
        holds.place([paused], {}, hold_request("1"), feb - 1, 1000, "hld_1")
    hold = holds.place([paused], {}, hold_request("100"), feb, 1000, "hld_1")
    assert hold.scopes[0].spent_usd_micros == 0 and hold.scopes[0].window_start == feb


def test_replay_answers_the_same_hold_or_409() -> None:
    request = hold_request("0.4")
    hold = holds.place([], {}, request, NOW, 1000, "hld_1")
    seen = holds.StoredHold(hold, holds.fingerprint(request))
    assert holds.replay(seen, holds.fingerprint(hold_request("0.40")), NOW) == hold
    assert holds.replay(seen, holds.fingerprint(request), NOW + 1000).status == "expired"
    with pytest.raises(errors.IdempotencyConflict):
        holds.replay(seen, holds.fingerprint(hold_request("0.5")), NOW)
    with pytest.raises(errors.IdempotencyConflict):
        holds.replay(seen, holds.fingerprint(hold_request("0.4", ttlMs=5)), NOW)


@pytest.mark.parametrize(
    ("status", "now", "commit", "release"),
    [
        ("held", NOW, "charge", "released"),
        ("held", NOW + 999, "charge", "released"),
        ("held", NOW + 1000, 409, 409),  # past expiry: expired at once, before any sweep
        ("committed", NOW, "replay", 409),
        ("released", NOW, 409, 409),
        ("expired", NOW, 409, 409),
    ],
)
def test_commit_and_release(status: records.HoldStatus, now: int, commit: Any,
                            release: Any) -> None:
    hold = holds.place([], {}, hold_request("1"), NOW, 1000, "hld_1").model_copy(
        update={"status": status})
    if commit == 409:
        with pytest.raises(errors.Conflict):
            holds.commit(hold, hold.id, now)
    else:
        assert holds.commit(hold, hold.id, now) == commit
    if release == 409:
        with pytest.raises(errors.Conflict):
            holds.release(hold, hold.id, now)
    else:
        assert holds.release(hold, hold.id, now).status == release
    with pytest.raises(errors.NotFound):
        holds.commit(None, "hld_x", now)
    with pytest.raises(errors.NotFound):
        holds.release(None, "hld_x", now)


def test_a_commit_spends_on_the_holds_scopes() -> None:
    hold = holds.place([], {}, hold_request("1", runId="run_1"), NOW, 1000, "hld_1")
    spend = holds.spend_of(hold, commands.HoldCommit.model_validate(
        {"costUsdCents": Decimal("2.5"), "model": "m"}))
    assert (spend.agent_id, spend.team_id, spend.run_id, spend.cost_micros, spend.model) == (
        "a1", "t1", "run_1", 25_000, "m")
    assert holds.commit_key("hld_1") == "@hold:hld_1"
