"""Seed 003's expression language: tokens, syntax errors with positions, operators, operands."""

from __future__ import annotations

from decimal import Decimal

import pytest

from clawguard.core.gate import errors, expressions

DOC: dict[str, object] = {
    "arguments": {
        "amount": 1500,
        "price": Decimal("19.99"),
        "branch": "feat/login",
        "items": [{"name": "first", "qty": 2}, {"name": "second", "qty": 0}],
        "flag": True,
        "nothing": None,
        "ratio": 0.5,
        "nan": Decimal("NaN"),
        "tags": ["a", "b"],
        "same_tags": ["a", "b"],
        "meta": {"k": 1},
        "0": "zero-key",
    },
    "context": {
        "reviewCount": 3,
        "requiredReviews": 2,
        "before": 10,
        "after": 12,
        "policyOk": True,
        "policy_note": "ok",
        "fmeca": {"maxResidualRpn": 80},
        "blocked": False,
    },
    "action": {"connector": "cn_1", "tool": "order.refund", "value": Decimal("180.00")},
    "principal": {"agentId": "agent-7", "roles": ("finance", "ops"), "scopes": ()},
}


def ev(source: str, doc: dict[str, object] = DOC) -> expressions.Result:
    return expressions.parse(source).evaluate(doc)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # seed 003's own examples
        ("$.context.fmeca.maxResidualRpn <= 80", True),
        ("$.arguments.branch starts_with 'feat/'", True),
        ("$.context.reviewCount >= $.context.requiredReviews", True),
        ("$.context.policyOk == true", True),
        ("$.context.after > $.context.before", True),
        # every operator, both outcomes
        ("$.arguments.amount == 1500", True),
        ("$.arguments.amount == 1501", False),
        ("$.arguments.amount != 1501", True),
        ("$.arguments.amount != 1500", False),
        ("$.arguments.amount < 1501", True),
        ("$.arguments.amount < 1500", False),
        ("$.arguments.amount <= 1500", True),
        ("$.arguments.amount <= 1499", False),
        ("$.arguments.amount > 1499", True),
        ("$.arguments.amount > 1500", False),
        ("$.arguments.amount >= 1500", True),
        ("$.arguments.amount >= 1501", False),
        ("$.arguments.branch starts_with 'feat'", True),
        ("$.arguments.branch starts_with 'fix/'", False),
        ("$.arguments.branch contains 'log'", True),
        ("$.arguments.branch contains 'xyz'", False),
        ("$.arguments.branch contains ''", True),
        # operand kinds
        ("$.arguments.price == 19.99", True),
        ("$.arguments.price < 20", True),
        ("$.arguments.amount == 1500.0", True),  # ints and decimals are one type
        ("$.arguments.amount == 1.5e3", True),
        ("$.arguments.amount > -1", True),
        ('$.arguments.branch == "feat/login"', True),
        ("$.arguments.flag == true", True),
        ("$.arguments.flag != false", True),
        ("$.arguments.nothing == null", True),
        ("null == null", True),
        ("1 < 2", True),
        ("'ab' starts_with 'a'", True),
        # path forms
        ("$.arguments.items[0].name == 'first'", True),
        ("$.arguments.items.0.name == 'first'", True),
        ("$.arguments.items[1].qty == 0", True),
        ("$.arguments.items.1.qty < 1", True),
        ("$.arguments.0 == 'zero-key'", True),  # a digit key on an object is a key
        ("$.arguments.tags[1] == 'b'", True),
        ("$.arguments.tags == $.arguments.same_tags", True),
        ("$.arguments.meta == $.arguments.meta", True),
        ("$.action.tool == 'order.refund'", True),
        ("$.action.connector == 'cn_1'", True),
        ("$.action.value == 180", True),
        ("$.principal.agentId == 'agent-7'", True),
        ("$.principal.roles[1] == 'ops'", True),
        # camelCase and snake_case both read the key that is there
        ("$.principal.agent_id == 'agent-7'", True),
        ("$.context.review_count == 3", True),
        ("$.context.fmeca.max_residual_rpn == 80", True),
        ("$.context.policyNote == 'ok'", True),
        # null equals only null, and is never a type mismatch
        ("$.arguments.nothing == 0", False),
        ("$.arguments.nothing != 0", True),
        ("$.arguments.nothing == false", False),
        ("$.arguments.nothing == ''", False),
        ("$.arguments.amount == null", False),
        ("$.arguments.amount != null", True),
        ("$.arguments.nothing < 5", False),
        ("$.arguments.nothing >= 5", False),
        ("$.arguments.nothing starts_with 'a'", False),
        ("$.arguments.branch contains null", False),
        # whitespace does not matter
        ("  $.arguments.amount>=1500  ", True),
        ("$.arguments.amount\t==\n1500", True),
        # escapes
        ("'it\\'s' == \"it's\"", True),
        ("'a\\\\b' contains '\\\\'", True),
        ("'\\u0041' == 'A'", True),
        ("'line\\nbreak' contains '\\n'", True),
    ],
)
def test_evaluates(source: str, expected: bool) -> None:
    assert ev(source) is expected


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("$.context.missing == 1", "missing path $.context.missing"),
        ("1 == $.context.missing", "missing path $.context.missing"),
        ("$.arguments.items[5].name == 'x'", "missing path $.arguments.items[5].name"),
        ("$.arguments.items.0.nope == 'x'", "missing path"),
        ("$.arguments.branch.length > 1", "missing path"),  # no key inside a string
        ("$.arguments.tags.x == 'a'", "missing path"),  # a name is not an index
        # type mismatches: ==/!= need the same type, order needs numbers, words need strings
        ("$.arguments.amount == '1500'", "type mismatch"),
        ("$.arguments.flag == 1", "type mismatch"),
        ("$.arguments.flag != 0", "type mismatch"),
        ("$.arguments.branch < $.arguments.amount", "type mismatch"),
        ("$.arguments.flag > $.arguments.amount", "type mismatch"),
        ("$.arguments.amount starts_with $.arguments.branch", "type mismatch"),
        ("$.arguments.tags contains $.arguments.branch", "type mismatch"),
        ("$.arguments.tags == $.arguments.meta", "type mismatch"),
        ("$.arguments.tags < $.arguments.amount", "type mismatch"),
        # values the gate refuses to compare
        ("$.arguments.ratio > 0", "float"),
        ("$.arguments.nan > 0", "non-finite"),
        ("$.arguments.nan == null", "non-finite"),
    ],
)
def test_unevaluable(source: str, reason: str) -> None:
    result = ev(source)
    assert isinstance(result, expressions.Unevaluable)
    assert reason in result.reason


