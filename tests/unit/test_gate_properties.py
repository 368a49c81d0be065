"""Properties of the gate over random policy sets and actions: what adding, removing and
disabling policies may do to a verdict, and that no input makes the gate raise."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clawguard.core.gate import errors, expressions, guards, policies, subjects, verdicts

settings.register_profile(
    "gate",
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)
SETTINGS = settings.get_profile("gate")

RANK = {"ALLOW": 0, "ALERT": 1, "BLOCK": 2}
TOOLS = ["t1", "t2", "t3"]
WHENS: list[object] = [
    "$.arguments.x > 10",
    "$.arguments.y == 'a'",
    "$.context.flag == true",
    {"role": "r1"},
    {"not": "$.arguments.x > 10"},
    {"anyOf": ["$.arguments.x <= 3", {"role": "r2"}]},
    {"allOf": ["$.principal.agentId == 'a1'", "$.action.value >= 5"]},
]


@st.composite
def rules(draw: st.DrawFn, decision: str | None = None) -> dict[str, object]:
    rule: dict[str, object] = {"decision": decision or draw(st.sampled_from(["ALLOW", "ALERT"]))}
    if draw(st.booleans()):
        rule["tool"] = draw(st.sampled_from(TOOLS))
    if draw(st.integers(0, 3)) == 0:
        rule["connector"] = draw(st.sampled_from(["c1", "c2"]))
    if draw(st.booleans()):
        rule["max_value"] = draw(st.integers(1, 100))
    if draw(st.integers(0, 2)) == 0:
        low = draw(st.integers(0, 100))
        if low <= int(rule.get("max_value", 100)):  # type: ignore[call-overload]
            rule["min_value"] = low
    if draw(st.integers(0, 3)) == 0:
        rule["roles"] = draw(st.lists(st.sampled_from(["r1", "r2", "r3"]), min_size=1, max_size=2))
    if draw(st.integers(0, 2)) == 0:
        rule["when"] = draw(st.sampled_from(WHENS))
    if rule["decision"] == "ALERT" and draw(st.booleans()):
        rule["approvals"] = [{"gates": [{"count": draw(st.integers(1, 3))}]}]
    if draw(st.integers(0, 3)) == 0:
        rule["sticky"] = draw(st.booleans())
    return rule


_ids = iter(range(10**9))


@st.composite
def policy_docs(draw: st.DrawFn, rule_strategy: st.SearchStrategy[dict[str, object]] | None = None
                ) -> policies.Policy:  # fmt: skip
    n = next(_ids)
    return policies.Policy(
        f"grd_{n}",
        f"policy-{n}",
        draw(st.integers(1, 5)),
        draw(st.lists(rules() if rule_strategy is None else rule_strategy, min_size=1, max_size=4)),
        draw(st.sampled_from(["active", "active", "disabled"])),
    )


values = st.one_of(st.none(), st.integers(0, 120), st.decimals(0, 120, places=2))
actions = st.builds(
    subjects.Action,
    tool=st.sampled_from([*TOOLS, "t4"]),
    connector=st.sampled_from([None, "c1", "c2"]),
    value=values,
    arguments=st.fixed_dictionaries(
        {}, optional={"x": st.one_of(st.integers(0, 20), st.text(max_size=2)), "y": st.text("ab")}
    ),
)
principals = st.builds(
    subjects.Principal,
    agent_id=st.sampled_from([None, "a1", "a2"]),
    roles=st.lists(st.sampled_from(["r1", "r2", "r3"]), max_size=2).map(tuple),
)
contexts = st.one_of(st.none(), st.fixed_dictionaries({}, optional={"flag": st.booleans()}))
policy_sets = st.lists(policy_docs(), max_size=6)


def run(
    action: subjects.Action,
    principal: subjects.Principal,
    context: dict[str, object] | None,
    policy_list: list[policies.Policy],
) -> verdicts.Verdict:
    verdict = verdicts.evaluate(action, principal, context, verdicts.compile(policy_list))
    assert not any(r.startswith(verdicts.INTERNAL_ERROR) for r in verdict.reasons)
    return verdict


@SETTINGS
@given(policy_sets, policy_docs(), actions, principals, contexts)
def test_adding_a_policy_turns_block_into_allow_only_with_a_matching_allow_rule(
    existing: list[policies.Policy],
    added: policies.Policy,
    action: subjects.Action,
    principal: subjects.Principal,
    context: dict[str, object] | None,
) -> None:
    before = run(action, principal, context, existing)
    after = run(action, principal, context, [*existing, added])
    if before.decision == "BLOCK" and after.decision == "ALLOW":
        alone = run(action, principal, context, [added])
        assert alone.decision == "ALLOW"
        assert any(
            m.policy_id == added.id and m.decision == "ALLOW" and m.constraint_failed is None
            for m in after.matched
        )
    if before.matched and before.decision == "BLOCK":  # a failed constraint stays
        assert after.decision == "BLOCK"
    if before.decision == "ALERT":
        assert after.decision in ("ALERT", "BLOCK")


@SETTINGS
@given(policy_sets, st.integers(0, 5), rules(decision="ALERT"), actions, principals, contexts)
def test_adding_an_alert_rule_never_turns_anything_into_allow(
    existing: list[policies.Policy],
    where: int,
    alert_rule: dict[str, object],
    action: subjects.Action,
    principal: subjects.Principal,
    context: dict[str, object] | None,
) -> None:
    before = run(action, principal, context, existing)
    if existing:
        target = existing[where % len(existing)]
        changed = policies.Policy(
            target.id, target.name, target.version + 1, [*target.rules, alert_rule], target.status
        )
        after_list = [changed if p is target else p for p in existing]
    else:
        after_list = [policies.Policy("grd_new", "new", 1, [alert_rule])]
    after = run(action, principal, context, after_list)
    if after.decision == "ALLOW":
        assert before.decision == "ALLOW"
    if before.decision == "ALERT":
        assert after.decision in ("ALERT", "BLOCK")


@SETTINGS
@given(st.lists(policy_docs(), min_size=1, max_size=6), st.integers(0, 5), st.booleans(),
       actions, principals, contexts)  # fmt: skip
def test_removing_a_policy_widens_only_by_dropping_its_alert_or_failed_constraint(
    existing: list[policies.Policy],
    which: int,
    disable: bool,
    action: subjects.Action,
    principal: subjects.Principal,
    context: dict[str, object] | None,
) -> None:
    # Seed 002 says deletion "can only narrow what runs". That holds for what it
    # allows, not for its constraints: dropping a policy drops its ceilings and
    # ALERTs too (see test_removing_a_ceiling_widens). What holds is this.
    removed = existing[which % len(existing)]
    if disable:
        off = policies.Policy(removed.id, removed.name, removed.version, removed.rules, "disabled")
        after_list = [off if p is removed else p for p in existing]
    else:
        after_list = [p for p in existing if p is not removed]
    before = run(action, principal, context, existing)
    after = run(action, principal, context, after_list)
    if RANK[after.decision] < RANK[before.decision]:
        assert any(
            m.policy_id == removed.id and (m.decision == "ALERT" or m.constraint_failed)
            for m in before.matched
        )
    if before.decision == "BLOCK" and not before.matched:
        assert after.decision == "BLOCK"


plain_allow = st.fixed_dictionaries(
    {"decision": st.just("ALLOW")},
    optional={
        "tool": st.sampled_from(TOOLS),
        "connector": st.sampled_from(["c1", "c2"]),
        "roles": st.lists(st.sampled_from(["r1", "r2"]), min_size=1, max_size=2),
        "min_value": st.integers(0, 100),
    },
)


@SETTINGS
@given(policy_sets, policy_docs(plain_allow), actions, principals, contexts)
def test_disabling_an_allow_policy_never_widens(
    existing: list[policies.Policy],
    allow: policies.Policy,
    action: subjects.Action,
    principal: subjects.Principal,
    context: dict[str, object] | None,
) -> None:
    with_it = run(action, principal, context, [*existing, allow])
    off = policies.Policy(allow.id, allow.name, allow.version, allow.rules, "disabled")
    without = run(action, principal, context, [*existing, off])
    assert RANK[without.decision] >= RANK[with_it.decision]


def test_removing_a_ceiling_widens() -> None:
    """The counterexample to 'deleting never widens': a ceiling in another policy."""
    ceiling = policies.Policy("grd_1", "ceiling", 1, [{"decision": "ALLOW", "max_value": 250}])
    allow = policies.Policy("grd_2", "allow", 1, [{"decision": "ALLOW"}])
    action = subjects.Action("order.refund", value=300)
    assert run(action, subjects.ANONYMOUS, None, [ceiling, allow]).decision == "BLOCK"
    assert run(action, subjects.ANONYMOUS, None, [allow]).decision == "ALLOW"


@SETTINGS
@given(policy_sets, actions, principals, contexts, st.randoms(use_true_random=False))
def test_policy_order_changes_no_decision(
    existing: list[policies.Policy],
    action: subjects.Action,
    principal: subjects.Principal,
    context: dict[str, object] | None,
    random: object,
) -> None:
    shuffled = list(existing)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    first = run(action, principal, context, existing)
    second = run(action, principal, context, shuffled)
    assert first.decision == second.decision
    assert sorted(m.policy_id for m in first.matched) == sorted(m.policy_id for m in second.matched)


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("xyab0"), inner, max_size=3)
    ),
    max_leaves=10,
)
junk_actions = st.builds(
    subjects.Action,
    tool=st.one_of(st.sampled_from(TOOLS), st.text(max_size=3)),
    connector=st.one_of(st.none(), st.sampled_from(["c1", "c2"]), st.text(max_size=2)),
    value=json_leaf,
    arguments=st.dictionaries(st.sampled_from(["x", "y", "url"]), json_values, max_size=3),
)


@SETTINGS
@given(policy_sets, junk_actions, principals, st.one_of(st.none(), st.dictionaries(
    st.sampled_from(["flag", "x"]), json_values)))  # fmt: skip
def test_no_input_makes_the_evaluator_raise(
    existing: list[policies.Policy],
    action: subjects.Action,
    principal: subjects.Principal,
    context: dict[str, object] | None,
) -> None:
    verdict = run(action, principal, context, existing)
    assert verdict.decision in RANK
    assert verdict.explanation


@SETTINGS
@given(st.text(alphabet="$.[]0123456789abxyz_'\"\\ =!<>-etruflsn", max_size=40))
def test_parse_raises_only_syntax_errors(source: str) -> None:
    try:
        expression = expressions.parse(source)
    except errors.ExpressionSyntaxError as exc:
        assert exc.position is not None and 0 <= exc.position <= len(source)
        return
    result = expression.evaluate({"arguments": {"x": 1}, "context": {}})
    assert result is True or result is False or isinstance(result, expressions.Unevaluable)


@SETTINGS
@given(st.recursive(
    st.one_of(st.sampled_from(WHENS), st.text(max_size=5), st.integers(), st.none()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["allOf", "anyOf", "not", "expr", "role", "x"]), inner,
                        max_size=2),
    ),
    max_leaves=8,
))  # fmt: skip
def test_compile_guard_raises_only_invalid_policy(document: object) -> None:
    try:
        guard = guards.compile_guard(document)
    except errors.InvalidPolicy:
        return
    result = guard.evaluate({"arguments": {"x": 1}, "principal": {"roles": ("r1",)}})
    assert result is True or result is False or isinstance(result, expressions.Unevaluable)


@pytest.mark.parametrize("value", [Decimal("1e999999"), 10**400, -(10**400)])
def test_huge_values_do_not_raise(value: int | Decimal) -> None:
    policy = policies.Policy("grd_1", "big", 1, [{"decision": "ALLOW", "max_value": 250,
                                                   "when": "$.arguments.x > 1"}])  # fmt: skip
    action = subjects.Action("t1", value=value, arguments={"x": value})
    assert run(action, subjects.ANONYMOUS, None, [policy]).decision == "BLOCK"


def reference(
    action: subjects.Action,
    principal: subjects.Principal,
    context: dict[str, object] | None,
    policy_list: list[policies.Policy],
) -> tuple[str, list[tuple[str, int, str | None]]]:
    """Seed 002's evaluate() written the plain way: every rule, no index."""
    document = subjects.document(action, principal, context)
    matched: list[tuple[str, int, str | None]] = []
    for policy in policy_list:
        if policy.status != "active":
            continue
        for index, raw in enumerate(policy.rules):
            rule = policies.validate_rule(raw)
            value = action.value
            if rule.tool is not None and rule.tool != action.tool:
                continue
            if rule.connector is not None and rule.connector != action.connector:
                continue
            if rule.min_value is not None and (value is None or value < rule.min_value):
                continue
            if rule.roles is not None and not set(rule.roles) & set(principal.roles):
                continue
            failed = None
            if rule.when is not None:
                result = rule.when.evaluate(document)
                if result is False:
                    continue
                if result is not True:
                    failed = "when"
            ceiling = rule.max_value
            if failed is None and ceiling is not None and (value is None or value > ceiling):
                failed = "max_value"
            matched.append((policy.id, index, failed))
    decisions = {
        (p.id, i): str(r["decision"]) for p in policy_list for i, r in enumerate(p.rules)
    }
    if not matched or any(f for _, _, f in matched):
        return "BLOCK", matched
    if any(decisions[(p, i)] == "ALERT" for p, i, _ in matched):
        return "ALERT", matched
    return "ALLOW", matched


@SETTINGS
@given(st.lists(policy_docs(), max_size=8), actions, principals, contexts)
def test_verdict_agrees_with_the_plain_reading_of_seed_002(
    existing: list[policies.Policy],
    action: subjects.Action,
    principal: subjects.Principal,
    context: dict[str, object] | None,
) -> None:
    verdict = run(action, principal, context, existing)
    decision, matched = reference(action, principal, context, existing)
    assert verdict.decision == decision
    assert [(m.policy_id, m.rule_index, m.constraint_failed) for m in verdict.matched] == matched
