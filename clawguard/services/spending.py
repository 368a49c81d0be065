"""The budget kill-switch as executors and operators meet it: spend, preflight, the stop rule.

No I/O of its own: the charging itself is one store transaction, and the tier
math lives in money.py so the store can apply it inside that transaction.
"""

from __future__ import annotations

import hashlib

from clawguard.core import commands, errors, records
from clawguard.runtime import metrics
from clawguard.store import contract


def fingerprint(request: commands.SpendRequest) -> str:
    """What makes two spends with one idempotency key the same spend: all but the key.

    The amount counts as micros, so 0.4 and 0.40 are the same spend.
    """
    body = (request.agent_id, request.mission_id, request.team_id, request.tenant_id,
            request.cost_micros, request.task_id, request.model, request.input_tokens,
            request.output_tokens)
    return hashlib.sha256(repr(body).encode()).hexdigest()


def stop_reason(scopes: list[records.ScopeState]) -> str | None:
    """`budget_paused:<scope>` for the first paused scope, agent -> mission -> team -> tenant.

    Only a cap-mode row is ever stored as paused (a warn row clamps at
    soft_capped), so a paused scope is a cap that has fired.
    """
    for state in scopes:
        if state.status == "paused":
            return f"budget_paused:{state.scope}"
    return None


async def record_spend(
    db: contract.Store, request: commands.SpendRequest, counters: metrics.Metrics
) -> records.SpendOutcome:
    charged = await db.record_spend(request, fingerprint(request))
    reason = stop_reason(charged.scopes)
    outcome = "duplicate" if charged.spend.duplicate else "stopped" if reason else "recorded"
    counters.count_spend(
        outcome, (scope for scope, _ in request.named()), charged.spend.cost_usd_micros
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
    except errors.StoreUnavailable:
        return records.Preflight(allowed=False, reason="store_unavailable", scopes=[])
    reason = stop_reason(scopes)
    return records.Preflight(
        allowed=reason is None, reason=None if reason is None else "budget_paused", scopes=scopes
    )
