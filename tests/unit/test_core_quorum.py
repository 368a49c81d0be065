"""The vote decider of approvals with stages as tables: gates, groups, one vote per key,
self-approval, any deny denies, stages in order, sticky grants, waivers (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from clawguard.core import approvals, errors, principals, records

NOW = 1_800_000_000_000
ASKER = principals.Principal(key_id="key_ask", name="asker", role="leader")


def leader(name: str, *groups: str, leads: frozenset[str] | None = None
           ) -> principals.Principal:
    return principals.Principal(key_id=f"key_{name}", name=name, role="leader", leads=leads,
                                groups=frozenset(groups) or None)


ANN, BOB, CAT, DAN = leader("ann", "finance"), leader("bob", "finance", "security"), \
    leader("cat", "security"), leader("dan")


def staged(stages: list[dict[str, Any]], sticky: bool = True, requester=ASKER,
           ttl: int = 60_000) -> records.Approval:
    new = approvals.new_request("apr_1", "deploy", "a1", {"env": "prod"}, "why", None, None,
                                requester, approvals.new_stages(stages), sticky)
    approval = approvals.open_request([], new, ttl, NOW).opened.approval
    assert approval is not None
    return approval


def cast(approval: records.Approval, voter: principals.Principal, decision: str = "allow_once",
         conditions: str | None = None, allow_self: bool = False, at: int = NOW + 1
         ) -> approvals.Decided:
    return approvals.vote(approval, "apr_1", approvals.Ballot(decision, "ok", conditions),  # type: ignore[arg-type]
                          None, voter, allow_self, 0, at, "grt_1")


def run(approval: records.Approval, *votes: tuple[principals.Principal, str]
        ) -> approvals.Decided:
    decided = None
    for voter, decision in votes:
        decided = cast(approval, voter, decision)
        approval = decided.approval
    assert decided is not None
    return decided


TWO_OF_ANY = [{"gates": [{"count": 2}]}]
TWO_STAGES = [{"name": "finance", "gates": [{"group": "finance", "count": 1}]},
              {"name": "security", "gates": [{"group": "security", "count": 1}]}]


# (stages, votes in order, the approval's status after the last vote, grant made)
OUTCOMES = [
    ("one vote of two", TWO_OF_ANY, [(ANN, "allow_once")], "pending", False),
    ("two of two", TWO_OF_ANY, [(ANN, "allow_once"), (DAN, "allow_once")], "approved", False),
    ("a deny first", TWO_OF_ANY, [(ANN, "deny")], "deny", False),
    ("a deny after an allow", TWO_OF_ANY, [(ANN, "allow_always"), (DAN, "deny")], "deny",
     False),
    ("every vote allow_always: sticky", TWO_OF_ANY,
     [(ANN, "allow_always"), (DAN, "allow_always")], "approved", True),
    ("one allow_once: not sticky", TWO_OF_ANY,
     [(ANN, "allow_always"), (DAN, "allow_once")], "approved", False),
    ("a conditional: not sticky", TWO_OF_ANY,
     [(ANN, "allow_always"), (DAN, "conditional")], "approved", False),
    ("first stage met, second open", TWO_STAGES, [(ANN, "allow_once")], "pending", False),
    ("both stages", TWO_STAGES, [(ANN, "allow_always"), (CAT, "allow_always")], "approved",
     True),
    ("a deny in the second stage", TWO_STAGES, [(ANN, "allow_once"), (CAT, "deny")], "deny",
     False),
    ("one vote for two groups' gates of a stage",
     [{"gates": [{"group": "finance", "count": 1}, {"group": "security", "count": 1}]}],
     [(BOB, "allow_once")], "approved", False),
    ("two gates, one met",
     [{"gates": [{"group": "finance", "count": 1}, {"count": 2}]}],
     [(ANN, "allow_once")], "pending", False),
    ("two gates, a vote counts in both",
     [{"gates": [{"group": "finance", "count": 1}, {"count": 2}]}],
     [(ANN, "allow_once"), (DAN, "allow_once")], "approved", False),
]


@pytest.mark.parametrize(("stages", "votes", "status", "sticky"),
                         [case[1:] for case in OUTCOMES], ids=[case[0] for case in OUTCOMES])
def test_outcomes(stages, votes, status, sticky):
    decided = run(staged(stages), *votes)
    assert decided.approval.status == status
    assert (decided.grant is not None) == sticky
    assert decided.final == (status != "pending")
    if status == "pending":
        assert (decided.history_action, decided.event.action) == (None, "approval.voted")
        assert decided.approval.resolved_at is None
    else:
        assert decided.event.action == "approval.resolved"
        assert decided.event.details["decision"] == status
        assert decided.history_action == (
            "deny" if status == "deny" else "allow-always" if sticky else "allow-once")
        assert decided.approval.resolved_at == NOW + 1


def test_a_sticky_false_approval_never_grants():
    decided = run(staged(TWO_OF_ANY, sticky=False), (ANN, "allow_always"), (DAN, "allow_always"))
    assert decided.approval.status == "approved" and decided.grant is None
    assert approvals.stored_status(decided.approval) == "allow_once"


def test_votes_and_stage_statuses_are_recorded_where_they_count():
    approval = run(staged(TWO_STAGES), (ANN, "allow_once")).approval
    assert approval.stages is not None
    first, second = approval.stages
    assert (first.status, second.status) == ("approved", "pending")
    [vote] = first.gates[0].votes
    assert (vote.key_id, vote.key_name, vote.decision, vote.comments, vote.voted_at) == (
        "key_ann", "ann", "allow_once", "ok", NOW + 1)
    assert second.gates[0].votes == []
    assert approvals.current_stage(approval) == 1


# (stages, earlier votes, the voter, the error, why)
REFUSALS = [
    ("a second vote of one key", TWO_OF_ANY, [(ANN, "allow_once")], ANN, errors.Conflict),
    ("no group for the gate", [{"gates": [{"group": "finance", "count": 1}]}], [], CAT,
     errors.Forbidden),
    ("no group for the current stage", TWO_STAGES, [], CAT, errors.Forbidden),
    ("the first stage's group once it is met", TWO_STAGES, [(ANN, "allow_once")],
     leader("fay", "finance"), errors.Forbidden),
    ("a key without groups on a group gate", TWO_STAGES, [], DAN, errors.Forbidden),
    ("outside the agents it leads", TWO_OF_ANY, [],
     leader("eve", leads=frozenset({"other"})), errors.Refused),
    ("the key that asked", TWO_OF_ANY, [], ASKER, errors.Refused),
    ("after a deny", TWO_OF_ANY, [(ANN, "deny")], DAN, errors.Conflict),
    ("after approval", [{"gates": [{"count": 1}]}], [(ANN, "allow_once")], DAN,
     errors.Conflict),
]


@pytest.mark.parametrize(("stages", "before", "voter", "error"),
                         [case[1:] for case in REFUSALS], ids=[case[0] for case in REFUSALS])
def test_refusals(stages, before, voter, error):
    approval = staged(stages)
    for earlier, decision in before:
        approval = cast(approval, earlier, decision).approval
    with pytest.raises(error) as raised:
        cast(approval, voter)
    assert type(raised.value) is error  # a gate refusal is a plain Forbidden: audited nowhere
    if error is errors.Refused:
        assert raised.value.event.action == "approval.decision_refused"


def test_a_refused_deny_is_recorded_nowhere_and_denies_nothing():
    approval = staged([{"gates": [{"group": "finance", "count": 1}]}])
    with pytest.raises(errors.Forbidden):
        cast(approval, CAT, "deny")
    assert approvals.votes_of(approval) == []
    assert approval.status == "pending"


def test_self_approval_only_when_the_setting_allows_it():
    approval = staged(TWO_OF_ANY)
    with pytest.raises(errors.Refused):
        cast(approval, ASKER)
    assert cast(approval, ASKER, allow_self=True).approval.status == "pending"
    assert approvals.may_vote(approval, ASKER, None, False, NOW) is False
    assert approvals.may_vote(approval, ASKER, None, True, NOW) is True


def _unstaged() -> records.Approval:
    new = approvals.new_request("apr_2", "deploy", "a1", {}, "why", None, None, ASKER)
    approval = approvals.open_request([], new, 60_000, NOW).opened.approval
    assert approval is not None
    return approval


@pytest.mark.parametrize(("approval", "voter", "needed"), [
    (lambda: staged(TWO_OF_ANY), ASKER, True),  # the asker's own vote on a staged one
    (lambda: staged(TWO_OF_ANY), ANN, False),  # anyone else's
    (_unstaged, ASKER, False),  # without stages the asker never decides, setting or not
    (lambda: None, ASKER, False),  # unknown: NotFound whatever the setting
])
def test_the_setting_is_read_only_for_a_vote_it_can_change(approval, voter, needed):
    assert approvals.needs_self_setting(approval(), voter) is needed


def _vote(allow_self: bool | None, voter: principals.Principal = ASKER
          ) -> approvals.VoteRequest:
    return approvals.VoteRequest("apr_1", approvals.Ballot("allow_once"), None, voter,
                                 allow_self, 0)


# (request, setting stored, the asker's vote counted): the caller's allow_self wins; the
# stored setting counts only where reads_setting says the store must read it.
@pytest.mark.parametrize(("request_", "setting", "reads", "counted"), [
    (_vote(None), True, True, True),
    (_vote(None), False, True, False),
    (_vote(False), True, False, False),
    (_vote(True), False, False, True),
])
def test_a_vote_request_takes_allow_self_from_the_caller_or_else_the_setting(
        request_, setting, reads, counted):
    approval = staged(TWO_OF_ANY)
    assert approvals.reads_setting(request_, approval) is reads
    if not counted:
        with pytest.raises(errors.Refused):
            approvals.rule_on(request_, approval, setting, NOW + 1, "grt_1")
        return
    decided = approvals.rule_on(request_, approval, setting, NOW + 1, "grt_1")
    assert [v.key_id for v in approvals.votes_of(decided.approval)] == [ASKER.key_id]


@pytest.mark.parametrize(("request_", "status"), [
    (approvals.ResolveRequest("apr_2", "deny", "ann", ANN, 0), "deny"),
    (approvals.VoteRequest("apr_2", approvals.Ballot("allow_once"), "ann", ANN, None, 0),
     "allow_once"),
])
def test_rule_on_an_approval_without_stages_is_the_one_decision(request_, status):
    approval = _unstaged()
    assert approvals.reads_setting(request_, approval) is False
    decided = approvals.rule_on(request_, approval, True, NOW + 1, "grt_1")
    assert (decided.approval.status, decided.final) == (status, True)


def test_rule_on_a_waiver_and_on_an_unknown_approval():
    admin = principals.Principal(key_id="key_adm", name="adm", role="admin")
    waived = approvals.rule_on(approvals.WaiveRequest("apr_1", "urgent", None, admin),
                               staged(TWO_OF_ANY), False, NOW + 1, "grt_1")
    assert waived.approval.waiver is not None and waived.final
    with pytest.raises(errors.NotFound):
        approvals.rule_on(approvals.ResolveRequest("apr_x", "deny", None, ANN, 0), None,
                          False, NOW, "grt_1")


def test_expired_is_a_conflict_and_unknown_is_not_found():
    approval = staged(TWO_OF_ANY, ttl=10)
    with pytest.raises(errors.Conflict):
        cast(approval, ANN, at=NOW + 10)
    with pytest.raises(errors.NotFound):
        approvals.vote(None, "apr_x", approvals.Ballot("deny"), None, ANN, False, 0, NOW, "g")


def test_without_stages_a_vote_is_the_one_decision_and_conditional_a_conflict():
    new = approvals.new_request("apr_1", "shell", "a1", None, None, None, None, ASKER)
    approval = approvals.open_request([], new, 1000, NOW).opened.approval
    assert approval is not None and approval.stages is None
    with pytest.raises(errors.Conflict):
        cast(approval, ANN, "conditional", "dry run")
    decided = cast(approval, ANN, "allow_always")
    assert (decided.approval.status, decided.grant is not None) == ("allow_always", True)
    with pytest.raises(errors.Refused):
        cast(approval, ASKER)


def test_conditions_are_the_executors_obligations():
    decided = run(staged(TWO_OF_ANY), (ANN, "allow_once"), (DAN, "allow_once"))
    assert approvals.conditions_of(decided.approval) == []
    approval = staged(TWO_OF_ANY)
    approval = cast(approval, ANN, "conditional", "dry run first").approval
    decided = cast(approval, DAN, "conditional", "page on-call")
    assert approvals.conditions_of(decided.approval) == ["dry run first", "page on-call"]
    assert decided.event.details["conditions"] == ["dry run first", "page on-call"]


def test_may_vote_is_what_reviewer_me_lists():
    approval = staged(TWO_STAGES)
    assert [approvals.may_vote(approval, who, None, False, NOW)
            for who in (ANN, BOB, CAT, DAN)] == [True, True, False, False]
    approval = cast(approval, ANN).approval
    assert [approvals.may_vote(approval, who, None, False, NOW)
            for who in (ANN, BOB, CAT, DAN)] == [False, True, True, False]
    assert approvals.may_vote(approval, CAT, None, False, approval.expires_at) is False


def test_waive_approves_every_open_stage_with_the_reason_and_no_grant():
    admin = principals.Principal(key_id="key_adm", name="root", role="admin")
    approval = cast(staged(TWO_STAGES), ANN, "allow_always").approval
    decided = approvals.waive(approval, "apr_1", "ticket SEC-1234", None, admin, NOW + 5)
    assert decided.approval.status == "approved" and decided.grant is None
    assert decided.approval.stages is not None
    assert [s.status for s in decided.approval.stages] == ["approved", "waived"]
    assert decided.approval.waiver == records.Waiver(
        reason="ticket SEC-1234", key_id="key_adm", key_name="root", waived_at=NOW + 5)
    assert (decided.event.action, decided.event.details["reason"]) == (
        "approval.waived", "ticket SEC-1234")
    assert approvals.stored_status(decided.approval) == "allow_once"
    with pytest.raises(errors.Conflict):
        approvals.waive(decided.approval, "apr_1", "again", None, admin, NOW + 6)
    unstaged = approvals.open_request([], approvals.new_request(
        "apr_2", "shell", "a1", None, None, None, None, ASKER), 1000, NOW).opened.approval
    with pytest.raises(errors.Conflict):
        approvals.waive(unstaged, "apr_2", "why", None, admin, NOW)
    with pytest.raises(errors.NotFound):
        approvals.waive(None, "apr_3", "why", None, admin, NOW)


def test_the_stored_status_reads_back_as_approved():
    decided = run(staged(TWO_OF_ANY), (ANN, "allow_always"), (DAN, "allow_always"))
    stored = approvals.stored_status(decided.approval)
    assert stored == "allow_always"
    assert approvals.read_status(stored, staged=True) == "approved"
    assert approvals.read_status(stored, staged=False) == "allow_always"
    assert approvals.read_status("expired", staged=True) == "expired"


def test_a_sticky_grant_does_not_satisfy_a_non_sticky_request():
    grant = records.Grant(id="grt_0", agent_id="a1", tool_name="deploy", grant_scope="tool",
                          args_fingerprint=None, args_summary=None, approval_id="apr_0",
                          created_at=1, expires_at=None, revoked_at=None, revoked_by=None)
    sticky = approvals.new_request("apr_1", "deploy", "a1", None, None, None, None, ASKER,
                                   approvals.new_stages(TWO_OF_ANY), True)
    assert approvals.open_request([grant], sticky, 1000, NOW).opened.grant == grant
    strict = sticky.model_copy(update={"sticky": False})
    assert approvals.open_request([grant], strict, 1000, NOW).opened.approval is not None


def test_anonymous_voters_are_told_apart_by_the_name_they_give():
    anonymous = principals.ANONYMOUS
    approval = staged(TWO_OF_ANY, requester=anonymous)
    first = approvals.vote(approval, "apr_1", approvals.Ballot("allow_once"), "ann", anonymous,
                           False, 0, NOW, "g").approval
    with pytest.raises(errors.Conflict):
        approvals.vote(first, "apr_1", approvals.Ballot("allow_once"), "ann", anonymous,
                       False, 0, NOW, "g")
    second = approvals.vote(first, "apr_1", approvals.Ballot("allow_once"), "bob", anonymous,
                            False, 0, NOW, "g").approval
    assert second.status == "approved"


def test_the_threshold_default_is_one_stage_one_gate():
    [stage] = approvals.threshold_stages(3)
    assert (len(stage.gates), stage.gates[0].count, stage.gates[0].group) == (1, 3, None)
