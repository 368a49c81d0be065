"""What the gate judges: the proposed action, the principal proposing it, and the document
that `$.arguments`, `$.context`, `$.action` and `$.principal` paths read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Final

_EMPTY: Final[Mapping[str, object]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Action:
    """A proposed side effect: seed 002's PlannedAction (connector, tool, value, args).

    `value` is an int or a Decimal (a refund amount, an order total), never a
    float; the evaluator blocks a value of any other type rather than guess.
    """

    tool: str
    connector: str | None = None
    value: int | Decimal | None = None
    arguments: Mapping[str, object] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who proposes the action: the agent and the roles and scopes of its key."""

    agent_id: str | None = None
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()


ANONYMOUS: Final = Principal()


def document(
    action: Action, principal: Principal, context: Mapping[str, object] | None
) -> dict[str, object]:
    """The document guards and expressions read; principal keys are camelCase as on the wire."""
    return {
        "arguments": action.arguments,
        "context": _EMPTY if context is None else context,
        "action": {"connector": action.connector, "tool": action.tool, "value": action.value},
        "principal": {
            "agentId": principal.agent_id,
            "roles": principal.roles,
            "scopes": principal.scopes,
        },
    }