def test_missing_root_document_is_a_missing_path() -> None:
    result = expressions.parse("$.context.a == 1").evaluate({})
    assert result == expressions.Unevaluable("missing path $.context.a")


def test_nested_kind_difference_is_inequality_not_mismatch() -> None:
    doc = {"arguments": {"a": [1, "x"], "b": [1, 2], "c": [True], "d": [1]}}
    assert ev("$.arguments.a == $.arguments.b", doc) is False
    assert ev("$.arguments.c != $.arguments.d", doc) is True


def test_bool_is_not_a_number_even_inside_python() -> None:
    doc = {"arguments": {"t": True}}
    assert isinstance(ev("$.arguments.t > 0", doc), expressions.Unevaluable)
    assert isinstance(ev("$.arguments.t == 1", doc), expressions.Unevaluable)


def test_exact_key_wins_over_other_spelling() -> None:
    doc = {"context": {"reviewCount": 1, "review_count": 2}}
    assert ev("$.context.reviewCount == 1", doc) is True
    assert ev("$.context.review_count == 2", doc) is True


def test_deep_values_do_not_raise() -> None:
    deep: list[object] = []
    cur = deep
    for _ in range(5000):
        nxt: list[object] = []
        cur.append(nxt)
        cur = nxt
    doc = {"arguments": {"a": deep, "b": deep}}
    result = ev("$.arguments.a == $.arguments.b", doc)
    assert isinstance(result, expressions.Unevaluable)


def test_literal_numbers_are_int_or_decimal() -> None:
    left = expressions.parse("1.25 == 3").left
    assert isinstance(left, expressions.Constant)
    assert left.value == Decimal("1.25") and type(left.value) is Decimal
    right = expressions.parse("1.25 == 3").right
    assert isinstance(right, expressions.Constant)
    assert type(right.value) is int


