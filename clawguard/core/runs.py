"""The run rules: start (quotas, delegation caps), end, lease expiry, breakers, quota overrides.

Each decider takes what an engine loaded inside its write transaction, the
request and `now`; it returns the row to write and the audit events, or a
refusal that the engine audits and the store raises once committed. So a
quota or a cap is counted, and a breaker trips, the same way on every engine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from clawguard.core import audit, commands, errors, records

HOUR_MS = 3_600_000
DEFAULT_TENANT = "default"
QUOTA_KEYS = ("runs_per_hour", "concurrent_runs")
QUOTA_CEILING_FACTOR = 100
SEEN_OUTPUTS_MAX = 256  # successful outputs remembered for no-progress, oldest dropped


@dataclass(frozen=True, slots=True)
class Breakers:
    max_tool_iterations: int = 30
    repeat_failure_threshold: int = 3
    no_progress_threshold: int = 6
    token_velocity_ceiling: int = 200_000  # tokens a minute
    velocity_min_window_ms: int = 15_000
    repeat_policy_denied_threshold: int = 2


@dataclass(frozen=True, slots=True)
class Delegation:
    max_depth: int = 2
    max_children: int = 24
    max_root_runs: int = 30
    root_window_ms: int = 300_000


@dataclass(frozen=True, slots=True)
class Rules:
    """The settings the deciders need, from [runs], [breakers] and [delegation]."""

    lease_ms: int = 3_600_000
    breakers: Breakers = field(default_factory=Breakers)
    delegation: Delegation = field(default_factory=Delegation)


# --- quotas ---------------------------------------------------------------------------------


def tenant_of(request: commands.RunStart) -> str:
    return request.tenant_id or DEFAULT_TENANT


def effective(plan: dict[str, int], overrides: dict[str, int]) -> dict[str, int]:
    return {key: overrides.get(key, plan[key]) for key in QUOTA_KEYS}


def quota_view(plan_name: str, plan: dict[str, int], overrides: dict[str, int]) -> records.Quota:
    return records.Quota(plan=plan_name, limits=dict(plan), overrides=dict(overrides),
                         effective=effective(plan, overrides))


def check_patch(patch: dict[str, Any], plan: dict[str, int]) -> dict[str, int | None]:
    """A PATCH body as overrides to set (an int) or remove (None): an unknown key or a value
    that is not an integer is malformed (400); 0, negative or over 100x the plan's default
    is refused (422). Each error names its key."""
    for key, value in patch.items():
        if key not in QUOTA_KEYS:
            raise errors.InvalidInput(f"unknown quota key {key!r}", {"key": key})
        if value is not None and type(value) is not int:  # bool is an int; 10.0 is a Decimal
            raise errors.InvalidInput(f"{key} must be an integer or null", {"key": key})
    for key, value in patch.items():
        ceiling = plan[key] * QUOTA_CEILING_FACTOR
        if value is not None and not 0 < value <= ceiling:
            raise errors.Unprocessable(
                f"{key} must be between 1 and {ceiling} ({QUOTA_CEILING_FACTOR}x the plan's"
                f" default)", {"key": key, "max": ceiling},
            )
    return patch


def apply_patch(
    tenant_id: str, current: dict[str, int], patch: dict[str, int | None]
) -> tuple[dict[str, int], audit.Event]:
    overrides = dict(current)
    for key, value in patch.items():
        if value is None:
            overrides.pop(key, None)
        else:
            overrides[key] = value
    event = audit.Event("budget", "quota.set", None, {
        "tenantId": tenant_id, "previousOverrides": current, "overrides": overrides,
    })
    return overrides, event


@dataclass(frozen=True, slots=True)
class TenantLoad:
    """The tenant's runs at `now`: those holding a slot, and the starts of the last hour."""

    running: int
    earliest_lease_end: int | None
    started_last_hour: int
    earliest_start: int | None


def hour_since(now: int) -> int:
    """Starts after this instant are in the sliding hour that ends at `now`."""
    return now - HOUR_MS


def root_since(now: int, rules: Rules) -> int:
    return now - rules.delegation.root_window_ms


# --- starting a run -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parent:
    run: records.Run
    children: int  # every child it ever had, ended ones too


@dataclass(frozen=True, slots=True)
class Started:
    run: records.Run
    tenant_id: str
    replayed: bool
    events: list[audit.Event]


@dataclass(frozen=True, slots=True)
class Refused:
    """A start refused by a quota or a cap: audited, then raised once the audit commits."""

    error: errors.ClawguardError
    events: list[audit.Event]


def fingerprint(request: commands.RunStart) -> str:
    fields = request.model_dump(exclude={"idempotency_key"}, exclude_none=True)
    return hashlib.sha256(audit.canonical(fields).encode()).hexdigest()


