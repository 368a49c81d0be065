"""The run deciders as tables: breakers per reason, starts (caps, quotas), quota patches."""

from __future__ import annotations

from typing import Any

import pytest

from clawguard.core import commands, errors, records, runs

NOW = 1_800_000_000_000
RULES = runs.Rules()
PLAN = {"runs_per_hour": 300, "concurrent_runs": 10}
IDLE = runs.TenantLoad(0, None, 0, None)


def ev(kind: str, **fields: Any) -> commands.RunEvent:
    return commands.RunEvent.model_validate({"kind": kind, **fields})


def call(sig: str = "read a.txt") -> commands.RunEvent:
    return ev("tool-call", signature=sig)


def ok(sig: str) -> commands.RunEvent:
    return ev("tool-result", signature=sig, ok=True)


def fail(sig: str) -> commands.RunEvent:
    return ev("tool-result", signature=sig, ok=False)


def cost(tokens: int, ts: int) -> commands.RunEvent:
    return ev("cost", tokens=tokens, ts=ts)


def denied(sig: str) -> commands.RunEvent:
    return ev("policy-denied", signature=sig)


def running(depth: int = 0, lease: int = NOW + 1000) -> records.Run:
    return records.Run(id="run_1", agent_id="a1", status="running", depth=depth,
                       parent_run_id=None, started_at=NOW - 10, lease_expires_at=lease,
                       ended_at=None)


def trip_of(events: list[commands.RunEvent], rules: runs.Rules = RULES) -> str | None:
    applied = runs.apply_events(running(), "run_1", runs.BreakerState(), events, rules, NOW)
    return None if applied.tripped is None else applied.tripped.reason


REREAD = [e for _ in range(15) for e in (call(), ok("read a.txt: hello"))]  # 15 calls, 15 reads
BREAKER_TABLE = [
    ("healthy run re-reading the same file", REREAD, None),
    ("30 tool calls is the limit", [call(str(i)) for i in range(30)], None),
    ("31 tool calls", [call(str(i)) for i in range(31)], "iteration-cap"),
    ("same failure 2 times", [fail("x")] * 2, None),
    ("same failure 3 times", [fail("x")] * 3, "repeat-failure"),
    ("a success between failures resets", [fail("x"), fail("x"), ok("y"), fail("x")], None),
    ("result without ok is a failure", [ev("tool-result", signature="x")] * 3,
     "repeat-failure"),
    ("alternating failures", [fail("a"), fail("b")] * 3, "no-progress"),
    ("5 unproductive results", [fail("a"), fail("b")] * 2 + [fail("c")], None),
    ("a successful repeat is neutral", [ok("a"), fail("b"), ok("a"), fail("c"), ok("a"),
                                        fail("d"), fail("e"), fail("f"), fail("g")],
     "no-progress"),
    ("new output is progress", [fail("a"), fail("b"), fail("c"), fail("d"), fail("e"),
                                ok("new"), fail("f")], None),
    ("fast tokens, window too short", [cost(100_000, NOW), cost(100_000, NOW + 14_999)], None),
    ("fast tokens over 15 s", [cost(30_000, NOW), cost(30_000, NOW + 15_000)],
     "token-velocity"),  # 60k in 15 s = 240k/min
    ("exactly the ceiling", [cost(25_000, NOW), cost(25_000, NOW + 15_000)], None),  # 200k/min
    ("slow tokens", [cost(1_000, NOW + i * 10_000) for i in range(10)], None),
    ("one denial", [denied("rm -rf")], None),
    ("two identical denials", [denied("rm -rf"), denied("rm -rf")], "repeat-policy-denied"),
    ("two different denials", [denied("rm -rf"), denied("curl")], None),
    ("a success between denials", [denied("rm"), ok("ls"), denied("rm")], None),
]


@pytest.mark.parametrize(("events", "reason"), [(e, r) for _, e, r in BREAKER_TABLE],
                         ids=[name for name, _, _ in BREAKER_TABLE])
def test_breakers(events: list[commands.RunEvent], reason: str | None) -> None:
    assert trip_of(events) == reason


def test_a_trip_stops_the_list_and_is_audited_once() -> None:
    applied = runs.apply_events(running(), "run_1", runs.BreakerState(),
                                [fail("x")] * 3 + [call()], RULES, NOW)
    assert applied.run.status == "tripped" and applied.run.ended_at == NOW
    assert applied.state.tool_iterations == 0  # the call after the trip was not applied
    assert [(e.event_type, e.action) for e in applied.events] == [
        ("circuit_break", "breaker.repeat-failure")]


def test_counters_carry_over_between_posts_through_storage() -> None:
    state = runs.BreakerState()
    for _ in range(2):
        applied = runs.apply_events(running(), "run_1", state, [fail("x")], RULES, NOW)
        state = runs.BreakerState.from_json(applied.state.to_json())
    assert runs.apply_events(running(), "run_1", state, [fail("x")], RULES, NOW).tripped


def test_thresholds_come_from_the_rules() -> None:
    strict = runs.Rules(breakers=runs.Breakers(max_tool_iterations=2))
    assert trip_of([call(), call(), call()], strict) == "iteration-cap"


def test_events_renew_the_lease_and_need_a_running_run() -> None:
    applied = runs.apply_events(running(), "run_1", runs.BreakerState(), [call()], RULES, NOW)
    assert applied.run.lease_expires_at == NOW + RULES.lease_ms and not applied.events
    with pytest.raises(errors.Conflict):  # lapsed: reads expired
        runs.apply_events(running(lease=NOW), "run_1", runs.BreakerState(), [call()], RULES, NOW)
    with pytest.raises(errors.NotFound):
        runs.apply_events(None, "run_x", runs.BreakerState(), [call()], RULES, NOW)


