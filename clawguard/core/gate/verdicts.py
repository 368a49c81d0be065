"""The compiled, indexed policy set, and seed 002's verdict over it: ALLOW, ALERT or BLOCK.

Evaluation, seed 002 exactly: collect the matching rules of active policies
(connector, tool, min_value, roles, when); none -> BLOCK; any match whose
max_value fails (value above it, or no value given) or whose `when` cannot be
evaluated -> BLOCK; else any ALERT -> ALERT; else ALLOW.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from clawguard.core.gate import errors, expressions, guards, policies, subjects

Outcome = Literal["ALLOW", "ALERT", "BLOCK"]
Constraint = Literal["max_value", "when"]

# The reason a verdict carries when evaluation itself failed; tests look for it.
INTERNAL_ERROR: Final = "the gate could not evaluate this action"


@dataclass(frozen=True, slots=True)
class PolicyRef:
    """A policy version cited by a verdict (and by the receipt that stores it)."""

    id: str
    name: str
    version: int


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that matched the action; `constraint_failed` is set when it blocks."""

    policy: PolicyRef
    rule_index: int
    rule: Mapping[str, object]
    decision: policies.Decision
    constraint_failed: Constraint | None = None
    reason: str | None = None

    @property
    def policy_id(self) -> str:
        return self.policy.id

    @property
    def policy_version(self) -> int:
        return self.policy.version


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the gate says about one action.

    `approvals` are the stages of the matched ALERT rules, in policy-then-rule
    order (empty unless the decision is ALERT, and empty when no matched rule
    names any: the caller then applies the default threshold). `sticky` is
    False when any matched rule says `sticky: false`, so a standing grant may
    not satisfy this ALERT.
    """

    decision: Outcome
    matched: tuple[Match, ...]
    explanation: str
    reasons: tuple[str, ...]
    approvals: tuple[policies.Stage, ...]
    sticky: bool
    policies: tuple[PolicyRef, ...]


class _Entry:
    """One rule of an active policy, flattened for the evaluation loop."""

    __slots__ = (
        "approvals",
        "connector",
        "decision",
        "document",
        "index",
        "label",
        "match",
        "max_value",
        "min_value",
        "order",
        "policy",
        "roles",
        "sticky",
        "tool",
        "when",
    )

    def __init__(self, policy: PolicyRef, order: int, index: int, rule: policies.Rule) -> None:
        self.policy = policy
        self.order = order
        self.index = index
        self.label = f"{policy.name} v{policy.version} rule {index}"
        self.document = rule.document
        self.decision = rule.decision
        self.connector = rule.connector
        self.tool = rule.tool
        self.min_value = rule.min_value
        self.max_value = rule.max_value
        self.when: guards.Guard | None = rule.when
        self.roles = rule.roles
        self.approvals = rule.approvals
        self.sticky = rule.sticky
        # A match without a failed constraint is the same every time: built once, shared.
        self.match = Match(policy, index, rule.document, rule.decision)


class _Bucket:
    """The rules of one tool: by connector, and those for a connector no rule names."""

    __slots__ = ("by_connector", "default")

    def __init__(self, rules: list[_Entry], connectors: set[str]) -> None:
        self.default = tuple(e for e in rules if e.connector is None)
        self.by_connector = {
            c: tuple(e for e in rules if e.connector is None or e.connector == c)
            for c in connectors
        }

    def rules(self, connector: str | None) -> tuple[_Entry, ...]:
        if connector is None:
            return self.default
        return self.by_connector.get(connector, self.default)


class PolicySet:
    """Active policies compiled once and indexed by tool and connector; build with `compile`.

    A rule with no tool (or connector) matcher sits in every tool's (or
    connector's) list, so a verdict reads only the rules that can match its
    tool and connector, already in policy-then-rule order.
    """

    __slots__ = ("_any_tool", "_by_tool", "policies", "rule_count")

    def __init__(self, entries: list[_Entry], refs: tuple[PolicyRef, ...]) -> None:
        self.policies = refs
        self.rule_count = len(entries)
        any_tool = [e for e in entries if e.tool is None]
        specific: dict[str, list[_Entry]] = {}
        for e in entries:
            if e.tool is not None:
                specific.setdefault(e.tool, []).append(e)
        connectors = {e.connector for e in entries if e.connector is not None}
        self._any_tool = _Bucket(any_tool, connectors)
        self._by_tool = {
            tool: _Bucket(list(heapq.merge(rules, any_tool, key=lambda e: e.order)), connectors)
            for tool, rules in specific.items()
        }

    def rules_for(self, tool: str, connector: str | None) -> tuple[_Entry, ...]:
        return self._by_tool.get(tool, self._any_tool).rules(connector)


def compile(items: Iterable[policies.Policy]) -> PolicySet:
    """The policy set the evaluator reads; disabled policies are left out.

    Rules are validated again (a stored rule that no longer compiles raises
    `errors.InvalidPolicy` naming `policies[i]`): failing here fails closed,
    where skipping the policy could drop an ALERT.
    """
    entries: list[_Entry] = []
    refs: list[PolicyRef] = []
    for position, policy in enumerate(items):
        if policy.status != "active":
            continue
        try:
            rules = policies.validate_rules(list(policy.rules))
        except errors.InvalidPolicy as exc:
            raise exc.within(f"policies[{position}]") from None
        ref = PolicyRef(policy.id, policy.name, policy.version)
        refs.append(ref)
        for index, rule in enumerate(rules):
            entries.append(_Entry(ref, len(entries), index, rule))
    return PolicySet(entries, tuple(refs))


def evaluate(
    action: subjects.Action,
    principal: subjects.Principal,
    context: Mapping[str, object] | None,
    policy_set: PolicySet,
) -> Verdict:
    """The verdict for one action; pure, deterministic, and it never raises."""
    try:
        return _evaluate(action, principal, context, policy_set)
    except Exception as exc:  # fail closed: an evaluator bug must block, not crash the caller
        reason = f"{INTERNAL_ERROR} ({type(exc).__name__})"
        return Verdict("BLOCK", (), reason + ".", (reason,), (), True, ())


def _valid_value(value: object) -> bool:
    if value is None or type(value) is int:
        return True
    if isinstance(value, Decimal):
        return value.is_finite()
    return isinstance(value, int) and not isinstance(value, bool)


def _evaluate(
    action: subjects.Action,
    principal: subjects.Principal,
    context: Mapping[str, object] | None,
    policy_set: PolicySet,
) -> Verdict:
    value = action.value
    tool = action.tool
    if not _valid_value(value):
        refusal = f"the action's value {value!r} is not a number (an integer or a decimal)"
        return Verdict("BLOCK", (), refusal + ".", (refusal,), (), True, ())
    document: dict[str, object] | None = None
    matched: list[Match] = []
    entries: list[_Entry] = []
    failures: list[str] = []
    alert = False
    sticky = True
    for e in policy_set.rules_for(tool, action.connector):
        if e.min_value is not None and (value is None or value < e.min_value):
            continue
        if e.roles is not None and e.roles.isdisjoint(principal.roles):
            continue
        failed: Constraint | None = None
        reason: str | None = None
        if e.when is not None:
            if document is None:
                document = subjects.document(action, principal, context)
            result = e.when.evaluate(document)
            if result is False:
                continue
            if isinstance(result, expressions.Unevaluable):
                failed = "when"
                reason = f"the when of {e.label} cannot be evaluated: {result.reason}"
        if failed is None and e.max_value is not None:
            if value is None:
                failed = "max_value"
                reason = f"no value given for max_value {e.max_value} on {e.label}"
            elif value > e.max_value:
                failed = "max_value"
                reason = f"value {value} exceeds max_value {e.max_value} on {e.label}"
        if reason is not None:
            failures.append(reason)
            matched.append(Match(e.policy, e.index, e.document, e.decision, failed, reason))
        else:
            if e.decision == "ALERT":
                alert = True
            matched.append(e.match)
        if not e.sticky:
            sticky = False
        entries.append(e)
    return _verdict(action, matched, entries, failures, alert, sticky)


def _verdict(
    action: subjects.Action,
    matched: list[Match],
    entries: list[_Entry],
    failures: list[str],
    alert: bool,
    sticky: bool,
) -> Verdict:
    # Entries come in policy order, so a policy's rules are next to each other.
    cited: list[PolicyRef] = []
    for e in entries:
        if not cited or cited[-1] is not e.policy:
            cited.append(e.policy)
    refs = tuple(cited)
    subject = action.tool if action.connector is None else f"{action.tool} on {action.connector}"
    if not matched:
        reason = (
            f"no rule of an active policy matches {subject}; nothing allows it (default-closed)"
        )
        return Verdict("BLOCK", (), reason + ".", (reason,), (), True, ())
    if failures:
        return Verdict(
            "BLOCK", tuple(matched), "; ".join(failures) + ".", tuple(failures), (), sticky, refs
        )
    allowed_by = [e.label for e in entries if e.decision == "ALLOW"]
    if alert:
        alerting = [e for e in entries if e.decision == "ALERT"]
        reasons = tuple(
            f"{e.label} says ALERT: {action.tool} needs a human approval" for e in alerting
        )
        stages = tuple(stage for e in alerting for stage in e.approvals)
        explanation = "; ".join(reasons)
        if allowed_by:
            explanation += f" (allowed by {', '.join(allowed_by)})"
        return Verdict("ALERT", tuple(matched), explanation + ".", reasons, stages, sticky, refs)
    allowed = f"{subject} allowed by {', '.join(allowed_by)}"
    return Verdict("ALLOW", tuple(matched), allowed + ".", (allowed,), (), sticky, refs)
