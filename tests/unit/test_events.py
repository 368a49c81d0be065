"""Which audit rows become public events, under which name, and who may read them."""

from __future__ import annotations

import json

import pytest

from clawguard.core import audit, events


def _row(action: str, details: dict[str, object], seq: int = 7) -> audit.Row:
    event = audit.Event("approval", action, "agent-1", details)  # type: ignore[arg-type]
    return audit.next_row((seq - 1, "a" * 64), event, 1_700_000_000_000)


@pytest.mark.parametrize(("action", "name"), [
    ("approval.requested", "approval.requested"),
    ("approval.resolved", "approval.decided"),
    ("approval.expired", "approval.decided"),
    ("approval.waived", "approval.decided"),
    ("budget.crossed_soft", "budget.crossed"),
    ("budget.crossed_hard", "budget.crossed"),
    ("budget.crossed_80", None),  # no such action: the crossings are soft (80%) and hard
    ("budget.paused", "budget.paused"),
    ("breaker.repeated_call", "run.tripped"),
    ("budget.set", None),
    ("approval.history_recorded", None),
    ("key.created", None),
])
def test_which_actions_are_told(action: str, name: str | None) -> None:
    event = events.from_row(_row(action, {"x": 1}))
    assert (event.type if event else None) == name


def test_event_body_carries_the_row_seq_time_and_details() -> None:
    event = events.from_row(_row("approval.requested", {"approvalId": "ap_1"}, seq=42))
    assert event is not None
    body = json.loads(events.encode(event))
    assert body == {"id": "42", "type": "approval.requested", "createdAt": 1_700_000_000_000,
                    "data": {"action": "approval.requested", "agentId": "agent-1",
                             "approvalId": "ap_1"}}


@pytest.mark.parametrize(("role", "name", "allowed"), [
    ("leader", "approval.requested", True),
    ("leader", "budget.paused", False),
    ("leader", "run.tripped", False),
    ("operator", "budget.crossed", True),
    ("operator", "approval.decided", True),
    ("executor", "approval.requested", False),
    ("executor", "budget.paused", False),
    ("admin", "run.tripped", True),
])
def test_roles_read_only_their_events(role: str, name: events.EventName, allowed: bool) -> None:
    assert events.may_read(role, name) is allowed
