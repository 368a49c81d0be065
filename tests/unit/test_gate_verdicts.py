"""Seed 002's verdict: its worked example, the min_value split, matchers, constraints, citations."""

from __future__ import annotations

from decimal import Decimal

import pytest

from clawguard.core.gate import errors, policies, subjects, verdicts

REFUND_CEILING = policies.Policy(
    "grd_3c90e1",
    "refund-ceiling",
    3,
    [
        {"tool": "order.refund", "decision": "ALLOW", "max_value": 250},
        {"tool": "order.refund", "decision": "ALERT"},
    ],
)
SPLIT = policies.Policy(
    "grd_split",
    "refund-split",
    1,
    [
        {"tool": "order.refund", "decision": "ALLOW", "max_value": 1000},
        {"tool": "order.refund", "decision": "ALERT", "min_value": 250},
    ],
)


def verdict(
    policy_list: list[policies.Policy],
    tool: str = "order.refund",
    value: int | Decimal | None = None,
    *,
    connector: str | None = "cn_7d2f4a",
    arguments: dict[str, object] | None = None,
    roles: tuple[str, ...] = (),
    context: dict[str, object] | None = None,
) -> verdicts.Verdict:
    action = subjects.Action(tool, connector=connector, value=value, arguments=arguments or {})
    principal = subjects.Principal("agent-1", roles=roles)
    return verdicts.evaluate(action, principal, context, verdicts.compile(policy_list))


def test_seed_worked_example_180_alerts() -> None:
    result = verdict([REFUND_CEILING], value=180)
    assert result.decision == "ALERT"
    assert [
        (m.policy_id, m.policy_version, m.rule_index, m.constraint_failed) for m in result.matched
    ] == [("grd_3c90e1", 3, 0, None), ("grd_3c90e1", 3, 1, None)]
    assert result.matched[0].rule == {"tool": "order.refund", "decision": "ALLOW", "max_value": 250}
    assert "ALERT" in result.explanation


def test_seed_worked_example_300_blocks_on_the_ceiling() -> None:
    result = verdict([REFUND_CEILING], value=300)
    assert result.decision == "BLOCK"
    assert result.matched[0].constraint_failed == "max_value"
    assert "value 300 exceeds max_value 250 on refund-ceiling v3" in result.explanation


def test_seed_dry_run_example() -> None:
    v4 = policies.Policy(
        "grd_3c90e1",
        "refund-ceiling",
        3,
        [{"tool": "order.refund", "decision": "ALLOW", "max_value": 250}],
    )
    result = verdict([v4], value=300)
    assert result.decision == "BLOCK"
    assert len(result.matched) == 1 and result.matched[0].constraint_failed == "max_value"
    assert verdict([v4], value=250).decision == "ALLOW"
    assert verdict([v4], value=Decimal("250.01")).decision == "BLOCK"


@pytest.mark.parametrize(
    ("value", "decision"),
    [
        (0, "ALLOW"),
        (Decimal("249.99"), "ALLOW"),
        (250, "ALERT"),  # min_value matches value >= min_value
        (999, "ALERT"),
        (1000, "ALERT"),
        (1001, "BLOCK"),  # above the ceiling
        (None, "BLOCK"),  # no value: the ceiling cannot hold
    ],
)
def test_min_value_split(value: int | Decimal | None, decision: str) -> None:
    assert verdict([SPLIT], value=value).decision == decision


def test_no_policies_blocks() -> None:
    result = verdict([], value=1)
    assert result.decision == "BLOCK" and result.matched == ()
    assert "default-closed" in result.explanation


def test_no_matching_rule_blocks() -> None:
    assert verdict([REFUND_CEILING], tool="order.hold").decision == "BLOCK"


def test_disabled_policy_is_skipped() -> None:
    allow = policies.Policy("grd_a", "allow-all", 1, [{"decision": "ALLOW"}], status="disabled")
    assert verdict([allow], value=1).decision == "BLOCK"


def test_rule_without_tool_matches_every_tool_in_order() -> None:
    first = policies.Policy("grd_1", "any-tool", 1, [{"decision": "ALERT"}])
    second = policies.Policy("grd_2", "one-tool", 1, [{"tool": "t", "decision": "ALLOW"}])
    third = policies.Policy("grd_3", "any-again", 2, [{"decision": "ALLOW"}])
    result = verdict([first, second, third], tool="t")
    assert [m.policy_id for m in result.matched] == ["grd_1", "grd_2", "grd_3"]
    assert [p.id for p in result.policies] == ["grd_1", "grd_2", "grd_3"]
    assert result.decision == "ALERT"
    assert [m.policy_id for m in verdict([first, second, third], tool="u").matched] == [
        "grd_1",
        "grd_3",
    ]


@pytest.mark.parametrize(
    ("connector", "decision"), [("cn_1", "ALLOW"), ("cn_2", "BLOCK"), (None, "BLOCK")]
)
def test_connector_matcher(connector: str | None, decision: str) -> None:
    policy = policies.Policy("grd_c", "conn", 1, [{"connector": "cn_1", "decision": "ALLOW"}])
    assert verdict([policy], connector=connector).decision == decision


