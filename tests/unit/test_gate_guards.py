"""Guards: every form, nesting, no short-circuit, and compile errors that point at the bad part."""

from __future__ import annotations

import pytest

from clawguard.core.gate import errors, expressions, guards

DOC: dict[str, object] = {
    "arguments": {"amount": 50},
    "context": {"testsPass": True, "blocked": False},
    "action": {"connector": None, "tool": "deploy", "value": None},
    "principal": {"agentId": "a1", "roles": ("admin",), "scopes": ()},
}

T = "$.context.testsPass == true"  # True
F = "$.context.blocked == true"  # False
U = "$.context.nope == 1"  # unevaluable


def ev(guard: object, doc: dict[str, object] = DOC) -> expressions.Result:
    return guards.compile_guard(guard).evaluate(doc)


@pytest.mark.parametrize(
    ("guard", "expected"),
    [
        (T, True),
        (F, False),
        ({"expr": T}, True),
        ({"expr": F}, False),
        ({"role": "admin"}, True),
        ({"role": "finance"}, False),
        ({"allOf": [T, T]}, True),
        ({"allOf": [T, F]}, False),
        ({"all_of": [T, {"role": "admin"}]}, True),
        ({"anyOf": [F, T]}, True),
        ({"anyOf": [F, F]}, False),
        ({"any_of": [F, {"role": "admin"}]}, True),
        ({"not": F}, True),
        ({"not": {"expr": T}}, False),
        ({"not": {"role": "finance"}}, True),
        # seed 003's composition examples
        ({"allOf": [{"role": "admin"}, {"expr": "$.context.testsPass == true"}]}, True),
        ({"anyOf": [{"role": "admin"}, {"expr": F}]}, True),
        ({"not": {"expr": "$.context.blocked == true"}}, True),
        # an allOf inside an anyOf inside another allOf
        ({"allOf": [T, {"anyOf": [F, {"allOf": [T, {"not": F}]}]}]}, True),
        ({"allOf": [T, {"anyOf": [F, {"allOf": [T, {"not": T}]}]}]}, False),
    ],
)
def test_forms(guard: object, expected: bool) -> None:
    assert ev(guard) is expected


@pytest.mark.parametrize(
    "guard",
    [
        U,
        {"not": U},
        {"allOf": [F, U]},  # would short-circuit to False
        {"allOf": [U, F]},
        {"anyOf": [T, U]},  # would short-circuit to True
        {"anyOf": [U, T]},
        {"not": {"anyOf": [T, {"allOf": [T, U]}]}},
        {"allOf": [T, "$.arguments.amount == 'x'"]},  # a type mismatch too
    ],
)
def test_unevaluable_anywhere_makes_the_whole_guard_unevaluable(guard: object) -> None:
    result = ev(guard)
    assert isinstance(result, expressions.Unevaluable)


def test_first_unevaluable_reason_is_reported() -> None:
    result = ev({"anyOf": [T, "$.context.x == 1", "$.context.y == 1"]})
    assert result == expressions.Unevaluable("missing path $.context.x")


@pytest.mark.parametrize(
    "principal",
    [None, {}, {"roles": None}, {"roles": "admin"}, {"roles": []}, "admin"],
)
def test_role_guard_without_roles_is_false(principal: object) -> None:
    doc = {**DOC, "principal": principal}
    assert ev({"role": "admin"}, doc) is False


@pytest.mark.parametrize(
    ("guard", "field", "message"),
    [
        (5, "", "a guard is an expression string or an object"),
        (None, "", "a guard is an expression string or an object"),
        ({}, "", "exactly one of"),
        ({"expr": T, "role": "x"}, "", "exactly one of"),
        ({"kind": "expr"}, "", "unknown guard 'kind'"),
        ({"expr": 5}, "expr", "expression string"),
        ({"role": ""}, "role", "non-empty role"),
        ({"role": ["a"]}, "role", "non-empty role"),
        ({"allOf": []}, "allOf", "non-empty list"),
        ({"anyOf": T}, "anyOf", "non-empty list"),
        ({"allOf": [T, "$.context.a = 1"]}, "allOf[1]", "'=' is not an operator"),
        ({"allOf": [T, {"expr": "bad"}]}, "allOf[1].expr", "unknown word"),
        ({"anyOf": [T, {"not": {"allOf": [T, 3]}}]}, "anyOf[1].not.allOf[1]", "a guard is"),
        ({"all_of": [{"any_of": [T, {}]}]}, "all_of[0].any_of[1]", "exactly one of"),
    ],
)
def test_compile_errors_name_the_bad_guard(guard: object, field: str, message: str) -> None:
    with pytest.raises(errors.InvalidPolicy) as caught:
        guards.compile_guard(guard)
    assert caught.value.field == field
    assert message in caught.value.message


def test_syntax_error_in_a_guard_keeps_expression_and_position() -> None:
    with pytest.raises(errors.ExpressionSyntaxError) as caught:
        guards.compile_guard({"not": {"allOf": [T, {"expr": "$.context.a >> 1"}]}})
    exc = caught.value
    assert exc.field == "not.allOf[1].expr"
    assert exc.expression == "$.context.a >> 1"
    assert exc.position == 13
    assert exc.within("rules[2].when").field == "rules[2].when.not.allOf[1].expr"


def test_nesting_is_bounded() -> None:
    guard: object = T
    for _ in range(guards.MAX_DEPTH):
        guard = {"not": guard}
    guards.compile_guard(guard)
    with pytest.raises(errors.InvalidPolicy) as caught:
        guards.compile_guard({"not": guard})
    assert "nest at most" in caught.value.message
