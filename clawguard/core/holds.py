"""The hold rules: place (does the estimate fit under every cap?), replay, commit, release.

A hold reserves an estimate on the scopes it names before a step runs, so N
concurrent steps cannot all pass a cap that only one of them fits under. It is
placed only when, for every cap-mode budget of its chain, spent (in the
current window) + live holds + the estimate stays within the limit; a paused
cap refuses it outright. A hold counts until it is committed (its actual cost
is charged as a spend: core.budgets.charge), released, or past its expiry,
when it stops counting at once (records.Hold.as_of); the reaper writes
`expired` later. With holds, a cap is exceeded by at most one step's actual
cost minus its estimate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pydantic_core

from clawguard.core import budgets, commands, errors, money, records

# The key a commit's spend is stored under in the ledger: one per hold, so a repeated
# commit replays its first answer (another cost is the 409 of a reused key). API key ids,
# which prefix the executors' own spend keys (budgets.ledger_key), never start with "@".
COMMIT_KEY_PREFIX = "@hold:"


@dataclass(frozen=True, slots=True)
class StoredHold:
    """A hold as an engine found it under its idempotency key."""

    hold: records.Hold
    fingerprint: str


def fingerprint(request: commands.HoldRequest) -> str:
    """The fields that make two holds under one idempotency key the same hold (the amount as
    micros, so 0.4 == 0.40; the ttl as sent, None when left to the default)."""
    fields: dict[str, Any] = {
        "agent_id": request.agent_id, "mission_id": request.mission_id,
        "team_id": request.team_id, "tenant_id": request.tenant_id, "run_id": request.run_id,
        "amount_micros": request.amount_micros, "ttl_ms": request.ttl_ms,
    }
    return hashlib.sha256(pydantic_core.to_json(fields)).hexdigest()


def replay(seen: StoredHold, fingerprint: str, now: int) -> records.Hold:
    """The same key again: the same hold as it is now, or 409 for another body."""
    if seen.fingerprint != fingerprint:
        raise errors.IdempotencyConflict(
            "this idempotencyKey was used with a different body", {"holdId": seen.hold.id}
        )
    return seen.hold.as_of(now)


def place(
    chain: list[budgets.Level], held: Mapping[str, int],
    request: commands.HoldRequest, now: int, ttl_ms: int, new_id: str,
) -> records.Hold:
    """The hold to insert, or BudgetPaused / BudgetExhausted naming the first scope (agent ->
    tenant) that refuses it; a paused cap anywhere in the chain is named before any cap it
    would merely exhaust. `chain` is the chain's budget rows in chain order, `held` what
    live holds reserve on each of its scopes (by scope type)."""
    amount = request.amount_micros
    levels = [(row, *budgets.window_level(row, now)) for row in chain]
    for row, _, status, _, _ in levels:
        if row.mode == "cap" and status == "paused":
            raise errors.BudgetPaused(f"the {row.scope} budget {row.scope_id} is paused",
                                      {"scope": row.scope, "scopeId": row.scope_id})
    for row, spent, _, _, _ in levels:
        room = row.limit * money.MICROS_PER_CENT - spent - held.get(row.scope, 0)
        if row.mode == "cap" and amount > room:
            raise errors.BudgetExhausted(
                f"the {row.scope} budget {row.scope_id} has {max(room, 0)} micros left"
                f" for a hold of {amount}",
                {"scope": row.scope, "scopeId": row.scope_id},
            )
    scopes = [
        records.HeldScope(
            scope=row.scope, scope_id=row.scope_id, status=status, mode=row.mode,
            spent_usd_cents=money.micros_to_cents(spent), spent_usd_micros=spent,
            limit_usd_cents=row.limit, window_start=start, window_end=end,
            held_usd_micros=held.get(row.scope, 0) + amount,
        )
        for row, spent, status, start, end in levels
    ]
    return records.Hold(
        id=new_id, agent_id=request.agent_id, mission_id=request.mission_id,
        team_id=request.team_id, tenant_id=request.tenant_id, run_id=request.run_id,
        amount_usd_micros=amount, status="held", created_at=now, expires_at=now + ttl_ms,
        resolved_at=None, spend_id=None, scopes=scopes,
    )


def _require(hold: records.Hold | None, hold_id: str) -> records.Hold:
    if hold is None:
        raise errors.NotFound(f"no hold {hold_id}")
    return hold


def _not_held(hold: records.Hold) -> errors.Conflict:
    return errors.Conflict(f"the hold is {hold.status}",
                           {"holdId": hold.id, "status": hold.status})


def commit_key(hold_id: str) -> str:
    return COMMIT_KEY_PREFIX + hold_id


def spend_of(hold: records.Hold, commit: commands.HoldCommit) -> commands.SpendRequest:
    """The spend a commit records: the hold's scopes and run, the actual cost."""
    return commands.SpendRequest.model_construct(
        agent_id=hold.agent_id, mission_id=hold.mission_id, team_id=hold.team_id,
        tenant_id=hold.tenant_id, run_id=hold.run_id, cost_usd_cents=commit.cost_usd_cents,
        idempotency_key=None, task_id=commit.task_id, model=commit.model,
        input_tokens=commit.input_tokens, output_tokens=commit.output_tokens,
    )


def commit(hold: records.Hold | None, hold_id: str, now: int) -> Literal["charge", "replay"]:
    """Whether a commit charges (the hold is held) or replays the first commit's answer
    (committed already: the ledger key then tells the same cost from another, 409);
    NotFound; Conflict when released or expired."""
    current = _require(hold, hold_id).as_of(now)
    if current.status == "held":
        return "charge"
    if current.status == "committed":
        return "replay"
    raise _not_held(current)


def committed(hold: records.Hold, spend_id: int, now: int) -> records.Hold:
    return hold.model_copy(update={"status": "committed", "resolved_at": now,
                                   "spend_id": spend_id})


def release(hold: records.Hold | None, hold_id: str, now: int) -> records.Hold:
    """The released hold to write; NotFound; Conflict unless it is held (and not past expiry)."""
    current = _require(hold, hold_id).as_of(now)
    if current.status != "held":
        raise _not_held(current)
    return current.model_copy(update={"status": "released", "resolved_at": now})
