"""The tier math as a table, and the parsing of amounts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from clawguard.core import money

C = money.MICROS_PER_CENT


@pytest.mark.parametrize(
    ("limit", "soft_cents"),
    [(100, 80), (101, 80), (99, 79), (1, 0), (5, 4), (10, 8), (1234, 987)],
)
def test_soft_line_is_the_integer_floor_of_80_percent(limit, soft_cents):
    assert money.soft_limit_micros(limit) == soft_cents * C


@pytest.mark.parametrize(
    ("spent_micros", "limit", "mode", "status"),
    [
        (0, 100, "cap", "active"),
        (80 * C - 1, 100, "cap", "active"),
        (80 * C, 100, "cap", "soft_capped"),
        (100 * C - 1, 100, "cap", "soft_capped"),
        (100 * C, 100, "cap", "paused"),
        (500 * C, 100, "cap", "paused"),
        (100 * C, 100, "warn", "soft_capped"),  # warn never reads paused
        (500 * C, 100, "warn", "soft_capped"),
        (79 * C + 9999, 99, "warn", "soft_capped"),  # floor(99*0.8) = 79
        (78 * C + 9999, 99, "warn", "active"),
    ],
)
def test_status(spent_micros, limit, mode, status):
    assert money.status_for(spent_micros, limit, mode) == status


@pytest.mark.parametrize(
    ("before", "after", "limit", "crossed"),
    [
        (0, 79 * C, 100, "none"),
        (79 * C, 80 * C, 100, "soft"),
        (80 * C, 90 * C, 100, "none"),  # soft already crossed: reported once
        (90 * C, 100 * C, 100, "hard"),
        (100 * C, 150 * C, 100, "none"),  # hard already crossed: reported once
        (0, 100 * C, 100, "hard"),  # a jump past both reports only hard
        (0, 500 * C, 100, "hard"),
        (50 * C, 50 * C, 100, "none"),  # a zero spend crosses nothing
    ],
)
def test_crossing(before, after, limit, crossed):
    assert money.crossing(before, after, limit) == crossed


def test_each_crossing_reported_once_along_a_run_of_spends():
    crossings, spent = [], 0
    for _ in range(300):  # 300 spends of 0.5 cents against a 100-cent limit
        crossings.append(money.crossing(spent, spent + C // 2, 100))
        spent += C // 2
    assert crossings.count("soft") == 1 and crossings.count("hard") == 1
    assert crossings.index("soft") == 159 and crossings.index("hard") == 199


def test_sub_cent_carry_is_exact():
    micros = sum(money.cents_to_micros(Decimal("0.0001")) for _ in range(10_000))
    assert micros == C and money.micros_to_cents(micros) == 1


@pytest.mark.parametrize(
    ("cents", "micros"),
    [
        (Decimal("0.4"), 4_000),
        (Decimal("0.00025"), 3),  # half-up, once, at the edge
        (Decimal("0.00024"), 2),
        (Decimal("0.00005"), 1),
        (Decimal("0.00004"), 0),
        (7, 70_000),
        (Decimal("1E+12"), 10**12 * C),
        (Decimal("1e-4"), 1),
    ],
)
def test_cents_to_micros(cents, micros):
    assert money.cents_to_micros(cents) == micros


@pytest.mark.parametrize(
    "bad",
    [-1, Decimal("-0.0001"), Decimal("NaN"), Decimal("Infinity"), 10**12 + 1, True, "5", 0.5,
     None, Decimal("1e999999")],
)
def test_cents_to_micros_refuses(bad):
    with pytest.raises(ValueError):
        money.cents_to_micros(bad)


@pytest.mark.parametrize(
    ("spent", "limit", "grace", "expected"),
    [
        (100 * C, 100, 50, (150, "active", False)),
        (100 * C, 100, 10, (110, "soft_capped", False)),  # 100 >= floor(110*0.8)
        (120 * C, 100, None, (100, "active", True)),  # no grace: forced active, re-pauses
        (50 * C, 100, 30, (100, "active", False)),  # below the limit: grace changes nothing
        (100 * C + 5, 100, 1, (101, "soft_capped", False)),
    ],
)
def test_resume(spent, limit, grace, expected):
    assert money.resume(spent, limit, "cap", grace) == expected
