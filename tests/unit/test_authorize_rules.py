"""Tables for the authorize rules: the approval's stages, the settings and their patch, the
order of the checks, what an approval's status means, and the report's arithmetic."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from clawguard.core import authorize, errors, records
from clawguard.core import gate as gate_rules
from clawguard.core.gate import settings as gate_settings
from clawguard.core.gate import stages

G = gate_rules.Gate
S = gate_rules.Stage


@pytest.mark.parametrize(("approvals", "sticky", "threshold", "wire", "default"), [
    ((), True, 1,
     [{"name": "approval", "gates": [{"count": 1, "votes": []}], "status": "pending"}], True),
    ((), False, 3,
     [{"name": "approval", "gates": [{"count": 3, "votes": []}], "status": "pending"}], True),
    # a rule's stages are used as given: the threshold does not touch them
    ((S((G(2, "finance"),), "money"),), True, 5,
     [{"name": "money", "gates": [{"group": "finance", "count": 2, "votes": []}],
       "status": "pending"}], False),
    # policy-then-rule order kept; an unnamed stage is named by its place
    ((S((G(1, "security"), G(1)),), S((G(2, "finance"),), "money")), True, 1,
     [{"name": "stage 1", "gates": [{"group": "security", "count": 1, "votes": []},
                                    {"count": 1, "votes": []}], "status": "pending"},
      {"name": "money", "gates": [{"group": "finance", "count": 2, "votes": []}],
       "status": "pending"}], False),
])
def test_stages_plan(approvals: tuple[Any, ...], sticky: bool, threshold: int,
                     wire: list[dict[str, Any]], default: bool) -> None:
    plan = stages.plan(approvals, sticky, threshold)
    assert plan.wire() == wire
    assert plan.sticky is sticky and plan.default is default


@pytest.mark.parametrize(("patch", "flagged"), [
    ({}, ()),
    ({"require_approval_for_external_comm": True}, ("external_comm",)),
    ({"category_flags": {"external_comm": True}}, ("external_comm",)),
    ({"category_flags": {"pii": True}}, ("pii",)),
    ({"require_approval_for_public_writes": True, "category_flags": {"pii": True}},
     ("pii", "public_writes")),
    ({"category_flags": {"pii": False}}, ()),
    ({"require_approval_for_permission_changes": True}, ()),
])
def test_flagged_categories(patch: dict[str, Any], flagged: tuple[str, ...]) -> None:
    settings = gate_settings.apply_patch(gate_settings.DEFAULTS, gate_settings.check_patch(patch))
    assert settings.flagged(("pii", "external_comm", "public_writes")) == flagged


def test_patch_merges_flags_key_by_key_and_null_restores_defaults() -> None:
    first = gate_settings.apply_patch(gate_settings.DEFAULTS, {
        "category_flags": {"pii": True, "financial": True}, "approval_threshold": 4,
        "allow_self_approval": True})
    second = gate_settings.apply_patch(first, {"category_flags": {"pii": None, "other": False},
                                               "approval_threshold": None})
    assert dict(second.category_flags) == {"financial": True, "other": False}
    assert second.approval_threshold == 1 and second.allow_self_approval is True
    assert gate_settings.apply_patch(second, {"category_flags": None}).category_flags == {}
    assert gate_settings.from_document(second.wire()) == second


@pytest.mark.parametrize(("patch", "error", "key"), [
    ({"x": 1}, errors.InvalidInput, "x"),
    ({"approval_threshold": True}, errors.InvalidInput, "approval_threshold"),
    ({"approval_threshold": Decimal("2.0")}, errors.InvalidInput, "approval_threshold"),
    ({"approval_threshold": 0}, errors.Unprocessable, "approval_threshold"),
    ({"approval_threshold": 101}, errors.Unprocessable, "approval_threshold"),
    ({"allow_self_approval": 1}, errors.InvalidInput, "allow_self_approval"),
    ({"category_flags": []}, errors.InvalidInput, "category_flags"),
    ({"category_flags": {"weather": True}}, errors.InvalidInput, "category_flags.weather"),
    ({"category_flags": {"pii": "yes"}}, errors.InvalidInput, "category_flags.pii"),
])
def test_bad_patches_name_their_key(patch: dict[str, Any], error: type[Exception],
                                    key: str) -> None:
    with pytest.raises(error) as raised:
        gate_settings.check_patch(patch)
    assert raised.value.details["key"] == key  # type: ignore[attr-defined]


# --- the checks, in order ---------------------------------------------------------------------

ALLOW_ACCESS = gate_rules.AccessDecision("ALLOW", "tool_policy", "tp1", ("tp1 allows",),
                                         {"max_response_size_kb": 8})
BLOCK_ACCESS = gate_rules.AccessDecision("BLOCK", "default", None, ("default deny",))


def verdict(decision: str, approvals: tuple[Any, ...] = (), sticky: bool = True
            ) -> gate_rules.Verdict:
    return gate_rules.Verdict(decision, (), "", (f"guardrails say {decision}",),  # type: ignore[arg-type]
                              approvals, sticky, ())


def run(status: str) -> records.Run:
    return records.Run(id="run_1", agent_id="a1", status=status, depth=0,  # type: ignore[arg-type]
                       parent_run_id=None, started_at=0, lease_expires_at=1, ended_at=None)


FLAG_PII = gate_settings.apply_patch(gate_settings.DEFAULTS,
                                     {"category_flags": {"pii": True}, "approval_threshold": 2})


@pytest.mark.parametrize(("stop", "the_run", "access", "guard", "settings", "outcome", "step",
                          "first_reason"), [
    ("budget_paused:agent", run("tripped"), BLOCK_ACCESS, verdict("BLOCK"), FLAG_PII,
     "BLOCK", "budget", "budget_paused:agent"),
    (None, run("tripped"), BLOCK_ACCESS, verdict("BLOCK"), FLAG_PII,
     "BLOCK", "run", "circuit_break"),
    (None, run("ended"), ALLOW_ACCESS, verdict("ALLOW"), FLAG_PII, "BLOCK", "run", "run_ended"),
    (None, run("expired"), ALLOW_ACCESS, verdict("ALLOW"), FLAG_PII,
     "BLOCK", "run", "run_expired"),
    (None, run("running"), BLOCK_ACCESS, verdict("ALERT"), FLAG_PII,
     "BLOCK", "access", "default deny"),
    (None, None, ALLOW_ACCESS, verdict("BLOCK"), FLAG_PII, "BLOCK", "guardrails", "tp1 allows"),
    (None, None, ALLOW_ACCESS, verdict("ALERT"), gate_settings.DEFAULTS,
     "ALERT", "guardrails", "tp1 allows"),
    (None, None, ALLOW_ACCESS, verdict("ALLOW"), FLAG_PII, "ALERT", "settings", "tp1 allows"),
    (None, None, ALLOW_ACCESS, verdict("ALLOW"), gate_settings.DEFAULTS,
     "ALLOW", "guardrails", "tp1 allows"),
])
def test_the_checks_run_in_order(stop: str | None, the_run: records.Run | None,
                                 access: gate_rules.AccessDecision, guard: gate_rules.Verdict,
                                 settings: gate_settings.Settings, outcome: str, step: str,
                                 first_reason: str) -> None:
    judged = authorize.judge(stop, the_run, access, guard, ("pii",), settings)
    assert (judged.outcome, judged.step, judged.reasons[0]) == (outcome, step, first_reason)
    if outcome == "BLOCK":
        assert judged.plan is None and judged.obligations == {}
    else:
        assert judged.obligations == {"max_response_size_kb": 8}


def test_an_alert_takes_the_rules_stages_or_the_threshold_and_their_stickiness() -> None:
    ruled = authorize.judge(None, None, ALLOW_ACCESS,
                            verdict("ALERT", (S((G(2, "ops"),)),), sticky=False), ("pii",),
                            FLAG_PII)
    assert ruled.plan is not None and not ruled.plan.sticky and not ruled.plan.default
    assert ruled.flagged == ("pii",)
    flagged = authorize.judge(None, None, ALLOW_ACCESS, verdict("ALLOW"), ("pii",), FLAG_PII)
    assert flagged.plan is not None and flagged.plan.stages[0].gates == (G(2),)


@pytest.mark.parametrize(("status", "decision"), [
    ("pending", "PENDING"), ("allow_once", "ALLOW"), ("allow_always", "ALLOW"),
    ("approved", "ALLOW"), ("deny", "BLOCK"), ("expired", "BLOCK"),
])
def test_what_an_approval_status_means(status: str, decision: str) -> None:
    assert authorize.decision_of(status) == decision


def test_an_outcome_is_heard_but_a_given_verdict_never_changes() -> None:
    document = {"decision": "PENDING", "reasons": ["r"], "obligations": {"a": 1},
                "policies": [], "approval": {"approvalId": "apr_1", "status": "pending",
                                             "stages": []}}
    outcome = {"decision": "BLOCK", "approvalId": "apr_1", "approvalStatus": "deny",
               "reasons": ["denied"],
               "obligations": {}}
    stored = authorize.Stored("rcp_1", "a1", "PENDING", "apr_1", "f", document, 0, None)
    assert stored.answer()["decision"] == "PENDING"
    appended, written, events = authorize.append_outcome(stored, "rcp_1", outcome)
    assert written and events[0].event_type == "tool_call"
    heard = appended.answer()
    assert heard["decision"] == "BLOCK" and heard["reasons"] == ["r", "denied"]
    assert heard["approval"]["status"] == "deny"
    again, written, _ = authorize.append_outcome(appended, "rcp_1", {**outcome,
                                                                      "decision": "ALLOW"})
    assert not written and again.answer()["decision"] == "BLOCK"
    blocked = authorize.Stored("rcp_2", "a1", "BLOCK", None, "f", document, 0, None)
    with pytest.raises(errors.Conflict):
        authorize.append_outcome(blocked, "rcp_2", {**outcome, "decision": "ALLOW"})


@pytest.mark.parametrize(("figures", "rate", "minutes"), [
    (authorize.ReportFigures(0, 0, 0, 0, 0, []), None, None),
    (authorize.ReportFigures(10, 3, 2, 1, 240_000, []), Decimal("0.667"), Decimal("2.0")),
    (authorize.ReportFigures(10, 2, 0, 2, 0, []), Decimal("0.000"), None),
    (authorize.ReportFigures(9, 3, 3, 0, 90_000, []), Decimal("1.000"), Decimal("0.5")),
])
def test_report_arithmetic(figures: authorize.ReportFigures, rate: Decimal | None,
                           minutes: Decimal | None) -> None:
    body = authorize.report("last_7_days", figures)
    assert (body["approval_rate"], body["avg_approval_time_minutes"]) == (rate, minutes)
