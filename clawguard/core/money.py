"""Integer money: cents in, micro-dollars stored, and the tier math of the kill-switch.

One cent is 10,000 micros. Amounts arrive as JSON numbers read as `Decimal`
(never through a float), are rounded half-up once, here, and are integers
from then on.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal

MICROS_PER_CENT = 10_000
MAX_CENTS = 10**12
MAX_MICROS = 2**63 - 1  # SQLite's INTEGER; a budget's running total must stay below it
SOFT_PERCENT = 80

Status = Literal["active", "soft_capped", "paused"]
Mode = Literal["warn", "cap"]
Crossed = Literal["soft", "hard", "none"]


def cents_to_micros(value: object) -> int:
    """A spend amount in cents (int or Decimal, may be fractional) as integer micros."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("must be a number of cents")
    amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError("must be a finite number")
    if amount < 0:
        raise ValueError("must not be negative")
    if amount > MAX_CENTS:
        raise ValueError(f"must be at most {MAX_CENTS} cents")
    try:
        return int((amount * MICROS_PER_CENT).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation as exc:  # a literal with an absurd exponent
        raise ValueError("is not a usable amount") from exc


def micros_to_cents(micros: int) -> int:
    """Whole cents spent, rounded down: a budget reads 99 until the 100th cent is complete."""
    return micros // MICROS_PER_CENT


def soft_limit_micros(limit_cents: int) -> int:
    """The 80% warning line, by integer floor of the cent limit."""
    return (limit_cents * SOFT_PERCENT // 100) * MICROS_PER_CENT


def status_for(spent_micros: int, limit_cents: int, mode: Mode) -> Status:
    """The stored status of a budget row; a warn-mode row is clamped to soft_capped."""
    if spent_micros >= limit_cents * MICROS_PER_CENT:
        return "paused" if mode == "cap" else "soft_capped"
    if spent_micros >= soft_limit_micros(limit_cents):
        return "soft_capped"
    return "active"


def crossing(before_micros: int, after_micros: int, limit_cents: int) -> Crossed:
    """Which threshold one spend crossed from below; a jump past both reports only `hard`."""
    hard = limit_cents * MICROS_PER_CENT
    if before_micros < hard <= after_micros:
        return "hard"
    soft = soft_limit_micros(limit_cents)
    if before_micros < soft <= after_micros:
        return "soft"
    return "none"


def resume(spent_micros: int, limit_cents: int, mode: Mode, grace_cents: int | None) -> tuple[
    int, Status, bool
]:
    """An operator's resume: (new limit, new status, will the next spend re-pause).

    With grace on a spent-out budget the limit becomes spent + grace and the
    status is recomputed; otherwise the limit stays and the status is forced
    active, so the next cost event re-pauses a budget still at its limit.
    """
    spent_cents = micros_to_cents(spent_micros)
    if grace_cents is not None and spent_cents >= limit_cents:
        limit_cents = spent_cents + grace_cents
        status = status_for(spent_micros, limit_cents, mode)
    else:
        status = "active"
    return limit_cents, status, spent_cents >= limit_cents
