"""The budget rules: set, delete, resume, charge a spend, replay a retry, and the stop rule.

Each decider takes the rows an engine loaded, inside its write transaction,
and the request; it returns what to write and the audit events to append.
The engine applies both in that same transaction, so a crossing or a pause is
decided, and audited, exactly once whichever engine runs it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pydantic_core

from clawguard.core import audit, commands, errors, money, principals, records


@dataclass(slots=True)
class Level:
    """A budget row as the spend path reads and charges it (micros spent, cents limit)."""

    id: str
    scope: records.Scope
    scope_id: str
    limit: int
    spent: int
    status: money.Status
    mode: money.Mode


@dataclass(frozen=True, slots=True)
class BudgetChange:
    """A budget row to insert (`created`) or to update, and what to audit."""

    budget: records.Budget
    created: bool
    events: list[audit.Event]


@dataclass(frozen=True, slots=True)
class Charge:
    """A spend's effect: each budgeted scope after it, each row's new level, the events."""

    scopes: list[records.ScopeState]
    levels: list[tuple[Level, int, money.Status]]  # (row, new spent micros, new status)
    events: list[audit.Event]


@dataclass(frozen=True, slots=True)
class StoredSpend:
    """A ledger row found under a spend's idempotency key."""

    id: int
    fingerprint: str
    cost_micros: int
    scopes_json: str | bytes


# The spend fields that make two spends with one idempotency key the same spend, sorted so
# that the JSON below is canonical: (name in the JSON, attribute). The amount is the one the
# caller sent, so a priced spend's retry matches whatever the price table says by then.
_FINGERPRINTED = (("agent_id", "agent_id"), ("cost_micros", "given_micros"),
                  ("input_tokens", "input_tokens"), ("mission_id", "mission_id"),
                  ("model", "model"), ("output_tokens", "output_tokens"),
                  ("task_id", "task_id"), ("team_id", "team_id"), ("tenant_id", "tenant_id"))


def fingerprint(request: commands.SpendRequest) -> str:
    """A canonical JSON of the named fields that are set, amount as micros (0.4 == 0.40).

    Fields left out are not in it, so a field added to the API later does not
    change the fingerprint of a retry that does not use it. (pydantic-core's
    encoder: this is on the spend path, and it is about as fast as the repr it
    replaced, where json.dumps(sort_keys=True) is three times slower.)
    """
    fields: dict[str, Any] = {}
    for name, attribute in _FINGERPRINTED:
        value = getattr(request, attribute)
        if value is not None:
            fields[name] = value
    return hashlib.sha256(pydantic_core.to_json(fields)).hexdigest()


def ledger_key(owner: str, idempotency_key: str | None) -> str | None:
    """The key a spend's idempotency key is stored under: scoped to the API key that made it
    (`owner`), so one executor can neither replay nor block another's spends."""
    return None if idempotency_key is None else f"{owner}:{idempotency_key}"


def stop_reason(scopes: list[records.ScopeState]) -> str | None:
    """`budget_paused:<scope>` for the first paused scope, agent -> mission -> team -> tenant.

    Only a cap-mode row is ever stored as paused (a warn row clamps at
    soft_capped), so a paused scope is a cap that has fired.
    """
    for state in scopes:
        if state.status == "paused":
            return f"budget_paused:{state.scope}"
    return None


def agent_of(scope: str, scope_id: str, agent_id: str | None = None) -> str | None:
    """The agent an audit row is about: the scope's id for an agent budget."""
    return scope_id if scope == "agent" else agent_id


def _details(scope: str, scope_id: str, budget_id: str, limit: int, spent: int) -> dict[str, Any]:
    return {"scope": scope, "scopeId": scope_id, "budgetId": budget_id,
            "limitUsdCents": limit, "spentUsdMicros": spent}


def _paused(details: dict[str, Any]) -> audit.Event:
    """The cap_hit row written the moment a budget becomes paused, whatever paused it."""
    return audit.Event("cap_hit", "budget.paused", agent_of(details["scope"], details["scopeId"]),
                       details)


def _changed(
    before: records.Budget, limit: int, mode: money.Mode, status: money.Status, now: int
) -> tuple[records.Budget, list[audit.Event]]:
    budget = before.model_copy(update={
        "limit_usd_cents": limit, "status": status, "mode": mode, "updated_at": now,
    })
    events = []
    if status == "paused" and before.status != "paused":
        events.append(_paused(_details(before.scope, before.scope_id, before.id, limit,
                                       before.spent_usd_micros)))
    return budget, events


def set_budget(
    existing: records.Budget | None, request: commands.BudgetSet, now: int, new_id: str,
    actor: principals.Principal,
) -> BudgetChange:
    """Create, or change the limit, mode and tenant (omitting mode or tenantId keeps it; an
    explicit null tenantId clears it; status recomputed); the audit row names the key."""
    if existing is None:
        budget = records.Budget(
            id=new_id, scope=request.scope, scope_id=request.scope_id,
            tenant_id=request.tenant_id,
            limit_usd_cents=request.limit_usd_cents, spent_usd_cents=0, spent_usd_micros=0,
            held_usd_cents=0, status="active", mode=request.mode or "warn", created_at=now,
            updated_at=now,
        )
        events: list[audit.Event] = []
        previous: dict[str, Any] = {}
    else:
        mode = request.mode or existing.mode  # omitting mode keeps it (Clawboo's trap fixed)
        status = money.status_for(existing.spent_usd_micros, request.limit_usd_cents, mode)
        budget, events = _changed(existing, request.limit_usd_cents, mode, status, now)
        if "tenant_id" in request.model_fields_set:
            budget = budget.model_copy(update={"tenant_id": request.tenant_id})
        previous = {"previousLimitUsdCents": existing.limit_usd_cents,
                    "previousMode": existing.mode, "previousStatus": existing.status,
                    "previousTenantId": existing.tenant_id}
    events.append(audit.Event(
        "budget", "budget.set", agent_of(budget.scope, budget.scope_id),
        {"scope": budget.scope, "scopeId": budget.scope_id, "budgetId": budget.id,
         "tenantId": budget.tenant_id, "limitUsdCents": budget.limit_usd_cents,
         "mode": budget.mode, "status": budget.status, **previous, **principals.actor(actor)},
    ))
    return BudgetChange(budget, existing is None, events)


