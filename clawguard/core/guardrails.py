"""Guardrail policies as stored resources: versions, rollback, deletion, listing (no I/O).

The gate (`core.gate`) validates and evaluates documents; this module decides
what a write does to the stored policy and its history, and the engines load
the rows, call these functions and apply what they return. Errors carry seed
002's codes (`missing_parameter`, `invalid_parameter`, `state_conflict`,
`not_found`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from clawguard.core import audit, documents, errors, principals
from clawguard.core import gate as gate_rules

LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 20, 100
ID_PREFIX = "grd_"


class InvalidParameter(errors.InvalidInput):
    code = "invalid_parameter"


class MissingParameter(errors.InvalidInput):
    code = "missing_parameter"


class StateConflict(errors.Conflict):
    code = "state_conflict"


def refusal(exc: gate_rules.InvalidPolicy) -> errors.InvalidInput:
    """The gate's refusal of a document as the 400 it answers, naming field and position."""
    details: dict[str, Any] = {"field": exc.field}
    if exc.expression is not None:
        details |= {"expression": exc.expression, "position": exc.position}
    kind = MissingParameter if exc.code == "missing_parameter" else InvalidParameter
    return kind(str(exc), details)


@dataclass(frozen=True, slots=True)
class Head:
    """A policy's row: what no version holds, and where its history stands."""

    seq: int
    id: str
    name: str
    description: str | None
    status: gate_rules.policies.Status
    version: int
    created_at: int
    updated_at: int
    deleted_at: int | None = None
    idempotency_key: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class Version:
    """One version: its rules exactly as written, who wrote it, when and why."""

    policy_id: str
    version: int
    rules: tuple[Mapping[str, object], ...]
    created_at: int
    created_by: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class Stored:
    """A policy at one version: its head and that version's rules."""

    head: Head
    version: Version

    def wire(self) -> dict[str, Any]:
        """Seed 002's guardrail_policy object (a historical version shows its own time)."""
        return {
            "id": self.head.id,
            "object": "guardrail_policy",
            "name": self.head.name,
            "description": self.head.description,
            "status": self.head.status,
            "version": self.version.version,
            "rules": [dict(rule) for rule in self.version.rules],
            "created_at": documents.rfc3339(self.head.created_at),
            "updated_at": documents.rfc3339(
                self.head.updated_at if self.version.version == self.head.version
                else self.version.created_at
            ),
        }

    def policy(self) -> gate_rules.Policy:
        return gate_rules.Policy(self.head.id, self.head.name, self.version.version,
                                 self.version.rules, self.head.status)


@dataclass(frozen=True, slots=True)
class Change:
    """What a write does: the head to store, a version to insert (or None), and its audit."""

    head: Head
    version: Version | None
    event: audit.Event

    def stored(self, current: Version) -> Stored:
        return Stored(self.head, self.version or current)


@dataclass(frozen=True, slots=True)
class Rollback:
    new_version: int
    rolled_back_from: int
    deployed_at: int


def new_id() -> str:
    return ID_PREFIX + secrets.token_hex(8)


def fingerprint(draft: gate_rules.Draft) -> str:
    """What an idempotent replay must repeat: the whole create body as validated."""
    body = {"name": draft.name, "rules": list(draft.rules), "description": draft.description,
            "status": draft.status, "message": draft.message}
    return hashlib.sha256(documents.dumps(body).encode()).hexdigest()


def _event(action: str, actor: principals.Principal, details: dict[str, Any]) -> audit.Event:
    return audit.Event("install", action, None,
                       {**details, "keyId": actor.key_id, "keyName": actor.name})


def replay(existing: Head | None, key: str, draft: gate_rules.Draft) -> Head | None:
    """The policy an Idempotency-Key already made (None: a first use); another body is 409."""
    if existing is None:
        return None
    if existing.fingerprint != fingerprint(draft):
        raise StateConflict(f"Idempotency-Key {key} was used with another body",
                            {"policy_id": existing.id})
    return existing


def create(
    draft: gate_rules.Draft, name_taken: bool, policy_id: str, now: int,
    actor: principals.Principal, idempotency_key: str | None,
) -> Change:
    if name_taken:
        raise StateConflict(f"a policy named {draft.name} already exists (names are never "
                            "reused, even after a delete)", {"name": draft.name})
    head = Head(0, policy_id, draft.name, draft.description, draft.status, 1, now, now,
                None, idempotency_key, fingerprint(draft))
    version = Version(policy_id, 1, draft.rules, now, actor.name, draft.message)
    return Change(head, version, _event("guardrail.create", actor, {
        "policyId": policy_id, "name": draft.name, "version": 1, "status": draft.status,
    }))