@pytest.mark.parametrize(
    ("roles", "decision"),
    [((), "BLOCK"), (("ops",), "BLOCK"), (("finance",), "ALLOW"), (("ops", "audit"), "ALLOW")],
)
def test_roles_matcher(roles: tuple[str, ...], decision: str) -> None:
    policy = policies.Policy(
        "grd_r", "roles", 1, [{"roles": ["finance", "audit"], "decision": "ALLOW"}]
    )
    assert verdict([policy], roles=roles).decision == decision


def test_roles_matcher_keeps_an_alert_off_other_roles() -> None:
    policy = policies.Policy(
        "grd_r",
        "juniors-alert",
        1,
        [{"decision": "ALLOW"}, {"roles": ["junior"], "decision": "ALERT"}],
    )
    assert verdict([policy], roles=("senior",)).decision == "ALLOW"
    assert verdict([policy], roles=("junior",)).decision == "ALERT"


WHEN = policies.Policy(
    "grd_w",
    "when",
    1,
    [
        {"decision": "ALLOW"},
        {"decision": "ALERT", "when": "$.arguments.country != 'FR'"},
    ],
)


@pytest.mark.parametrize(
    ("arguments", "decision", "failed"),
    [
        ({"country": "FR"}, "ALLOW", None),  # when is false: the ALERT rule does not match
        ({"country": "US"}, "ALERT", None),
        ({}, "BLOCK", "when"),  # unevaluable: a failed constraint, not a non-match
        ({"country": 33}, "BLOCK", "when"),
    ],
)
def test_when(arguments: dict[str, object], decision: str, failed: str | None) -> None:
    result = verdict([WHEN], arguments=arguments)
    assert result.decision == decision
    assert [m.constraint_failed for m in result.matched if m.rule_index == 1] == (
        [] if decision == "ALLOW" else [failed]
    )
    if failed:
        assert "the when of when v1 rule 1 cannot be evaluated" in result.explanation


def test_when_reads_context_action_and_principal() -> None:
    policy = policies.Policy(
        "grd_w",
        "reads-all",
        1,
        [
            {
                "decision": "ALLOW",
                "when": {
                    "allOf": [
                        "$.context.ticket starts_with 'INC-'",
                        "$.action.value <= 100",
                        "$.action.tool == 'order.refund'",
                        "$.principal.agent_id == 'agent-1'",
                        {"role": "support"},
                    ]
                },
            }
        ],
    )
    ok = verdict([policy], value=50, roles=("support",), context={"ticket": "INC-1"})
    assert ok.decision == "ALLOW"
    assert verdict([policy], value=50, roles=(), context={"ticket": "INC-1"}).decision == "BLOCK"
    missing = verdict([policy], value=50, roles=("support",), context=None)
    assert missing.decision == "BLOCK" and missing.matched[0].constraint_failed == "when"


def test_approvals_concatenate_in_policy_then_rule_order() -> None:
    def stage(name: str) -> dict[str, object]:
        return {"name": name, "gates": [{"count": 1, "group": name}]}

    first = policies.Policy(
        "grd_1",
        "first",
        1,
        [
            {"decision": "ALERT", "approvals": [stage("a"), stage("b")]},
            {"decision": "ALLOW"},
            {"decision": "ALERT", "approvals": [stage("c")]},
        ],
    )
    second = policies.Policy(
        "grd_2", "second", 1, [{"decision": "ALERT", "approvals": [stage("d")], "sticky": False}]
    )
    result = verdict([first, second])
    assert result.decision == "ALERT"
    assert [s.name for s in result.approvals] == ["a", "b", "c", "d"]
    assert result.approvals[0] == policies.Stage((policies.Gate(1, "a"),), "a")
    assert result.sticky is False
    assert verdict([first]).sticky is True
    # an ALERT rule without approvals contributes none: the default threshold then applies
    assert verdict([policies.Policy("grd_3", "plain", 1, [{"decision": "ALERT"}])]).approvals == ()


def test_blocked_verdict_opens_no_approval() -> None:
    policy = policies.Policy(
        "grd_1",
        "p",
        1,
        [{"decision": "ALERT", "max_value": 10, "approvals": [{"gates": [{"count": 1}]}]}],
    )
    result = verdict([policy], value=11)
    assert result.decision == "BLOCK" and result.approvals == ()


@pytest.mark.parametrize("value", [1.5, True, "100", Decimal("NaN"), Decimal("Infinity")])
def test_a_value_that_is_not_a_number_blocks(value: object) -> None:
    allow = policies.Policy("grd_a", "allow-all", 1, [{"decision": "ALLOW"}])
    result = verdict([allow], value=value)  # type: ignore[arg-type]
    assert result.decision == "BLOCK"
    assert "not a number" in result.explanation


def test_compile_refuses_a_bad_stored_rule() -> None:
    bad = policies.Policy("grd_b", "bad", 1, [{"decision": "ALLOW", "when": "$.x == 1"}])
    with pytest.raises(errors.InvalidPolicy) as caught:
        verdicts.compile([REFUND_CEILING, bad])
    assert caught.value.field == "policies[1].rules[0].when"


def test_compiled_set_counts_active_rules() -> None:
    disabled = policies.Policy("grd_d", "off", 1, [{"decision": "ALLOW"}], status="disabled")
    policy_set = verdicts.compile([REFUND_CEILING, SPLIT, disabled])
    assert policy_set.rule_count == 4
    assert [p.id for p in policy_set.policies] == ["grd_3c90e1", "grd_split"]
