"""The budget kill-switch as executors meet it: record a spend, and the preflight gate.

The charging itself is one store transaction that applies clawguard.core.budgets;
this adds the stop rule's answer and the metrics around it.
"""

from __future__ import annotations

from collections.abc import Mapping

from clawguard.core import budgets, commands, errors, pricing, records, runs
from clawguard.runtime import metrics
from clawguard.store import contract


async def record_spend(
    db: contract.Store, request: commands.SpendRequest, owner: str, counters: metrics.Metrics,
    price_table: Mapping[str, pricing.Price],
) -> records.SpendOutcome:
    """Charge a spend; one without costUsdCents is priced first from its model and tokens.

    `owner` is the id of the API key that spends: its idempotency keys are its own. The
    fingerprint is taken from the request as sent, so a priced spend's retry replays it
    even after the price table changed.
    """
    fingerprint = budgets.fingerprint(request)
    key = budgets.ledger_key(owner, request.idempotency_key)
    price = None
    if request.cost_usd_cents is None:
        price, micros = pricing.price_spend(
            price_table, request.model, request.input_tokens, request.output_tokens
        )
        request = request.priced(micros)
    charged = await db.record_spend(request, fingerprint, key)
    if price is not None:
        reason = answered(charged, request, counters).stop_reason
        return records.PricedSpendOutcome(
            spend=charged.spend, stop=reason is not None, stop_reason=reason,
            scopes=charged.scopes, priced=True, price=records.PriceUsed(
                model=request.model, input_per_mtok_usd=str(price.input_per_mtok_usd),
                output_per_mtok_usd=str(price.output_per_mtok_usd),
            ),
        )
    return answered(charged, request, counters)


def answered(
    charged: records.SpendCharged, request: commands.SpendRequest, counters: metrics.Metrics
) -> records.SpendOutcome:
    """A charged spend's answer (the stop rule) once counted: /spend's and a hold commit's."""
    reason = budgets.stop_reason(charged.scopes)
    outcome = "duplicate" if charged.spend.duplicate else "stopped" if reason else "recorded"
    counters.count_spend(
        outcome, (scope for scope, _ in request.named()), charged.spend.cost_usd_micros,
        request.model,
    )
    return records.SpendOutcome(
        spend=charged.spend, stop=reason is not None, stop_reason=reason, scopes=charged.scopes
    )


async def preflight(db: contract.Store, scope_ids: commands.ScopeIds) -> records.Preflight:
    """The pre-run gate: refuse a run whose scope chain holds a paused cap budget.

    It fails closed: while spend cannot be recorded or budgets read, no run starts.
    """
    try:
        if not await db.writable():
            raise errors.StoreUnavailable("the database cannot be written")
        scopes = await db.scope_states(scope_ids)
        tripped = None if scope_ids.run_id is None else runs.preflight_refusal(
            await db.get_run(scope_ids.run_id), scope_ids.run_id)
    except errors.StoreUnavailable:
        return records.Preflight(allowed=False, reason="store_unavailable", scopes=[])
    if tripped is not None:
        return records.Preflight(allowed=False, reason=tripped, scopes=scopes)
    reason = budgets.stop_reason(scopes)
    return records.Preflight(
        allowed=reason is None, reason=None if reason is None else "budget_paused", scopes=scopes
    )
