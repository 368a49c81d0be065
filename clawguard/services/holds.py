"""Holds as executors meet them: place one, read it, commit its actual cost, release it.

The store applies clawguard.core.holds inside its transactions; this adds the
settings (the default time to live), the run check, the owner's idempotency
namespace, the stop rule of a commit's answer, and the metrics.

`Holds.place_estimate` is the gate's: authorize, with an ALLOW verdict and an
estimate, calls it (the app holds one `Holds` at http.state.HOLDS) and answers
BLOCK `budget_exhausted` (or `budget_paused`) when it raises BudgetExhausted
(BudgetPaused).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pydantic

from clawguard.core import budgets, commands, errors, holds, records, runs
from clawguard.runtime import config, metrics
from clawguard.services import spending
from clawguard.store import contract


class Holds:
    def __init__(self, db: contract.Store, settings: config.HoldsConfig,
                 clock: Callable[[], int], counters: metrics.Metrics) -> None:
        self._db, self._ttl_ms, self._clock, self._metrics = (
            db, settings.ttl_ms, clock, counters)

    async def place(self, request: commands.HoldRequest, owner: str) -> records.Hold:
        """Reserve `request.amount_usd_cents` on its scopes for its ttlMs (else `[holds]
        ttl_ms`). `owner` is the id of the API key asking: its idempotency keys are its own,
        as for spends. Raises BudgetPaused or BudgetExhausted (409, details {scope,
        scopeId}), IdempotencyConflict (the key with another body), NotFound (an unknown
        runId) or Conflict `circuit_break` (a tripped run)."""
        if request.run_id is not None:
            refusal = runs.preflight_refusal(await self._db.get_run(request.run_id),
                                             request.run_id)
            if refusal is not None:
                raise errors.Conflict("the run's circuit breaker has tripped",
                                      {"runId": request.run_id, "reason": refusal})
        key = budgets.ledger_key(owner, request.idempotency_key)
        assert key is not None
        try:
            hold = await self._db.place_hold(request, holds.fingerprint(request), key,
                                             request.ttl_ms or self._ttl_ms)
        except (errors.BudgetExhausted, errors.BudgetPaused) as exc:
            self._metrics.holds.labels(exc.code).inc()
            raise
        self._metrics.holds.labels("placed").inc()
        return hold

    async def place_estimate(
        self, scope_ids: commands.ScopeIds, estimate_usd_cents: Decimal | int, owner: str,
        idempotency_key: str, ttl_ms: int | None = None,
    ) -> records.Hold:
        """`place` for a caller that has scope ids and an estimate rather than a hold request
        (authorize): the hold of `estimate_usd_cents` on the scopes (and run) of `scope_ids`,
        or the errors `place` raises; ValueError for an amount a request could not carry
        (negative, over 10^12 cents) or a ttl_ms outside 1..24 h."""
        try:
            request = commands.HoldRequest.model_validate({
                **scope_ids.model_dump(by_alias=True, exclude_none=True),
                "amountUsdCents": Decimal(estimate_usd_cents), "ttlMs": ttl_ms,
                "idempotencyKey": idempotency_key,
            })
        except pydantic.ValidationError as exc:
            raise ValueError(str(exc)) from exc
        return await self.place(request, owner)

    async def get(self, hold_id: str) -> records.Hold:
        hold = await self._db.get_hold(hold_id)
        if hold is None:
            raise errors.NotFound(f"no hold {hold_id}")
        return hold.as_of(self._clock())

    async def commit(self, hold_id: str, commit: commands.HoldCommit) -> records.SpendOutcome:
        """Charge the actual cost exactly as /spend does (crossings, pauses, the stop rule)
        and free the hold; the same cost again replays the first answer (duplicate)."""
        hold = await self._db.get_hold(hold_id)
        if hold is None:
            raise errors.NotFound(f"no hold {hold_id}")
        request = holds.spend_of(hold, commit)
        charged = await self._db.commit_hold(hold_id, request, budgets.fingerprint(request))
        if not charged.spend.duplicate:
            self._metrics.holds.labels("committed").inc()
        return spending.answered(charged, request, self._metrics)

    async def release(self, hold_id: str) -> records.Hold:
        hold = await self._db.release_hold(hold_id)
        self._metrics.holds.labels("released").inc()
        return hold
