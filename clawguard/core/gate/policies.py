"""Guardrail policy documents (README: Policies): their fields, validated when written.

A rule document is kept verbatim (receipts and `?version=N` quote it); what is
checked here is compiled into a `Rule`, the typed form the evaluator reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from clawguard.core.gate import errors, guards

Decision = Literal["ALLOW", "ALERT"]
Status = Literal["active", "disabled"]
Number = int | Decimal

NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
NAME_LENGTH: Final = (3, 40)
DECISIONS: Final = ("ALLOW", "ALERT")
STATUSES: Final = ("active", "disabled")
RULE_FIELDS: Final = (
    "connector",
    "tool",
    "min_value",
    "max_value",
    "decision",
    "when",
    "roles",
    "approvals",
    "sticky",
)
CREATE_FIELDS: Final = ("name", "rules", "description", "status", "message")
UPDATE_FIELDS: Final = ("rules", "description", "status", "message")
IMMUTABLE_FIELDS: Final = ("name", "version")


@dataclass(frozen=True, slots=True)
class Gate:
    """One gate of an approval stage: `count` approvers, from `group` when it is set."""

    count: int
    group: str | None = None


@dataclass(frozen=True, slots=True)
class Stage:
    """An approval stage: every gate must have its count; stages are decided in order."""

    gates: tuple[Gate, ...]
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated rule: its matchers, its decision and constraint, what an ALERT needs."""

    document: Mapping[str, object]
    decision: Decision
    connector: str | None = None
    tool: str | None = None
    min_value: Number | None = None
    max_value: Number | None = None
    when: guards.Guard | None = None
    roles: frozenset[str] | None = None
    approvals: tuple[Stage, ...] = ()
    sticky: bool = True


@dataclass(frozen=True, slots=True)
class Policy:
    """A stored policy version as the evaluator needs it.

    Hypothetical policies of a dry run have no stored id or version: give them
    a stand-in id (`policies[0]`) and version 0.
    """

    id: str
    name: str
    version: int
    rules: Sequence[Mapping[str, object]]
    status: Status = "active"


@dataclass(frozen=True, slots=True)
class Draft:
    """A create body that passed validation; `rules` are the documents as given."""

    name: str
    rules: tuple[Mapping[str, object], ...]
    description: str | None
    status: Status
    message: str | None


@dataclass(frozen=True, slots=True)
class Update:
    """A PATCH body that passed validation; None means the field was not sent.

    `description_set` tells a sent null apart from an absent description.
    """

    rules: tuple[Mapping[str, object], ...] | None
    description: str | None
    description_set: bool
    status: Status | None
    message: str | None


def validate_name(name: object) -> str:
    """A policy name: 3-40 characters of lowercase letters, digits and hyphens."""
    low, high = NAME_LENGTH
    if not isinstance(name, str) or not low <= len(name) <= high or not set(name) <= NAME_CHARS:
        raise errors.InvalidPolicy(
            "name", f"must be {low}-{high} characters of lowercase letters, digits and hyphens"
        )
    return name


def validate_create(body: object) -> Draft:
    """A create body (`{name, rules, description?, status?, message?}`), or InvalidPolicy."""
    if not isinstance(body, Mapping):
        raise errors.InvalidPolicy("", "the body must be a JSON object")
    _no_unknown(body, CREATE_FIELDS)
    if "name" not in body:
        raise errors.InvalidPolicy("name", "is required", code="missing_parameter")
    name = validate_name(body["name"])
    if "rules" not in body:
        raise errors.InvalidPolicy("rules", "is required", code="missing_parameter")
    rules = validate_rules(body["rules"])
    return Draft(
        name=name,
        rules=tuple(rule.document for rule in rules),
        description=_optional_text(body, "description"),
        status=_status(body.get("status", "active")),
        message=_optional_text(body, "message"),
    )


def validate_hypothetical(body: object) -> Draft:
    """A dry run's hypothetical policy (`{name?, rules, status?}`); an absent name is allowed."""
    if isinstance(body, Mapping) and "name" not in body:
        draft = validate_create({**body, "name": "hypothetical"})
        return Draft("", draft.rules, draft.description, draft.status, draft.message)
    return validate_create(body)


def validate_update(body: object) -> Update:
    """A PATCH body; `name` and `version` are immutable, so sending them is refused."""
    if not isinstance(body, Mapping):
        raise errors.InvalidPolicy("", "the body must be a JSON object")
    for field in IMMUTABLE_FIELDS:
        if field in body:
            raise errors.InvalidPolicy(field, "is immutable")
    _no_unknown(body, UPDATE_FIELDS)
    rules = validate_rules(body["rules"]) if "rules" in body else None
    return Update(
        rules=None if rules is None else tuple(rule.document for rule in rules),
        description=_optional_text(body, "description"),
        description_set="description" in body,
        status=_status(body["status"]) if "status" in body else None,
        message=_optional_text(body, "message"),
    )


def validate_rules(rules: object) -> tuple[Rule, ...]:
    """Every rule of a `rules` array, compiled; an absent or empty array is `missing_parameter`."""
    if rules is None or (isinstance(rules, list) and not rules):
        raise errors.InvalidPolicy("rules", "must hold at least one rule", code="missing_parameter")
    if not isinstance(rules, list):
        raise errors.InvalidPolicy("rules", "must be an array of rule objects")
    compiled = []
    for i, rule in enumerate(rules):
        try:
            compiled.append(validate_rule(rule))
        except errors.InvalidPolicy as exc:
            raise exc.within(f"rules[{i}]") from None
    return tuple(compiled)


