"""The public events people are told about, read off the audit chain (no I/O).

The audit row of a change is written in the transaction of that change, so the
chain already is a durable, ordered log of everything worth telling: webhooks
deliver from it and the console's event stream replays from it. An event's id
is its audit row's seq, unique across every instance on one database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from clawguard.core import audit

EventName = Literal[
    "approval.requested", "approval.decided", "budget.crossed", "budget.paused", "run.tripped"
]
EVENT_NAMES: tuple[str, ...] = EventName.__args__  # type: ignore[attr-defined]

# Which audit actions are told, under which public name; everything else stays in the audit.
_NAMES: dict[str, EventName] = {
    "approval.requested": "approval.requested",
    "approval.resolved": "approval.decided",
    "approval.expired": "approval.decided",
    "approval.waived": "approval.decided",
    "budget.crossed_soft": "budget.crossed",  # 80%
    "budget.crossed_hard": "budget.crossed",  # 100%
    "budget.paused": "budget.paused",
}

# Who may read an event of each name: the roles that may read its resource
# (admin reads everything). Approvals are a leader's and an operator's;
# budgets and runs an operator's.
READERS: dict[EventName, frozenset[str]] = {
    "approval.requested": frozenset({"leader", "operator", "admin"}),
    "approval.decided": frozenset({"leader", "operator", "admin"}),
    "budget.crossed": frozenset({"operator", "admin"}),
    "budget.paused": frozenset({"operator", "admin"}),
    "run.tripped": frozenset({"operator", "admin"}),
}


@dataclass(frozen=True, slots=True)
class PublicEvent:
    id: int  # the audit row's seq
    type: EventName
    created_at: int  # epoch ms
    data: dict[str, Any]

    def body(self) -> dict[str, Any]:
        """The JSON object a webhook receives and the event stream sends as `data:`."""
        return {"id": str(self.id), "type": self.type, "createdAt": self.created_at,
                "data": self.data}


def name_of(action: str) -> EventName | None:
    """The public name of an audit action, or None when it is not told."""
    if action.startswith("breaker."):
        return "run.tripped"
    return _NAMES.get(action)


def from_row(row: audit.Row) -> PublicEvent | None:
    """The event an audit row tells, or None when it tells none."""
    name = name_of(row.action)
    if name is None:
        return None
    details = audit.decode_details(row.details_json) or {}
    data: dict[str, Any] = {"action": row.action, "agentId": row.agent_id, **details}
    return PublicEvent(row.seq, name, row.created_at, data)


def may_read(role: str, name: EventName) -> bool:
    return role == "admin" or role in READERS[name]


def encode(event: PublicEvent) -> bytes:
    """The exact bytes a webhook POSTs (and signs): compact JSON, keys in a fixed order."""
    return json.dumps(event.body(), separators=(",", ":"), ensure_ascii=False).encode()