def replay(seen: records.Run, seen_fingerprint: str, request: commands.RunStart) -> Started:
    if seen_fingerprint != fingerprint(request):
        raise errors.IdempotencyConflict("this idempotencyKey was used with a different body",
                                         {"runId": seen.id})
    return Started(seen, tenant_of(request), True, [])


def _cap(request: commands.RunStart, cap: str, limit: int) -> Refused:
    error = errors.DelegationCap(f"delegation cap {cap} ({limit}) reached",
                                 {"cap": cap, "limit": limit})
    return Refused(error, [audit.Event("cap_hit", "delegation.capped", request.agent_id, {
        "cap": cap, "limit": limit, "parentRunId": request.parent_run_id,
    })])


def _quota(request: commands.RunStart, key: str, limit: int, retry_after_ms: int) -> Refused:
    retry_after_ms = max(retry_after_ms, 1)
    details = {"key": key, "limit": limit, "retryAfterMs": retry_after_ms}
    error = errors.QuotaExceeded(f"quota {key} ({limit}) reached", details)
    return Refused(error, [audit.Event("cap_hit", "quota.exceeded", request.agent_id,
                                       details | {"tenantId": tenant_of(request)})])


def start(
    request: commands.RunStart, parent: Parent | None, root_starts: tuple[int, int | None],
    load: TenantLoad, limits: dict[str, int], rules: Rules, now: int, new_id: str,
) -> Started | Refused:
    """A new run, or why not: delegation caps first (the shape of the tree), then quotas.

    `root_starts` is (count, earliest) of the agent's root starts in its window.
    """
    caps = rules.delegation
    if request.parent_run_id is not None:
        if parent is None:
            raise errors.NotFound(f"no run {request.parent_run_id}")
        if parent.run.as_of(now).status != "running":
            raise errors.Conflict(f"the parent run is {parent.run.as_of(now).status}",
                                  {"parentRunId": parent.run.id})
        if parent.run.depth >= caps.max_depth:
            return _cap(request, "max_depth", caps.max_depth)
        if parent.children >= caps.max_children:
            return _cap(request, "max_children", caps.max_children)
        depth = parent.run.depth + 1
    else:
        if root_starts[0] >= caps.max_root_runs:
            return _cap(request, "max_root_runs", caps.max_root_runs)
        depth = 0
    per_hour, concurrent = limits["runs_per_hour"], limits["concurrent_runs"]
    if load.started_last_hour >= per_hour:
        assert load.earliest_start is not None
        return _quota(request, "runs_per_hour", per_hour, load.earliest_start + HOUR_MS - now)
    if load.running >= concurrent:
        assert load.earliest_lease_end is not None
        return _quota(request, "concurrent_runs", concurrent, load.earliest_lease_end - now)
    run = records.Run(
        id=new_id, agent_id=request.agent_id, status="running", depth=depth,
        parent_run_id=request.parent_run_id, started_at=now,
        lease_expires_at=now + rules.lease_ms, ended_at=None,
    )
    return Started(run, tenant_of(request), False, [])


def preflight_refusal(run: records.Run | None, run_id: str) -> str | None:
    """Why a run's next step may not start: its breakers stopped it."""
    if run is None:
        raise errors.NotFound(f"no run {run_id}")
    return "circuit_break" if run.status == "tripped" else None


def outcome(result: Started | Refused) -> Started:
    """What the store answers once the transaction has committed."""
    if isinstance(result, Refused):
        raise result.error
    return result


def end(run: records.Run | None, run_id: str, now: int) -> records.Run | None:
    """The ended row to write, or None when it is ended already (ending twice is harmless)."""
    if run is None:
        raise errors.NotFound(f"no run {run_id}")
    current = run.as_of(now)
    if current.status == "ended":
        return None
    if current.status != "running":
        raise errors.Conflict(f"the run is {current.status}", {"status": current.status})
    return run.model_copy(update={"status": "ended", "ended_at": now})


# --- circuit breakers -----------------------------------------------------------------------

Reason = Literal["iteration-cap", "repeat-failure", "no-progress", "token-velocity",
                 "repeat-policy-denied"]
