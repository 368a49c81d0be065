"""Budget windows as tables: calendar bounds across month ends, a leap day and DST changes,
and a windowed budget's reset at the boundary (spent 0, active again, crossings re-armed)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from clawguard.core import budgets, commands, records, windows

C = 10_000  # micros a cent


def at(text: str, zone: str = "UTC") -> int:
    """Epoch ms of a local wall-clock time in `zone`."""
    local = dt.datetime.fromisoformat(text).replace(tzinfo=windows.zone(zone))
    return int(local.timestamp() * 1000)


@pytest.mark.parametrize(
    ("window", "zone", "instant", "start", "end", "hours"),
    [
        ("day", "UTC", "2026-01-31T23:59:59.999", "2026-01-31T00:00", "2026-02-01T00:00", 24),
        ("month", "UTC", "2026-01-31T23:59:59.999", "2026-01-01T00:00", "2026-02-01T00:00",
         744),
        ("month", "UTC", "2026-02-01T00:00", "2026-02-01T00:00", "2026-03-01T00:00", 672),
        ("month", "UTC", "2026-12-31T12:00", "2026-12-01T00:00", "2027-01-01T00:00", 744),
        # a leap year: February has 29 days, and Feb 29 is a day of its own
        ("month", "UTC", "2028-02-29T23:00", "2028-02-01T00:00", "2028-03-01T00:00", 696),
        ("day", "UTC", "2028-02-29T00:00", "2028-02-29T00:00", "2028-03-01T00:00", 24),
        ("week", "UTC", "2028-02-29T10:00", "2028-02-28T00:00", "2028-03-06T00:00", 168),
        # weeks start Monday at local midnight; Sunday night is still last week
        ("week", "UTC", "2026-03-01T23:59", "2026-02-23T00:00", "2026-03-02T00:00", 168),
        ("week", "UTC", "2026-03-02T00:00", "2026-03-02T00:00", "2026-03-09T00:00", 168),
        # DST: New York springs forward on 2026-03-08 (a 23 h day), falls back on 11-01 (25 h)
        ("day", "America/New_York", "2026-03-08T12:00", "2026-03-08T00:00", "2026-03-09T00:00",
         23),
        ("day", "America/New_York", "2026-11-01T01:30", "2026-11-01T00:00", "2026-11-02T00:00",
         25),
        ("month", "America/New_York", "2026-03-31T23:00", "2026-03-01T00:00",
         "2026-04-01T00:00", 743),
        # Berlin's change on 2026-03-29 falls in the week of Monday 03-23
        ("week", "Europe/Berlin", "2026-03-29T12:00", "2026-03-23T00:00", "2026-03-30T00:00",
         167),
        ("day", "Europe/Berlin", "2026-10-25T02:30", "2026-10-25T00:00", "2026-10-26T00:00",
         25),
        # local midnight is not UTC midnight: 23:30 in UTC is already tomorrow in Tokyo
        ("day", "Asia/Tokyo", "2026-06-01T08:30", "2026-06-01T00:00", "2026-06-02T00:00", 24),
    ],
)
def test_bounds(window: windows.Window, zone: str, instant: str, start: str, end: str,
                hours: int) -> None:
    found = windows.bounds(window, zone, at(instant, zone))
    assert found == (at(start, zone), at(end, zone))
    assert (found[1] - found[0]) == hours * 3_600_000


def test_none_has_no_bounds_and_an_unknown_zone_is_named() -> None:
    assert windows.bounds("none", "UTC", 0) is None
    for bad in ("Mars/Olympus", "../etc/passwd", "", "UTC/"):
        with pytest.raises(ValueError):
            windows.zone(bad)


def test_every_instant_is_inside_its_window() -> None:
    moment = at("2026-01-01T00:00", "America/New_York")
    for _ in range(400):
        for window in ("day", "week", "month"):
            start, end = windows.bounds(window, "America/New_York", moment)  # type: ignore[misc]
            assert start <= moment < end
            assert windows.bounds(window, "America/New_York", end - 1) == (start, end)
        moment += 22 * 3_600_000 + 17 * 60_000


def level(spent: int, status: records.Status, start: int | None, window: windows.Window = "month",
          mode: records.Mode = "cap", limit: int = 100) -> budgets.Level:
    return budgets.Level("bud_1", "agent", "a1", limit, spent, status, mode, window, "UTC", start)


def spend(cents: int) -> commands.SpendRequest:
    return commands.SpendRequest.model_validate({"agentId": "a1",
                                                 "costUsdCents": Decimal(cents)})


JAN = at("2026-01-01T00:00")
FEB = at("2026-02-01T00:00")
MAR = at("2026-03-01T00:00")


@pytest.mark.parametrize(
    ("spent", "status", "now", "cents", "after", "crossed", "new_status", "start", "actions"),
    [
        # inside the window: charged on top, as without a window
        (50 * C, "active", JAN + 5, 40, 90 * C, "soft", "soft_capped", JAN,
         ["budget.crossed_soft"]),
        # a cap paused in January is active again in February: the charge starts from 0
        (100 * C, "paused", FEB, 1, 1 * C, "none", "active", FEB, []),
        # crossings re-arm: the soft line fires again in the next window
        (85 * C, "soft_capped", FEB + 1, 80, 80 * C, "soft", "soft_capped", FEB,
         ["budget.crossed_soft"]),
        # down over two boundaries: still one fresh window, the one `now` is in
        (99 * C, "soft_capped", MAR + 7, 100, 100 * C, "hard", "paused", MAR,
         ["budget.crossed_hard", "budget.paused"]),
        # the last millisecond of January is January
        (99 * C, "soft_capped", FEB - 1, 1, 100 * C, "hard", "paused", JAN,
         ["budget.crossed_hard", "budget.paused"]),
    ],
)
def test_charge_resets_at_the_boundary(spent: int, status: records.Status, now: int, cents: int,
                                       after: int, crossed: str, new_status: str, start: int,
                                       actions: list[str]) -> None:
    row = level(spent, status, JAN)
    outcome = budgets.charge([row], spend(cents), now)
    [(charged, new_spent, new, new_start)] = outcome.levels
    assert (charged, new_spent, new, new_start) == (row, after, new_status, start)
    [state] = outcome.scopes
    assert state.crossed == crossed and state.window_start == start
    assert state.window_end == windows.bounds("month", "UTC", start)[1]  # type: ignore[index]
    assert [event.action for event in outcome.events] == actions


def test_a_charge_stamped_before_the_rows_window_counts_in_it() -> None:
    """Two instances' clocks a little apart: the later window already written stays."""
    row = level(10 * C, "active", FEB)
    [(_, spent, _, start)] = budgets.charge([row], spend(1), FEB - 5).levels
    assert (spent, start) == (11 * C, FEB)


