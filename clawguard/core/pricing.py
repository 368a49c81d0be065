"""Model prices: the bundled list prices, the config's overrides, and pricing a spend exactly.

A price is US dollars per million tokens, one for input and one for output.
One dollar is a million micros, so a token priced at P dollars per million
costs exactly P micros: a spend's cost is `input * P_in + output * P_out`
micros, computed in Decimal and rounded half-up once, to whole micros.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from clawguard.core import errors, money

# A price above this is a typo (a cent per token), not a model.
MAX_PER_MTOK_USD = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million input and output tokens."""

    input_per_mtok_usd: Decimal
    output_per_mtok_usd: Decimal


def usd(value: object) -> Decimal:
    """A price from the config: a decimal string or a number (never a float), 0..10,000."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError("must be a decimal string or a number of US dollars")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation as exc:
        raise ValueError(f"is not a decimal number: {value!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise ValueError("must be a finite, non-negative number")
    if amount > MAX_PER_MTOK_USD:
        raise ValueError(f"must be at most {MAX_PER_MTOK_USD} US dollars per million tokens")
    return amount


def _p(input_usd: str, output_usd: str) -> Price:
    return Price(Decimal(input_usd), Decimal(output_usd))


# Examples of list prices, US dollars per million tokens (standard tier, no caching or
# batch discounts), as the vendors published them in 2025. They go stale: set
# [prices."MODEL"] in the config to correct one or add another; the config wins.
BUNDLED: Mapping[str, Price] = {
    "gpt-4o": _p("2.50", "10.00"),
    "gpt-4o-mini": _p("0.15", "0.60"),
    "gpt-4.1": _p("2.00", "8.00"),
    "gpt-4.1-mini": _p("0.40", "1.60"),
    "o3": _p("2.00", "8.00"),
    "o4-mini": _p("1.10", "4.40"),
    "claude-opus-4-1": _p("15.00", "75.00"),
    "claude-sonnet-4-5": _p("3.00", "15.00"),
    "claude-3-5-haiku-latest": _p("0.80", "4.00"),
    "gemini-2.5-pro": _p("1.25", "10.00"),
    "gemini-2.5-flash": _p("0.30", "2.50"),
}


def table(overrides: Mapping[str, Price]) -> dict[str, Price]:
    """The bundled prices with the config's on top (a model named in both takes the config's)."""
    return {**BUNDLED, **overrides}


def cost_micros(price: Price, input_tokens: int, output_tokens: int) -> int:
    """The exact cost in micros, rounded half-up once."""
    exact = input_tokens * price.input_per_mtok_usd + output_tokens * price.output_per_mtok_usd
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def price_spend(
    prices: Mapping[str, Price], model: str | None, input_tokens: int | None,
    output_tokens: int | None,
) -> tuple[Price, int]:
    """(the price used, the cost in micros) of a spend that names no costUsdCents.

    InvalidInput when there is nothing to price it by: no model, no token
    counts, or a model with no price (the message names it).
    """
    if model is None:
        raise errors.InvalidInput(
            "costUsdCents is required, unless the spend names a model and its token counts",
            {"field": "costUsdCents"},
        )
    if input_tokens is None and output_tokens is None:
        raise errors.InvalidInput(
            "a spend without costUsdCents needs inputTokens or outputTokens to be priced",
            {"field": "inputTokens"},
        )
    price = prices.get(model)
    if price is None:
        raise errors.InvalidInput(
            f"no price for model {model!r}: send costUsdCents, or set [prices.\"{model}\"]"
            " in the config", {"field": "model", "model": model},
        )
    micros = cost_micros(price, input_tokens or 0, output_tokens or 0)
    if micros > money.MAX_CENTS * money.MICROS_PER_CENT:
        raise errors.InvalidInput(
            f"the priced cost is over {money.MAX_CENTS} cents", {"field": "inputTokens"}
        )
    return price, micros
