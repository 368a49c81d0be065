"""The approval deciders as tables: open, decide once, expire, revoke (no I/O)."""

from __future__ import annotations

import pytest

from clawguard.core import approvals, errors, principals, records

NOW = 1_800_000_000_000
LEADER = principals.Principal(key_id="key_l", name="lead", role="leader")
ASKER = principals.Principal(key_id="key_e", name="exec", role="executor")


RM_BUILD = {"cmd": "rm", "args": ["-rf", "build"]}


def new(agent="a1", tool="shell", args=None):
    return records.NewApproval(id="apr_1", tool_name=tool, agent_id=agent, args_summary=None,
                               reason=None, task_id=None, tenant_id=None,
                               args_fingerprint=approvals.args_fingerprint(args),
                               requested_by_key="key_e")


def pending(expires_at=NOW + 1000, status="pending"):
    return approvals.open_request([], new(), 1000, expires_at - 1000).opened.approval.model_copy(
        update={"status": status})


def grant(**fields):
    return records.Grant(**({"id": "grt_1", "agent_id": "a1", "tool_name": "shell",
                             "grant_scope": "tool", "args_fingerprint": None,
                             "args_summary": None, "approval_id": "apr_0", "created_at": 1,
                             "expires_at": None, "revoked_at": None, "revoked_by": None}
                            | fields))


def test_open_without_a_grant_makes_a_pending_row_expiring_after_its_ttl():
    opening = approvals.open_request([], new(), 5000, NOW)
    assert opening.opened.grant is None
    assert opening.opened.approval.status == "pending"
    assert opening.opened.approval.expires_at == NOW + 5000
    assert opening.event.action == "approval.requested"


def test_open_with_a_live_grant_short_circuits():
    opening = approvals.open_request([grant()], new(), 5000, NOW)
    assert opening.opened.approval is None and opening.opened.grant.id == "grt_1"
    assert opening.event.action == "approval.sticky_allowed"


def test_the_fingerprint_ignores_key_order_and_number_spelling_but_not_values():
    from decimal import Decimal

    same = approvals.args_fingerprint({"args": ["-rf", "build"], "cmd": "rm"})
    assert approvals.args_fingerprint(RM_BUILD) == same
    assert approvals.args_fingerprint({"n": Decimal("2.0"), "m": 1}) == (
        approvals.args_fingerprint({"m": 1, "n": 2}))
    assert approvals.args_fingerprint({"cmd": "rm", "args": ["-rf", "/"]}) != same
    assert approvals.args_fingerprint({"cmd": "rm", "args": ["build", "-rf"]}) != same
    # Masked before hashing: a secret's value is never in the fingerprint's input.
    assert approvals.args_fingerprint({"apiToken": "a"}) == (
        approvals.args_fingerprint({"apiToken": "b"}))


@pytest.mark.parametrize(
    ("grants", "args", "matched"),
    [
        ([], RM_BUILD, None),
        ([grant()], {"cmd": "rm", "args": ["-rf", "/"]}, "grt_1"),  # tool: any arguments
        ([grant(grant_scope="args", args_fingerprint=approvals.args_fingerprint(RM_BUILD))],
         {"cmd": "rm", "args": ["-rf", "/"]}, None),  # args: only the same arguments
        ([grant(grant_scope="args", args_fingerprint=approvals.args_fingerprint(RM_BUILD))],
         {"args": ["-rf", "build"], "cmd": "rm"}, "grt_1"),
        ([grant(id="grt_t"), grant(id="grt_a", grant_scope="args",
                                   args_fingerprint=approvals.args_fingerprint(RM_BUILD))],
         RM_BUILD, "grt_a"),  # the exact grant is the one named
    ],
)
def test_which_grant_lets_a_request_through(grants, args, matched):
    opening = approvals.open_request(grants, new(args=args), 5000, NOW)
    assert (None if opening.opened.grant is None else opening.opened.grant.id) == matched
    if matched is not None:
        assert opening.event.details["argsFingerprint"] == approvals.args_fingerprint(args)


def test_an_args_grant_carries_the_requests_fingerprint():
    row = approvals.open_request([], new(args=RM_BUILD), 1000, NOW).opened.approval
    decided = approvals.decide(row, None, "apr_1", "allow_always", None, LEADER, 0, NOW, "g",
                               "args")
    assert (decided.grant.grant_scope, decided.grant.args_fingerprint) == (
        "args", approvals.args_fingerprint(RM_BUILD))
    tool = approvals.decide(row, None, "apr_1", "allow_always", None, LEADER, 0, NOW, "g")
    assert (tool.grant.grant_scope, tool.grant.args_fingerprint) == ("tool", None)
    with pytest.raises(errors.Conflict):  # a row from before fingerprints: args cannot apply
        approvals.decide(row.model_copy(update={"args_fingerprint": None}), None, "apr_1",
                         "allow_always", None, LEADER, 0, NOW, "g", "args")


@pytest.mark.parametrize(
    ("decision", "history", "makes_grant"),
    [("allow_once", "allow-once", False), ("allow_always", "allow-always", True),
     ("deny", "deny", False)],
)
def test_decide(decision, history, makes_grant):
    decided = approvals.decide(pending(), "key_e", "apr_1", decision, "lead", LEADER, 0, NOW,
                               "grt_new")
    assert decided.approval.status == decision and decided.approval.resolved_at == NOW
    assert decided.history_action == history
    assert (decided.grant is not None) is makes_grant
    assert decided.event.details["decision"] == decision


def test_a_sticky_grant_expires_after_the_sticky_ttl():
    decided = approvals.decide(pending(), None, "apr_1", "allow_always", None, LEADER, 60_000,
                               NOW, "grt_new")
    assert decided.grant.expires_at == NOW + 60_000


@pytest.mark.parametrize(
    ("row", "asked_by", "decider", "error"),
    [
        (None, None, LEADER, errors.NotFound),
        (pending(status="deny"), None, LEADER, errors.Conflict),  # decided once
        (pending(expires_at=NOW), None, LEADER, errors.Conflict),  # past expiry: too late
        (pending(), "key_l", LEADER, errors.Forbidden),  # its own request
        (pending(), None, principals.Principal("key_x", "x", "leader", frozenset({"b"})),
         errors.Forbidden),  # outside --leads
    ],
)
def test_decide_refuses(row, asked_by, decider, error):
    with pytest.raises(error):
        approvals.decide(row, asked_by, "apr_1", "allow_always", None, decider, 0, NOW, "g")


def test_expire_writes_only_rows_past_their_time_as_their_expiry():
    due = [pending(expires_at=NOW - 5), pending(expires_at=NOW + 5)]
    [(approval, event)] = approvals.expire(due, NOW)
    assert approval.status == "expired" and approval.resolved_at == NOW - 5
    assert event.action == "approval.expired"


@pytest.mark.parametrize(
    ("row", "revoker", "error"),
    [
        (None, LEADER, errors.NotFound),
        (grant(revoked_at=5), LEADER, errors.Conflict),
        (grant(), principals.Principal("key_x", "x", "leader", frozenset({"b"})),
         errors.Forbidden),
    ],
)
def test_revoke_refuses(row, revoker, error):
    with pytest.raises(error):
        approvals.revoke(row, "grt_1", "me", revoker, NOW)


def test_revoke():
    revoked, event = approvals.revoke(grant(), "grt_1", "me", LEADER, NOW)
    assert (revoked.revoked_at, revoked.revoked_by) == (NOW, "me")
    assert event.action == "approval.grant_revoked"
