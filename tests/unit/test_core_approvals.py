"""The approval deciders as tables: open, decide once, expire, revoke (no I/O)."""

from __future__ import annotations

import pytest

from clawguard.core import approvals, errors, principals, records

NOW = 1_800_000_000_000
LEADER = principals.Principal(key_id="key_l", name="lead", role="leader")
ASKER = principals.Principal(key_id="key_e", name="exec", role="executor")


def new(agent="a1", tool="shell"):
    return records.NewApproval(id="apr_1", tool_name=tool, agent_id=agent, args_summary=None,
                               reason=None, task_id=None, tenant_id=None,
                               requested_by_key="key_e")


def pending(expires_at=NOW + 1000, status="pending"):
    return approvals.open_request(None, new(), 1000, expires_at - 1000).opened.approval.model_copy(
        update={"status": status})


def grant(**fields):
    return records.Grant(**({"id": "grt_1", "agent_id": "a1", "tool_name": "shell",
                             "approval_id": "apr_0", "created_at": 1, "expires_at": None,
                             "revoked_at": None, "revoked_by": None} | fields))


def test_open_without_a_grant_makes_a_pending_row_expiring_after_its_ttl():
    opening = approvals.open_request(None, new(), 5000, NOW)
    assert opening.opened.grant is None
    assert opening.opened.approval.status == "pending"
    assert opening.opened.approval.expires_at == NOW + 5000
    assert opening.event.action == "approval.requested"


def test_open_with_a_live_grant_short_circuits():
    opening = approvals.open_request(grant(), new(), 5000, NOW)
    assert opening.opened.approval is None and opening.opened.grant.id == "grt_1"
    assert opening.event.action == "approval.sticky_allowed"


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
