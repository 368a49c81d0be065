"""The action gate's pure rules: guardrail policies, guards, expressions, tool access, verdicts.

No I/O here. Services load records, call these functions, and apply the result.

Guardrails (README: Policies)::

    from clawguard.core import gate

    draft = gate.validate_create(body)        # POST body -> Draft; raises gate.InvalidPolicy
    update = gate.validate_update(body)       # PATCH body -> Update; name/version refused
    gate.validate_hypothetical(body)          # a dry run's `policies[i]` ({name?, rules, status?})

    policy_set = gate.compile([gate.Policy(id, name, version, rules, status), ...])
    verdict = gate.evaluate(
        gate.Action(tool, connector=None, value=None, arguments={}),
        gate.Principal(agent_id=None, roles=(), scopes=()),   # or gate.ANONYMOUS
        context,                                               # a dict, or None
        policy_set,
    )
    verdict.decision      # "ALLOW" | "ALERT" | "BLOCK"
    verdict.matched       # (Match(policy, rule_index, rule, decision, constraint_failed, reason),)
    verdict.explanation   # one readable sentence; verdict.reasons: the same, one per cause
    verdict.approvals     # stages of the matched ALERT rules, policy-then-rule order
    verdict.sticky        # False when a matched rule says sticky: false
    verdict.policies      # (PolicyRef(id, name, version),) cited, for the receipt

Compile when the policy set changes (create, update, delete, rollback) and keep
the `PolicySet`; `evaluate` never raises (an unforeseen failure is a BLOCK
whose reason starts with `gate.verdicts.INTERNAL_ERROR`). Money and values are
ints or Decimals, never floats.

Tool access (README: Policies)::

    table = gate.compile_access(tools, tool_policies, role_overrides)
    access = gate.check_access(table, tool_name, arguments, principal)
    access.decision, access.decided_by, access.rule_id, access.reasons, access.obligations

Errors: every refusal of a written document is `gate.InvalidPolicy` (a
ValueError) with `.field` (`rules[2].when.allOf[1]`), `.message` and `.code`
(`missing_parameter` or `invalid_parameter`, seed 002's codes); an expression
that does not parse is its subclass `gate.ExpressionSyntaxError`, which also
carries `.expression` and the 0-based `.position`.

Guards and expressions can be used alone: `gate.compile_guard(doc).evaluate(
gate.document(action, principal, context))` and `gate.parse(text)`.
"""

from clawguard.core.gate.access import AccessDecision, AccessTable, RoleOverride, Tool, ToolPolicy
from clawguard.core.gate.access import check as check_access
from clawguard.core.gate.access import compile as compile_access
from clawguard.core.gate.errors import ExpressionSyntaxError, InvalidPolicy
from clawguard.core.gate.expressions import Expression, Unevaluable, parse
from clawguard.core.gate.guards import Guard, compile_guard
from clawguard.core.gate.policies import (
    Draft,
    Gate,
    Policy,
    Rule,
    Stage,
    Update,
    validate_create,
    validate_hypothetical,
    validate_rule,
    validate_rules,
    validate_update,
)
from clawguard.core.gate.subjects import ANONYMOUS, Action, Principal, document
from clawguard.core.gate.verdicts import Match, PolicyRef, PolicySet, Verdict, compile, evaluate

__all__ = [
    "ANONYMOUS",
    "AccessDecision",
    "AccessTable",
    "Action",
    "Draft",
    "Expression",
    "ExpressionSyntaxError",
    "Gate",
    "Guard",
    "InvalidPolicy",
    "Match",
    "Policy",
    "PolicyRef",
    "PolicySet",
    "Principal",
    "RoleOverride",
    "Rule",
    "Stage",
    "Tool",
    "ToolPolicy",
    "Unevaluable",
    "Update",
    "Verdict",
    "check_access",
    "compile",
    "compile_access",
    "compile_guard",
    "document",
    "evaluate",
    "parse",
    "validate_create",
    "validate_hypothetical",
    "validate_rule",
    "validate_rules",
    "validate_update",
]