def _live(head: Head | None, policy_id: str) -> Head:
    if head is None or head.deleted_at is not None:
        raise errors.NotFound(f"no guardrail policy {policy_id}")
    return head


def update(
    head: Head | None, current: Version | None, policy_id: str, patch: gate_rules.Update,
    now: int, actor: principals.Principal,
) -> Change:
    """A rules change that differs from the current rules mints n+1; the rest edits the head."""
    live = _live(head, policy_id)
    assert current is not None
    version = None
    changed = live
    if patch.rules is not None and list(patch.rules) != list(current.rules):
        version = Version(live.id, live.version + 1, patch.rules, now, actor.name, patch.message)
        changed = replace(changed, version=version.version, updated_at=now)
    if patch.description_set:
        changed = replace(changed, description=patch.description)
    if patch.status is not None:
        changed = replace(changed, status=patch.status)
    return Change(changed, version, _event("guardrail.update", actor, {
        "policyId": live.id, "name": live.name, "version": changed.version,
        "newVersion": version is not None, "status": changed.status,
    }))


def rollback(
    head: Head | None, target: Version | None, policy_id: str, number: int,
    message: str | None, now: int, actor: principals.Principal,
) -> Change:
    """A new version holding version `number`'s rules; the history is left as it is."""
    live = _live(head, policy_id)
    if target is None:
        raise errors.NotFound(f"guardrail policy {policy_id} has no version {number}")
    version = Version(live.id, live.version + 1, target.rules, now, actor.name,
                      message if message is not None else f"rollback to version {number}")
    changed = replace(live, version=version.version, updated_at=now)
    return Change(changed, version, _event("guardrail.rollback", actor, {
        "policyId": live.id, "name": live.name, "version": version.version,
        "rolledBackFrom": number,
    }))


def delete(head: Head | None, policy_id: str, now: int, actor: principals.Principal) -> Change:
    """Out of evaluation and of the list; its versions stay readable."""
    live = _live(head, policy_id)
    return Change(replace(live, deleted_at=now), None, _event("guardrail.delete", actor, {
        "policyId": live.id, "name": live.name, "version": live.version,
    }))


def readable(stored: Stored | None, policy_id: str, version: int | None) -> Stored:
    """GET /{id}: the current version of a live policy; with ?version=N, any version."""
    if stored is None or (version is None and stored.head.deleted_at is not None):
        raise errors.NotFound(f"no guardrail policy {policy_id}")
    return stored


def history(versions: Sequence[Version], policy_id: str) -> Sequence[Version]:
    """`/versions`: answered for a deleted policy too, only an unknown id is 404."""
    if not versions:
        raise errors.NotFound(f"no guardrail policy {policy_id}")
    return versions


def mentions_tool(rules: Sequence[Mapping[str, object]], tool: str) -> bool:
    """Seed 002's `tool` filter: a rule for this tool, or one with no tool matcher."""
    return any(rule.get("tool") in (None, tool) for rule in rules)


@dataclass(frozen=True, slots=True)
class Page:
    data: tuple[Stored, ...]
    has_more: bool
    next_cursor: str | None


def cursor_of(seq: int) -> str:
    return base64.urlsafe_b64encode(f"grd:{seq}".encode()).decode().rstrip("=")