REASONS: tuple[str, ...] = Reason.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class BreakerState:
    """What the breakers remember of a run: stored with it, so it survives a restart."""

    tool_iterations: int = 0
    consec_failures: int = 0
    last_failure: str | None = None
    non_productive: int = 0
    seen_outputs: tuple[str, ...] = ()
    consec_denials: int = 0
    last_denial: str | None = None
    first_cost_ts: int | None = None
    window_tokens: int = 0

    def to_json(self) -> str:
        return json.dumps({
            "toolIterations": self.tool_iterations, "consecFailures": self.consec_failures,
            "lastFailure": self.last_failure, "nonProductive": self.non_productive,
            "seenOutputs": list(self.seen_outputs), "consecDenials": self.consec_denials,
            "lastDenial": self.last_denial, "firstCostTs": self.first_cost_ts,
            "windowTokens": self.window_tokens,
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> BreakerState:
        if not text:
            return cls()
        d = json.loads(text)
        return cls(d["toolIterations"], d["consecFailures"], d["lastFailure"],
                   d["nonProductive"], tuple(d["seenOutputs"]), d["consecDenials"],
                   d["lastDenial"], d["firstCostTs"], d["windowTokens"])

    def counters(self) -> records.Counters:
        return records.Counters(
            tool_iterations=self.tool_iterations, consec_failures=self.consec_failures,
            non_productive=self.non_productive, consec_denials=self.consec_denials,
            window_tokens=self.window_tokens,
        )


def _step(
    state: BreakerState, event: commands.RunEvent, now: int, limits: Breakers
) -> tuple[BreakerState, tuple[Reason, str] | None]:
    """One event: the state after it, and the trip it causes, if any."""
    ts = event.ts if event.ts is not None else now
    sig = event.signature
    if event.kind == "tool-call":
        state = replace(state, tool_iterations=state.tool_iterations + 1)
        if state.tool_iterations > limits.max_tool_iterations:
            return state, ("iteration-cap", f"{state.tool_iterations} tool calls, more than"
                           f" {limits.max_tool_iterations}")
        return state, None
    if event.kind == "tool-result":
        if event.ok is True:
            # A new successful output is progress; the same one again is neutral.
            if sig is None or sig not in state.seen_outputs:
                seen = state.seen_outputs + ((sig,) if sig is not None else ())
                state = replace(state, non_productive=0, seen_outputs=seen[-SEEN_OUTPUTS_MAX:])
            return replace(state, consec_failures=0, last_failure=None, consec_denials=0,
                           last_denial=None), None
        repeats = state.consec_failures + 1 if sig == state.last_failure else 1
        state = replace(state, consec_failures=repeats, last_failure=sig,
                        non_productive=state.non_productive + 1)
        if repeats >= limits.repeat_failure_threshold:
            return state, ("repeat-failure", f"{sig!r} failed {repeats} times in a row")
        if state.non_productive >= limits.no_progress_threshold:
            return state, ("no-progress", f"{state.non_productive} results with no new"
                           " successful output")
        return state, None
    if event.kind == "cost":
        tokens = event.tokens or 0
        first = state.first_cost_ts
        if first is None:
            return replace(state, first_cost_ts=ts, window_tokens=tokens), None
        state = replace(state, window_tokens=state.window_tokens + tokens)
        elapsed = ts - first
        if elapsed >= limits.velocity_min_window_ms:
            per_minute = state.window_tokens * 60_000 // elapsed
            if per_minute > limits.token_velocity_ceiling:
                return state, ("token-velocity", f"{per_minute} tokens a minute, over"
                               f" {limits.token_velocity_ceiling}")
        return state, None
    # policy-denied
    repeats = state.consec_denials + 1 if sig == state.last_denial else 1
    state = replace(state, consec_denials=repeats, last_denial=sig)
    if repeats >= limits.repeat_policy_denied_threshold:
        return state, ("repeat-policy-denied", f"{sig!r} denied {repeats} times in a row")
    return state, None


@dataclass(frozen=True, slots=True)
class Applied:
    run: records.Run
    state: BreakerState
    tripped: records.Trip | None
    events: list[audit.Event]


def apply_events(
    run: records.Run | None, run_id: str, state: BreakerState,
    events: list[commands.RunEvent], rules: Rules, now: int,
) -> Applied:
    """Events in order, renewing the lease; the first trip stops the list and the run."""
    if run is None:
        raise errors.NotFound(f"no run {run_id}")
    current = run.as_of(now)
    if current.status != "running":
        raise errors.Conflict(f"the run is {current.status}", {"status": current.status})
    trip: tuple[Reason, str] | None = None
    for event in events:
        state, trip = _step(state, event, now, rules.breakers)
        if trip is not None:
            break
    if trip is None:
        renewed = run.model_copy(update={"lease_expires_at": now + rules.lease_ms})
        return Applied(renewed, state, None, [])
    reason, detail = trip
    tripped = records.Trip(reason=reason, detail=detail, counters=state.counters())
    stopped = run.model_copy(update={"status": "tripped", "ended_at": now})
    audited = audit.Event("circuit_break", f"breaker.{reason}", run.agent_id, {
        "runId": run.id, "reason": reason, "detail": detail,
        "counters": tripped.counters.to_json(),
    })
    return Applied(stopped, state, tripped, [audited])