def budget(spent: int, status: records.Status, start: int | None,
           window: windows.Window = "month") -> records.Budget:
    return records.Budget(
        id="bud_1", scope="agent", scope_id="a1", tenant_id=None, limit_usd_cents=100,
        spent_usd_cents=spent // C, spent_usd_micros=spent, held_usd_cents=0, status=status,
        mode="cap", created_at=0, updated_at=0, window=window, timezone="UTC",
        window_start=start)


def test_a_read_in_a_later_window_shows_zero_and_active() -> None:
    read = budgets.current(budget(100 * C, "paused", JAN), FEB + 3, held_micros=5 * C)
    assert (read.spent_usd_micros, read.status, read.window_start, read.window_end) == (
        0, "active", FEB, MAR)
    assert (read.held_usd_micros, read.held_usd_cents) == (5 * C, 5)
    same = budgets.current(budget(100 * C, "paused", JAN), FEB - 1)
    assert (same.spent_usd_micros, same.status, same.window_end) == (100 * C, "paused", FEB)
    plain = budgets.current(budget(7, "active", None, "none"), MAR)
    assert plain.window_start is None and plain.window_end is None and plain.spent_usd_micros == 7


def test_changing_the_window_asks_for_a_recount_and_keeps_it_on_omission() -> None:
    existing = budgets.current(budget(30 * C, "active", JAN), JAN + 10)
    keep = commands.BudgetSet.model_validate({"scope": "agent", "scopeId": "a1",
                                              "limitUsdCents": 100})
    assert budgets.recount_from(existing, keep, JAN + 10) is None
    to_day = keep.model_copy(update={"window": "day"})
    assert budgets.recount_from(existing, to_day, JAN + 10) == JAN
    to_none = keep.model_copy(update={"window": "none"})
    assert budgets.recount_from(existing, to_none, JAN + 10) == 0
    ops = budgets.principals.Principal("key_ops", "ops", "operator")
    change = budgets.set_budget(existing, to_day, JAN + 10, "bud_x", ops, recounted=12 * C)
    assert change.budget.window == "day" and change.budget.spent_usd_micros == 12 * C
    assert change.budget.window_start == JAN and change.budget.timezone == "UTC"
    kept = budgets.set_budget(existing, keep, JAN + 10, "bud_x", ops)
    assert kept.budget.window == "month" and kept.budget.spent_usd_micros == 30 * C
