"""Policy documents as seed 002 validates them, plus clawguard's extra rule fields."""

from __future__ import annotations

from decimal import Decimal

import pytest

from clawguard.core.gate import errors, policies

RULE = {"tool": "order.refund", "decision": "ALLOW", "max_value": 250}


def test_seed_create_body() -> None:
    draft = policies.validate_create(
        {"name": "refund-ceiling", "description": "Refunds to $250.", "rules": [RULE]}
    )
    assert draft.name == "refund-ceiling"
    assert draft.rules == (RULE,)
    assert draft.status == "active"
    assert draft.description == "Refunds to $250."


@pytest.mark.parametrize("name", ["abc", "refund-ceiling", "a" * 40, "0-9", "---"])
def test_good_names(name: str) -> None:
    assert policies.validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["ab", "a" * 41, "Refund", "refund_ceiling", "refund ceiling", "réfund", 5, None, ""]
)
def test_bad_names(name: object) -> None:
    with pytest.raises(errors.InvalidPolicy) as caught:
        policies.validate_name(name)
    assert caught.value.field == "name"
    assert caught.value.code == "invalid_parameter"


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"rules": [RULE]}, "name", "missing_parameter"),
        ({"name": "abc"}, "rules", "missing_parameter"),
        ({"name": "abc", "rules": []}, "rules", "missing_parameter"),
        ({"name": "abc", "rules": RULE}, "rules", "invalid_parameter"),
        ({"name": "ab", "rules": [RULE]}, "name", "invalid_parameter"),
        ({"name": "abc", "rules": [RULE], "status": "paused"}, "status", "invalid_parameter"),
        ({"name": "abc", "rules": [RULE], "description": 5}, "description", "invalid_parameter"),
        ({"name": "abc", "rules": [RULE], "statuss": "x"}, "statuss", "invalid_parameter"),
        (
            {"name": "abc", "rules": [RULE, {"decision": "BLOCK"}]},
            "rules[1].decision",
            "invalid_parameter",
        ),
        ([], "", "invalid_parameter"),
    ],
)
def test_create_errors(body: object, field: str, code: str) -> None:
    with pytest.raises(errors.InvalidPolicy) as caught:
        policies.validate_create(body)
    assert (caught.value.field, caught.value.code) == (field, code)


def test_update_refuses_immutable_fields() -> None:
    for field in ("name", "version"):
        with pytest.raises(errors.InvalidPolicy) as caught:
            policies.validate_update({field: "x"})
        assert caught.value.field == field
    update = policies.validate_update({"status": "disabled", "description": None})
    assert update.status == "disabled" and update.rules is None and update.description_set
    assert policies.validate_update({"rules": [RULE]}).rules == (RULE,)


def test_hypothetical_policy_may_omit_its_name() -> None:
    assert policies.validate_hypothetical({"rules": [RULE]}).rules == (RULE,)
    with pytest.raises(errors.InvalidPolicy):
        policies.validate_hypothetical({"name": "x", "rules": [RULE]})


@pytest.mark.parametrize(
    "rule",
    [
        {"decision": "ALLOW"},
        {"decision": "ALERT", "connector": "cn_1", "tool": "order.refund"},
        {"decision": "ALLOW", "max_value": Decimal("249.99")},
        {"decision": "ALLOW", "min_value": 0, "max_value": 250},
        {"decision": "ALERT", "min_value": 250, "max_value": 250},
        {"decision": "ALLOW", "roles": ["finance"], "when": "$.context.ok == true"},
        {"decision": "ALERT", "when": {"allOf": [{"role": "x"}, {"not": "1 < 2"}]}},
        {"decision": "ALERT", "approvals": [{"gates": [{"count": 1}]}], "sticky": False},
        {
            "decision": "ALERT",
            "approvals": [
                {"name": "finance", "gates": [{"group": "finance", "count": 2}]},
                {"gates": [{"group": "security", "count": 1}, {"count": 1}]},
            ],
        },
    ],
)
def test_good_rules(rule: dict[str, object]) -> None:
    compiled = policies.validate_rule(rule)
    assert compiled.document == rule
    assert compiled.sticky is rule.get("sticky", True)


