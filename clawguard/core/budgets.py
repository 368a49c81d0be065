"""The budget rules: set, delete, resume, charge a spend, replay a retry, the stop rule, windows.

Each decider takes the rows an engine loaded, inside its write transaction,
and the request; it returns what to write and the audit events to append.
The engine applies both in that same transaction, so a crossing or a pause is
decided, and audited, exactly once whichever engine runs it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core

from clawguard.core import audit, commands, errors, money, principals, records, windows


@dataclass(slots=True)
class Level:
    """A budget row as the spend path reads and charges it (micros spent, cents limit).

    `spent` and `status` are those of the window that starts at `window_start`
    (None for a budget without a window); `window_end` is that window's end,
    worked out once per row loaded rather than once per charge.
    """

    id: str
    scope: records.Scope
    scope_id: str
    limit: int
    spent: int
    status: money.Status
    mode: money.Mode
    window: windows.Window = "none"
    timezone: str = windows.DEFAULT_ZONE
    window_start: int | None = None
    window_end: int | None = None


# The columns a Level is loaded from, in its field order (both engines).
LEVEL_COLUMNS = ("id, scope, scope_id, limit_cents, spent_micros, status, mode, window_kind,"
                 " window_zone, window_start")


def window_level(row: Level, now: int) -> tuple[int, money.Status, int | None, int | None]:
    """(spent, status, window start, window end) of `row` at `now`.

    In a later window than the row's, the budget starts again: spent 0, status
    active (a budget its cap paused is active again), and crossings re-armed,
    since they are decided from the level before a charge. A charge stamped
    before the row's window (clocks of two instances a little apart) counts in
    the row's window.
    """
    if row.window == "none":
        return row.spent, row.status, None, None
    start, end = row.window_start, row.window_end
    if start is not None and end is not None and start <= now < end:  # nearly always
        return row.spent, row.status, start, end
    found = windows.bounds(row.window, row.timezone, now)
    assert found is not None
    if start is None or found[0] > start:
        return 0, "active", found[0], found[1]
    if found[0] < start:  # stamped before the row's window: counts in it
        found = windows.bounds(row.window, row.timezone, start)
        assert found is not None
    row.window_end = found[1]  # a memo of the row's window end, not a change of the row
    return row.spent, row.status, start, found[1]


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
    # (row, new spent micros, new status, the window start the spent counts from)
    levels: list[tuple[Level, int, money.Status, int | None]]
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


def stop_reason(scopes: Sequence[records.ScopeState]) -> str | None:
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


def recount_from(existing: records.Budget | None, request: commands.BudgetSet, now: int
                 ) -> int | None:
    """When a set changes an existing row's window or timezone, the instant from which the
    engine must sum the row's charges for its new spent (0: all of them, for "none");
    None when spent stands as it is."""
    if existing is None:
        return None
    window = request.window or existing.window
    timezone = request.timezone or existing.timezone
    if (window, timezone) == (existing.window, existing.timezone):
        return None
    found = windows.bounds(window, timezone, now)
    return 0 if found is None else found[0]


def set_budget(
    existing: records.Budget | None, request: commands.BudgetSet, now: int, new_id: str,
    actor: principals.Principal, recounted: int | None = None,
) -> BudgetChange:
    """Create, or change the limit, mode, window, timezone and tenant (omitting any keeps it;
    an explicit null tenantId clears it; status recomputed). `existing` is as of `now`
    (`current`); `recounted` is the spend counted from recount_from's instant. The audit
    row names the key."""
    if existing is None:
        window, timezone = request.window or "none", request.timezone or windows.DEFAULT_ZONE
        found = windows.bounds(window, timezone, now)
        budget = records.Budget(
            id=new_id, scope=request.scope, scope_id=request.scope_id,
            tenant_id=request.tenant_id,
            limit_usd_cents=request.limit_usd_cents, spent_usd_cents=0, spent_usd_micros=0,
            held_usd_cents=0, status="active", mode=request.mode or "warn", created_at=now,
            updated_at=now, window=window, timezone=timezone,
            window_start=None if found is None else found[0],
            window_end=None if found is None else found[1],
        )
        events: list[audit.Event] = []
        previous: dict[str, Any] = {}
    else:
        before = existing
        if recounted is not None:
            window = request.window or existing.window
            timezone = request.timezone or existing.timezone
            found = windows.bounds(window, timezone, now)
            before = existing.model_copy(update={
                "window": window, "timezone": timezone,
                "window_start": None if found is None else found[0],
                "window_end": None if found is None else found[1],
                "spent_usd_micros": recounted,
                "spent_usd_cents": money.micros_to_cents(recounted),
            })
        mode = request.mode or existing.mode  # omitting mode keeps it (Clawboo's trap fixed)
        status = money.status_for(before.spent_usd_micros, request.limit_usd_cents, mode)
        budget, events = _changed(before, request.limit_usd_cents, mode, status, now)
        if "tenant_id" in request.model_fields_set:
            budget = budget.model_copy(update={"tenant_id": request.tenant_id})
        previous = {"previousLimitUsdCents": existing.limit_usd_cents,
                    "previousMode": existing.mode, "previousStatus": existing.status,
                    "previousTenantId": existing.tenant_id}
        if recounted is not None:
            previous |= {"previousWindow": existing.window,
                         "previousTimezone": existing.timezone}
    events.append(audit.Event(
        "budget", "budget.set", agent_of(budget.scope, budget.scope_id),
        {"scope": budget.scope, "scopeId": budget.scope_id, "budgetId": budget.id,
         "tenantId": budget.tenant_id, "limitUsdCents": budget.limit_usd_cents,
         "mode": budget.mode, "status": budget.status, "window": budget.window,
         "timezone": budget.timezone, **previous, **principals.actor(actor)},
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


def charge(chain: list[Level], request: commands.SpendRequest, now: int) -> Charge:
    """Charge a spend to every budgeted scope of its chain (agent -> tenant order).

    The spend is always charged, even to a paused scope: the money is gone.
    Each crossing (80% soft, 100% hard, a jump past both reports only hard) and
    each pause is reported once, because it is decided from the level before,
    in the window `now` is in (window_level: a new window re-arms both).
    """
    cost = request.cost_micros
    levels: list[tuple[Level, int, money.Status, int | None]] = []
    states: list[records.ScopeState] = []
    events: list[audit.Event] = []
    for row in chain:
        if row.window == "none":  # inline: most rows have no window, and this is the hot path
            before, status_before, start, end = row.spent, row.status, None, None
        else:
            before, status_before, start, end = window_level(row, now)
        spent = before + cost
        if spent > money.MAX_MICROS:  # checked for every scope before anything is written
            raise errors.Unprocessable(f"the {row.scope} budget's spend total would overflow")
        crossed = money.crossing(before, spent, row.limit)
        status = money.status_for(spent, row.limit, row.mode)
        levels.append((row, spent, status, start))
        if start is None:  # the window fields' defaults, left to pydantic: fewer to validate
            states.append(records.ScopeState(
                scope=row.scope, scope_id=row.scope_id, status=status, mode=row.mode,
                spent_usd_cents=money.micros_to_cents(spent), spent_usd_micros=spent,
                limit_usd_cents=row.limit, crossed=crossed,
            ))
        else:
            states.append(records.ScopeState(
                scope=row.scope, scope_id=row.scope_id, status=status, mode=row.mode,
                spent_usd_cents=money.micros_to_cents(spent), spent_usd_micros=spent,
                limit_usd_cents=row.limit, crossed=crossed, window_start=start, window_end=end,
            ))
        paused = status == "paused" and status_before != "paused"
        if crossed != "none" or paused:  # rare: details only when an event needs them
            details = _details(row.scope, row.scope_id, row.id, row.limit, spent)
            if crossed != "none":
                events.append(audit.Event(
                    "budget", f"budget.crossed_{crossed}", request.agent_id,
                    details | {"crossed": crossed, "mode": row.mode, "taskId": request.task_id,
                               **({"windowStart": start} if start is not None else {})},
                ))
            if paused:
                events.append(_paused(details))
    return Charge(states, levels, events)


CHAIN_ORDER = {scope: index for index, scope in enumerate(records.SCOPES)}


def chain_states(chain: Iterable[records.Budget]) -> list[records.HeldScope]:
    """A scope chain's budgets (as of now: `current`) as a preflight shows them, agent ->
    tenant."""
    return [
        records.HeldScope(
            scope=budget.scope, scope_id=budget.scope_id, status=budget.status,
            mode=budget.mode, spent_usd_cents=budget.spent_usd_cents,
            spent_usd_micros=budget.spent_usd_micros, limit_usd_cents=budget.limit_usd_cents,
            crossed="none", window_start=budget.window_start, window_end=budget.window_end,
            held_usd_micros=budget.held_usd_micros,
        )
        for budget in sorted(chain, key=lambda budget: CHAIN_ORDER[budget.scope])
    ]


def current(budget: records.Budget, now: int, held_micros: int = 0) -> records.Budget:
    """A stored row as it reads at `now`: its window's bounds, and in a later window than the
    one it counts, spent 0 and status active (window_level's rule); with `held_micros`, what
    live holds reserve on it."""
    if budget.window == "none" and not held_micros:
        return budget
    row = Level(budget.id, budget.scope, budget.scope_id, budget.limit_usd_cents,
                budget.spent_usd_micros, budget.status, budget.mode, budget.window,
                budget.timezone, budget.window_start)
    spent, status, start, end = window_level(row, now)
    return budget.model_copy(update={
        "spent_usd_micros": spent, "spent_usd_cents": money.micros_to_cents(spent),
        "status": status, "window_start": start, "window_end": end,
        "held_usd_micros": held_micros, "held_usd_cents": money.micros_to_cents(held_micros),
    })


def in_chain_order(chain: list[Level]) -> list[Level]:
    """Agent, mission, team, tenant: the order scopes are reported and stopped in."""
    return sorted(chain, key=lambda row: CHAIN_ORDER[row.scope])