def _require(existing: records.Budget | None, scope: str, scope_id: str) -> records.Budget:
    if existing is None:
        raise errors.NotFound(f"no budget for {scope} {scope_id}")
    return existing


def delete_budget(
    existing: records.Budget | None, scope: str, scope_id: str, actor: principals.Principal
) -> audit.Event:
    """The row goes (the scope becomes uncapped); its ledger stays."""
    budget = _require(existing, scope, scope_id)
    return audit.Event(
        "budget", "budget.deleted", agent_of(scope, scope_id),
        {"scope": scope, "scopeId": scope_id, "budgetId": budget.id,
         "limitUsdCents": budget.limit_usd_cents, "spentUsdMicros": budget.spent_usd_micros,
         **principals.actor(actor)},
    )


def resume_budget(
    existing: records.Budget | None, scope: str, scope_id: str, grace_cents: int | None,
    now: int, actor: principals.Principal,
) -> tuple[records.Resumed, list[audit.Event]]:
    """An operator's resume (money.resume): the row to write back, and what to audit."""
    before = _require(existing, scope, scope_id)
    limit, status, will_repause = money.resume(
        before.spent_usd_micros, before.limit_usd_cents, before.mode, grace_cents
    )
    budget, events = _changed(before, limit, before.mode, status, now)
    events.append(audit.Event(
        "budget", "budget.resumed", agent_of(scope, scope_id),
        {"scope": scope, "scopeId": scope_id, "budgetId": before.id, "graceUsdCents": grace_cents,
         "previousLimitUsdCents": before.limit_usd_cents, "limitUsdCents": limit,
         "previousStatus": before.status, "status": status, "willRepause": will_repause,
         **principals.actor(actor)},
    ))
    return records.Resumed(budget=budget, will_repause=will_repause), events


def replay(seen: StoredSpend, fingerprint: str) -> records.SpendCharged:
    """A retry under a used idempotency key: the first answer again, or 409 for another body."""
    if seen.fingerprint != fingerprint:
        raise errors.IdempotencyConflict(
            "this idempotencyKey was used with a different body", {"spendId": seen.id}
        )
    return records.SpendCharged(
        spend=records.SpendRecord(id=seen.id, cost_usd_micros=seen.cost_micros, duplicate=True),
        scopes=records.SCOPE_STATES.validate_json(seen.scopes_json),
    )


def charge(chain: list[Level], request: commands.SpendRequest) -> Charge:
    """Charge a spend to every budgeted scope of its chain (agent -> tenant order).

    The spend is always charged, even to a paused scope: the money is gone.
    Each crossing (80% soft, 100% hard, a jump past both reports only hard) and
    each pause is reported once, because it is decided from the level before.
    """
    cost = request.cost_micros
    levels: list[tuple[Level, int, money.Status]] = []
    states: list[records.ScopeState] = []
    events: list[audit.Event] = []
    for row in chain:
        spent = row.spent + cost
        if spent > money.MAX_MICROS:  # checked for every scope before anything is written
            raise errors.Unprocessable(f"the {row.scope} budget's spend total would overflow")
        crossed = money.crossing(row.spent, spent, row.limit)
        status = money.status_for(spent, row.limit, row.mode)
        levels.append((row, spent, status))
        states.append(records.ScopeState(
            scope=row.scope, scope_id=row.scope_id, status=status, mode=row.mode,
            spent_usd_cents=money.micros_to_cents(spent), spent_usd_micros=spent,
            limit_usd_cents=row.limit, crossed=crossed,
        ))
        paused = status == "paused" and row.status != "paused"
        if crossed != "none" or paused:  # rare: details only when an event needs them
            details = _details(row.scope, row.scope_id, row.id, row.limit, spent)
            if crossed != "none":
                events.append(audit.Event(
                    "budget", f"budget.crossed_{crossed}", request.agent_id,
                    details | {"crossed": crossed, "mode": row.mode, "taskId": request.task_id},
                ))
            if paused:
                events.append(_paused(details))
    return Charge(states, levels, events)


CHAIN_ORDER = {scope: index for index, scope in enumerate(records.SCOPES)}


def chain_states(chain: Iterable[records.Budget]) -> list[records.ScopeState]:
    """A scope chain's budgets as a preflight shows them, agent -> tenant."""
    return [
        records.ScopeState(
            scope=budget.scope, scope_id=budget.scope_id, status=budget.status,
            mode=budget.mode, spent_usd_cents=budget.spent_usd_cents,
            spent_usd_micros=budget.spent_usd_micros, limit_usd_cents=budget.limit_usd_cents,
            crossed="none",
        )
        for budget in sorted(chain, key=lambda budget: CHAIN_ORDER[budget.scope])
    ]


def in_chain_order(chain: list[Level]) -> list[Level]:
    """Agent, mission, team, tenant: the order scopes are reported and stopped in."""
    return sorted(chain, key=lambda row: CHAIN_ORDER[row.scope])