# --- starts ---------------------------------------------------------------------------------


def request(**fields: Any) -> commands.RunStart:
    return commands.RunStart.model_validate({"agentId": "a1", **fields})


def decide(req: commands.RunStart, parent: runs.Parent | None = None,
           root: tuple[int, int | None] = (0, None), load: runs.TenantLoad = IDLE,
           limits: dict[str, int] = PLAN) -> runs.Started | runs.Refused:
    return runs.start(req, parent, root, load, limits, RULES, NOW, "run_new")


def refusal(result: runs.Started | runs.Refused) -> tuple[str, Any]:
    assert isinstance(result, runs.Refused)
    return result.error.code, result.error.details


START_TABLE = [
    ("root", request(), None, (29, NOW), IDLE, None),
    ("30th root in the window", request(), None, (30, NOW), IDLE,
     ("delegation_cap", {"cap": "max_root_runs", "limit": 30})),
    ("child of depth 1", request(parentRunId="run_1"), runs.Parent(running(1), 0), (0, None),
     IDLE, None),
    ("child of depth 2", request(parentRunId="run_1"), runs.Parent(running(2), 0), (0, None),
     IDLE, ("delegation_cap", {"cap": "max_depth", "limit": 2})),
    ("25th child", request(parentRunId="run_1"), runs.Parent(running(0), 24), (0, None), IDLE,
     ("delegation_cap", {"cap": "max_children", "limit": 24})),
    ("300 starts this hour", request(), None, (0, None),
     runs.TenantLoad(0, None, 300, NOW - 600_000),
     ("quota_exceeded", {"key": "runs_per_hour", "limit": 300, "retryAfterMs": 3_000_000})),
    ("10 running", request(), None, (0, None), runs.TenantLoad(10, NOW + 2_500, 10, NOW),
     ("quota_exceeded", {"key": "concurrent_runs", "limit": 10, "retryAfterMs": 2_500})),
    ("9 running", request(), None, (0, None), runs.TenantLoad(9, NOW + 2_500, 9, NOW), None),
]


@pytest.mark.parametrize(("req", "parent", "root", "load", "refused"),
                         [row[1:] for row in START_TABLE], ids=[row[0] for row in START_TABLE])
def test_starts(req: commands.RunStart, parent: runs.Parent | None,
                root: tuple[int, int | None], load: runs.TenantLoad,
                refused: tuple[str, Any] | None) -> None:
    result = decide(req, parent, root, load)
    if refused is None:
        assert isinstance(result, runs.Started)
        expected_depth = 0 if parent is None else parent.run.depth + 1
        assert result.run.depth == expected_depth
        assert result.run.lease_expires_at == NOW + RULES.lease_ms
    else:
        assert refusal(result) == refused
        [event] = result.events  # type: ignore[union-attr]
        assert event.event_type == "cap_hit"


def test_a_quota_refusal_is_audited_as_quota_exceeded_for_its_tenant() -> None:
    result = decide(request(tenantId="org"), load=runs.TenantLoad(10, NOW + 1, 10, NOW))
    assert isinstance(result, runs.Refused)
    assert result.events[0].action == "quota.exceeded"
    assert result.events[0].details["tenantId"] == "org"
    assert runs.tenant_of(request()) == "default"


def test_a_child_needs_a_running_parent() -> None:
    with pytest.raises(errors.NotFound):
        decide(request(parentRunId="run_x"))
    with pytest.raises(errors.Conflict):
        decide(request(parentRunId="run_1"), runs.Parent(running(lease=NOW), 0))


def test_end() -> None:
    ended = runs.end(running(), "run_1", NOW)
    assert ended is not None and ended.status == "ended" and ended.ended_at == NOW
    assert runs.end(ended, "run_1", NOW + 5) is None  # twice: answered as it is
    with pytest.raises(errors.Conflict):
        runs.end(running(lease=NOW), "run_1", NOW)


# --- quota patches --------------------------------------------------------------------------

PATCH_TABLE: list[tuple[dict[str, Any], type[Exception] | None]] = [
    ({"runs_per_hour": 500}, None),
    ({"runs_per_hour": 30_000}, None),  # exactly 100x
    ({"runs_per_hour": 30_001}, errors.Unprocessable),
    ({"concurrent_runs": 0}, errors.Unprocessable),
    ({"concurrent_runs": -3}, errors.Unprocessable),
    ({"concurrent_runs": None}, None),
    ({"concurrent_runs": True}, errors.InvalidInput),
    ({"concurrent_runs": "5"}, errors.InvalidInput),
    ({"memory_mb": 5}, errors.InvalidInput),
]


@pytest.mark.parametrize(("patch", "error"), PATCH_TABLE)
def test_quota_patches(patch: dict[str, Any], error: type[Exception] | None) -> None:
    if error is None:
        assert runs.check_patch(patch, PLAN) == patch
    else:
        with pytest.raises(error) as caught:
            runs.check_patch(patch, PLAN)
        assert caught.value.details["key"] == next(iter(patch))  # type: ignore[attr-defined]


def test_overrides_apply_and_null_removes() -> None:
    merged, event = runs.apply_patch("org", {"runs_per_hour": 5}, {"runs_per_hour": None,
                                                                    "concurrent_runs": 20})
    assert merged == {"concurrent_runs": 20}
    assert runs.effective(PLAN, merged) == {"runs_per_hour": 300, "concurrent_runs": 20}
    assert event.details["previousOverrides"] == {"runs_per_hour": 5}