def test_tokens() -> None:
    kinds = [t.kind.name for t in expressions.tokenize("$.a.b[0].0 >= -1.5e2")]
    assert kinds == [
        "DOLLAR", "DOT", "NAME", "DOT", "NAME", "LBRACKET", "INDEX", "RBRACKET",
        "DOT", "NAME", "OPERATOR", "NUMBER", "END",
    ]  # fmt: skip
    # inside a path, 0.1 is two keys, not a number
    kinds = [t.kind.name for t in expressions.tokenize("$.a.0.1")]
    assert kinds == ["DOLLAR", "DOT", "NAME", "DOT", "NAME", "DOT", "NAME", "END"]
    string = expressions.tokenize("'a\\tb'")[0]
    assert string.value == "a\tb" and string.position == 0


@pytest.mark.parametrize(
    ("source", "position", "message"),
    [
        ("", 0, "empty"),
        ("   ", 3, "empty"),
        ("$.context.a", 11, "expected an operator"),
        ("$.context.a ==", 14, "expected an operand"),
        ("== 1", 0, "expected an operand"),
        ("$.context.a = 1", 12, "'=' is not an operator"),
        ("$.context.a ! 1", 12, "'!' is not an operator"),
        ("$.context.a === 1", 14, "'=' is not an operator"),
        ("$.context.a == 1 2", 17, "after the comparison"),
        ("$.context.a == 1 && $.context.b == 2", 17, "unexpected character '&'"),
        ("$.context.a == 1 and $.context.b == 2", 17, "unknown word 'and'"),
        ("$.context.a == yes", 15, "unknown word 'yes'"),
        ("$.context.a == True", 15, "did you mean 'true'"),
        ("$.context.a STARTS_WITH 'x'", 12, "did you mean 'starts_with'"),
        ("$.context.a == 'open", 15, "unterminated string"),
        ('$.context.a == "open', 15, "unterminated string"),
        ("$.context.a == 'x\\q'", 17, "unknown escape"),
        ("$.context.a == '\\u00zz'", 16, "four hexadecimal digits"),
        ("$.context.a == 1.2.3", 18, "in a number"),
        ("$.context.a == 12abc", 17, "in a number"),
        ("$.context.a == .5", 15, "unexpected character '.'"),
        ("$.context..a == 1", 10, "expected a key after '.'"),
        ("$.context. == 1", 10, "expected a key after '.'"),
        ("$.context[x] == 1", 10, "index"),
        ("$.context[-1] == 1", 10, "index"),
        ("$.context[1 == 1", 11, "expected ']'"),
        ("$ == 1", 0, "a path starts with '$.'"),
        ("$[0] == 1", 0, "a path starts with '$.'"),
        ("$.workflow.input.x == 1", 2, "unknown root 'workflow'"),
        ("$.output.x == 1", 2, "unknown root 'output'"),
        ("$.action.amount == 1", 9, "$.action has no field 'amount'"),
        ("$.principal.name == 'x'", 12, "$.principal has no field 'name'"),
        ("$.context.a < 'ten'", 14, "< compares numbers"),
        ("$.context.a >= true", 15, ">= compares numbers"),
        ("$.context.a starts_with 1", 24, "starts_with compares strings"),
        ("5 contains $.context.a", 0, "contains compares strings"),
        ("1 == 'one'", 5, "type mismatch"),
        ("true != 0", 8, "type mismatch"),
        ("$.context.a == 1 # comment", 17, "unexpected character '#'"),
        ("x" * 2001, 2000, "at most 2000"),
    ],
)
def test_syntax_errors_carry_position(source: str, position: int, message: str) -> None:
    with pytest.raises(errors.ExpressionSyntaxError) as caught:
        expressions.parse(source)
    assert caught.value.position == position, caught.value.message
    assert message in caught.value.message
    assert caught.value.expression == source
    assert caught.value.code == "invalid_parameter"
    assert f"at position {position}" in str(caught.value)


def test_a_syntax_error_is_an_invalid_policy() -> None:
    with pytest.raises(errors.InvalidPolicy):
        expressions.parse("nope")


def test_not_a_string_is_refused() -> None:
    with pytest.raises(errors.ExpressionSyntaxError):
        expressions.parse(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "source",
    [
        "null < 5",  # comparing with null is allowed, and False
        "$.context.a == null",
        "$.context.a != 'x'",
        "$.arguments.items[10].name contains 'x'",
        "$.principal.scopes == $.principal.roles",
        "$.action.value >= 0.001",
    ],
)
def test_parses(source: str) -> None:
    assert expressions.parse(source).source == source