@pytest.mark.parametrize(
    ("rule", "field", "message"),
    [
        ({}, "decision", "required"),
        ({"decision": "BLOCK"}, "decision", "ALLOW or ALERT"),
        ({"decision": "allow"}, "decision", "ALLOW or ALERT"),
        ({"decision": "ALLOW", "max_valu": 250}, "max_valu", "not a known field"),
        ({"decision": "ALLOW", "max_value": 0}, "max_value", "positive"),
        ({"decision": "ALLOW", "max_value": -5}, "max_value", "positive"),
        ({"decision": "ALLOW", "max_value": "250"}, "max_value", "number"),
        ({"decision": "ALLOW", "max_value": 250.0}, "max_value", "never a float"),
        ({"decision": "ALLOW", "max_value": True}, "max_value", "number"),
        ({"decision": "ALLOW", "max_value": Decimal("Infinity")}, "max_value", "finite"),
        ({"decision": "ALLOW", "min_value": -1}, "min_value", "negative"),
        ({"decision": "ALLOW", "min_value": 300, "max_value": 250}, "min_value", "above"),
        ({"decision": "ALLOW", "tool": ""}, "tool", "non-empty"),
        ({"decision": "ALLOW", "connector": 5}, "connector", "non-empty"),
        ({"decision": "ALLOW", "roles": []}, "roles", "non-empty array"),
        ({"decision": "ALLOW", "roles": "finance"}, "roles", "non-empty array"),
        ({"decision": "ALLOW", "roles": ["a", ""]}, "roles", "non-empty array"),
        ({"decision": "ALLOW", "sticky": "no"}, "sticky", "true or false"),
        ({"decision": "ALLOW", "when": "$.context.a = 1"}, "when", "'=' is not"),
        (
            {"decision": "ALLOW", "when": {"allOf": ["1 < 2", {"role": 3}]}},
            "when.allOf[1].role",
            "role",
        ),
        (
            {"decision": "ALLOW", "approvals": [{"gates": [{"count": 1}]}]},
            "approvals",
            "only an ALERT",
        ),
        ({"decision": "ALERT", "approvals": []}, "approvals", "non-empty"),
        ({"decision": "ALERT", "approvals": [{"gates": []}]}, "approvals[0].gates", "non-empty"),
        (
            {"decision": "ALERT", "approvals": [{"gates": [{}]}]},
            "approvals[0].gates[0].count",
            "positive integer",
        ),
        (
            {"decision": "ALERT", "approvals": [{"gates": [{"count": 0}]}]},
            "approvals[0].gates[0].count",
            "positive",
        ),
        (
            {"decision": "ALERT", "approvals": [{"gates": [{"count": True}]}]},
            "approvals[0].gates[0].count",
            "positive",
        ),
        (
            {"decision": "ALERT", "approvals": [{"gates": [{"count": 1, "group": ""}]}]},
            "approvals[0].gates[0].group",
            "non-empty",
        ),
        (
            {"decision": "ALERT", "approvals": [{"gates": [{"count": 1, "quorum": 2}]}]},
            "approvals[0].gates[0].quorum",
            "not a field",
        ),
        (
            {"decision": "ALERT", "approvals": [{"name": 3, "gates": [{"count": 1}]}]},
            "approvals[0].name",
            "non-empty",
        ),
        ({"decision": "ALERT", "approvals": ["x"]}, "approvals[0]", "a stage is"),
    ],
)
def test_bad_rules(rule: object, field: str, message: str) -> None:
    with pytest.raises(errors.InvalidPolicy) as caught:
        policies.validate_rules([RULE, rule])
    assert caught.value.field == f"rules[1].{field}"
    assert message in caught.value.message
    assert caught.value.code == "invalid_parameter"


def test_expression_error_in_a_rule_points_into_the_document() -> None:
    rules = [RULE, RULE, {"decision": "ALLOW", "when": {"allOf": ["1 < 2", "$.context.a <"]}}]
    with pytest.raises(errors.ExpressionSyntaxError) as caught:
        policies.validate_rules(rules)
    assert caught.value.field == "rules[2].when.allOf[1]"
    assert caught.value.position == 13
    assert caught.value.expression == "$.context.a <"