def seq_of(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, digits = text.partition(":")
        if prefix != "grd" or not digits.isascii() or not digits.isdigit() or len(digits) > 18:
            raise ValueError(text)
        return int(digits)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidParameter("cursor is not a cursor this list gave",
                               {"field": "cursor"}) from exc


def page(
    newest_first: Sequence[Stored], status: str | None, tool: str | None,
    cursor: str | None, limit: int,
) -> Page:
    """Live policies, newest first, filtered, from after `cursor`, at most `limit`."""
    after = None if cursor is None else seq_of(cursor)
    chosen = [
        s for s in newest_first
        if s.head.deleted_at is None
        and (status is None or s.head.status == status)
        and (tool is None or mentions_tool(s.version.rules, tool))
        and (after is None or s.head.seq < after)
    ]
    data = tuple(chosen[:limit])
    more = len(chosen) > limit
    return Page(data, more, cursor_of(data[-1].head.seq) if more else None)


# --- the dry run ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DryRun:
    """A dry run's request: the action, who proposes it, its context, and the policies to
    evaluate instead of the stored ones (None: the stored ones)."""

    action: gate_rules.Action
    principal: gate_rules.Principal
    context: Mapping[str, object] | None
    policies: tuple[gate_rules.Policy, ...] | None


def _strings(value: object, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameter(f"{field} must be an array of strings", {"field": field})
    return tuple(value)


def dry_run(action: object, policies: object, principal: object, context: object,
            operator_id: object) -> DryRun:
    """Seed 002's evaluate body, checked: `action` needs a `tool`; `operator_id` names an
    operator, and clawguard has none."""
    if operator_id is not None:
        raise errors.NotFound("operator_id names no operator: clawguard has no embedded "
                              "operator guardrails", {"field": "operator_id"})
    if action is None:
        raise MissingParameter("action is required", {"field": "action"})
    if not isinstance(action, Mapping):
        raise InvalidParameter("action must be an object", {"field": "action"})
    unknown = sorted(str(k) for k in action if k not in ("connector", "tool", "value", "args"))
    if unknown:
        raise InvalidParameter(f"action.{unknown[0]} is not a field of an action "
                               "(connector, tool, value, args)", {"field": f"action.{unknown[0]}"})
    tool = action.get("tool")
    if tool is None:
        raise MissingParameter("action.tool is required", {"field": "action.tool"})
    connector, value, args = action.get("connector"), action.get("value"), action.get("args")
    if not isinstance(tool, str) or not tool:
        raise InvalidParameter("action.tool must be a non-empty string", {"field": "action.tool"})
    if connector is not None and (not isinstance(connector, str) or not connector):
        raise InvalidParameter("action.connector must be a non-empty string",
                               {"field": "action.connector"})
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | Decimal)):
        raise InvalidParameter("action.value must be a number", {"field": "action.value"})
    if args is not None and not isinstance(args, Mapping):
        raise InvalidParameter("action.args must be an object", {"field": "action.args"})
    if context is not None and not isinstance(context, Mapping):
        raise InvalidParameter("context must be an object", {"field": "context"})
    return DryRun(
        gate_rules.Action(tool, connector, value, args or {}),
        _principal(principal), context, None if policies is None else _hypothetical(policies),
    )


def _principal(value: object) -> gate_rules.Principal:
    if value is None:
        return gate_rules.ANONYMOUS
    if not isinstance(value, Mapping):
        raise InvalidParameter("principal must be an object {agentId, roles, scopes}",
                               {"field": "principal"})
    unknown = sorted(str(k) for k in value if k not in ("agentId", "roles", "scopes"))
    if unknown:
        raise InvalidParameter(f"principal.{unknown[0]} is not a field of a principal "
                               "(agentId, roles, scopes)", {"field": f"principal.{unknown[0]}"})
    agent = value.get("agentId")
    if agent is not None and not isinstance(agent, str):
        raise InvalidParameter("principal.agentId must be a string",
                               {"field": "principal.agentId"})
    return gate_rules.Principal(agent, _strings(value.get("roles"), "principal.roles"),
                                _strings(value.get("scopes"), "principal.scopes"))


def _hypothetical(value: object) -> tuple[gate_rules.Policy, ...]:
    if not isinstance(value, list):
        raise InvalidParameter("policies must be an array of policy documents",
                               {"field": "policies"})
    found = []
    for i, body in enumerate(value):
        try:
            draft = gate_rules.validate_hypothetical(body)
        except gate_rules.InvalidPolicy as exc:
            # Seed 002: a hypothetical policy that fails validation is invalid_parameter.
            raise InvalidParameter(str(exc.within(f"policies[{i}]")),
                                   refusal(exc.within(f"policies[{i}]")).details) from None
        found.append(gate_rules.Policy(f"policies[{i}]", draft.name or f"policies[{i}]", 0,
                                       draft.rules, draft.status))
    return tuple(found)


def evaluation(verdict: gate_rules.Verdict) -> dict[str, Any]:
    """Seed 002's guardrail_evaluation object."""
    return {
        "object": "guardrail_evaluation",
        "decision": verdict.decision,
        "matched": [
            {"policy_id": m.policy_id, "policy_version": m.policy_version, "rule": dict(m.rule),
             "constraint_failed": m.constraint_failed}
            for m in verdict.matched
        ],
        "explanation": verdict.explanation,
    }