def validate_rule(document: object) -> Rule:
    """One rule document, compiled; errors name the field relative to the rule."""
    if not isinstance(document, Mapping):
        raise errors.InvalidPolicy("", "a rule must be an object")
    _no_unknown(document, RULE_FIELDS)
    if "decision" not in document:
        raise errors.InvalidPolicy("decision", "is required: ALLOW or ALERT")
    decision = document["decision"]
    if decision not in DECISIONS:
        raise errors.InvalidPolicy(
            "decision", "must be ALLOW or ALERT; BLOCK is what happens when nothing allows"
        )
    connector = _matcher(document, "connector")
    tool = _matcher(document, "tool")
    min_value = _number(document, "min_value", positive=False)
    max_value = _number(document, "max_value", positive=True)
    if min_value is not None and max_value is not None and min_value > max_value:
        raise errors.InvalidPolicy(
            "min_value", "is above max_value: the rule could only ever block"
        )
    when = None
    if "when" in document:
        try:
            when = guards.compile_guard(document["when"])
        except errors.InvalidPolicy as exc:
            raise exc.within("when") from None
    roles = None
    if "roles" in document:
        value = document["roles"]
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(r, str) and r for r in value)
        ):
            raise errors.InvalidPolicy("roles", "must be a non-empty array of role names")
        roles = frozenset(value)
    approvals: tuple[Stage, ...] = ()
    if "approvals" in document:
        if decision != "ALERT":
            raise errors.InvalidPolicy("approvals", "only an ALERT rule asks for approvals")
        approvals = _stages(document["approvals"])
    sticky = document.get("sticky", True)
    if not isinstance(sticky, bool):
        raise errors.InvalidPolicy("sticky", "must be true or false")
    return Rule(
        document=dict(document),
        decision=decision,  # checked against DECISIONS above
        connector=connector,
        tool=tool,
        min_value=min_value,
        max_value=max_value,
        when=when,
        roles=roles,
        approvals=approvals,
        sticky=sticky,
    )


def _stages(value: object) -> tuple[Stage, ...]:
    if not isinstance(value, list) or not value:
        raise errors.InvalidPolicy("approvals", "must be a non-empty array of stages")
    stages = []
    for i, stage in enumerate(value):
        field = f"approvals[{i}]"
        if not isinstance(stage, Mapping):
            raise errors.InvalidPolicy(field, "a stage is an object {name?, gates}")
        unknown = sorted(str(k) for k in stage if k not in ("name", "gates"))
        if unknown:
            raise errors.InvalidPolicy(f"{field}.{unknown[0]}", "is not a field of a stage")
        name = stage.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise errors.InvalidPolicy(f"{field}.name", "must be a non-empty string")
        gates = stage.get("gates")
        if not isinstance(gates, list) or not gates:
            raise errors.InvalidPolicy(f"{field}.gates", "must be a non-empty array of gates")
        stages.append(
            Stage(tuple(_gate(g, f"{field}.gates[{j}]") for j, g in enumerate(gates)), name)
        )
    return tuple(stages)


def _gate(value: object, field: str) -> Gate:
    if not isinstance(value, Mapping):
        raise errors.InvalidPolicy(field, "a gate is an object {group?, count}")
    unknown = sorted(str(k) for k in value if k not in ("group", "count"))
    if unknown:
        raise errors.InvalidPolicy(f"{field}.{unknown[0]}", "is not a field of a gate")
    count = value.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise errors.InvalidPolicy(f"{field}.count", "must be a positive integer")
    group = value.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        raise errors.InvalidPolicy(f"{field}.group", "must be a non-empty string")
    return Gate(count, group)


def _matcher(document: Mapping[str, object], field: str) -> str | None:
    if field not in document:
        return None
    value = document[field]
    if not isinstance(value, str) or not value:
        raise errors.InvalidPolicy(field, "must be a non-empty string; omit it to match any")
    return value


def _number(document: Mapping[str, object], field: str, *, positive: bool) -> Number | None:
    if field not in document:
        return None
    value = document[field]
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise errors.InvalidPolicy(
            field, "must be a number (an integer or a decimal, never a float)"
        )
    if isinstance(value, Decimal) and not value.is_finite():
        raise errors.InvalidPolicy(field, "must be a finite number")
    if positive and value <= 0:
        raise errors.InvalidPolicy(field, "must be a positive number")
    if value < 0:
        raise errors.InvalidPolicy(field, "must not be negative")
    return value


def _status(value: object) -> Status:
    if value not in STATUSES:
        raise errors.InvalidPolicy("status", "must be active or disabled")
    return value  # checked against STATUSES above


def _optional_text(body: Mapping[str, object], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise errors.InvalidPolicy(field, "must be a string or null")
    return value


def _no_unknown(document: Mapping[str, object], known: tuple[str, ...]) -> None:
    # A misspelt field would be ignored, and an ignored `max_valu` would allow everything.
    for key in document:
        if key not in known:
            raise errors.InvalidPolicy(str(key), f"is not a known field ({', '.join(known)})")
