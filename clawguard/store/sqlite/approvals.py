"""Approvals, sticky grants and the approval history, inside a write transaction."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable
from typing import Any

from clawguard.core import audit, errors, principals, records
from clawguard.store.sqlite import audit_log

APPROVAL_COLUMNS = (
    "id, tool_name, agent_id, args_summary, reason, status, task_id, tenant_id, created_at,"
    " expires_at, resolved_at, resolved_by"
)
GRANT_COLUMNS = (
    "id, agent_id, tool_name, approval_id, created_at, expires_at, revoked_at, revoked_by"
)
HISTORY_COLUMNS = "id, agent_id, action, tool_name, details, created_at"
_HISTORY_ACTION: dict[str, records.HistoryAction] = {
    "allow_once": "allow-once", "allow_always": "allow-always", "deny": "deny",
}


def approval_from_row(row: Iterable[Any]) -> records.Approval:
    (aid, tool, agent, args, reason, status, task, tenant, created, expires, resolved_at,
     resolved_by) = row
    return records.Approval(
        id=aid, tool_name=tool, agent_id=agent, args_summary=args, reason=reason, status=status,
        task_id=task, tenant_id=tenant, created_at=created, expires_at=expires,
        resolved_at=resolved_at, resolved_by=resolved_by,
    )


def grant_from_row(row: Iterable[Any]) -> records.Grant:
    gid, agent, tool, approval_id, created, expires, revoked_at, revoked_by = row
    return records.Grant(
        id=gid, agent_id=agent, tool_name=tool, approval_id=approval_id, created_at=created,
        expires_at=expires, revoked_at=revoked_at, revoked_by=revoked_by,
    )


def history_from_row(row: Iterable[Any]) -> records.HistoryRecord:
    hid, agent, action, tool, details, created = row
    return records.HistoryRecord(
        id=hid, agent_id=agent, action=action, tool_name=tool, details=details,
        created_at=created,
    )


def _live_grant(
    conn: sqlite3.Connection, now: int, agent_id: str, tool_name: str
) -> records.Grant | None:
    row = conn.execute(
        f"SELECT {GRANT_COLUMNS} FROM approval_grants WHERE agent_id = ? AND tool_name = ?"
        " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
        (agent_id, tool_name, now),
    ).fetchone()
    return None if row is None else grant_from_row(row)


def open_approval(
    conn: sqlite3.Connection, now: int, new: records.NewApproval, ttl_ms: int
) -> records.Opened:
    grant = _live_grant(conn, now, new.agent_id, new.tool_name)
    if grant is not None:
        audit_log.append(
            conn, now, "approval", "approval.sticky_allowed", new.agent_id,
            {"grantId": grant.id, "toolName": new.tool_name, "grantedBy": grant.approval_id,
             "taskId": new.task_id, "tenantId": new.tenant_id},
        )
        return records.Opened(grant=grant, approval=None)
    approval = records.Approval(
        **new.model_dump(), status="pending", created_at=now, expires_at=now + ttl_ms,
        resolved_at=None, resolved_by=None,
    )
    conn.execute(
        f"INSERT INTO approvals ({APPROVAL_COLUMNS}, requested_by_key)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (approval.id, approval.tool_name, approval.agent_id, approval.args_summary,
         approval.reason, approval.status, approval.task_id, approval.tenant_id, now,
         approval.expires_at, None, None, new.requested_by_key),
    )
    audit_log.append(
        conn, now, "approval", "approval.requested", new.agent_id,
        {"approvalId": approval.id, "toolName": approval.tool_name,
         "argsSummary": approval.args_summary, "reason": approval.reason,
         "taskId": approval.task_id, "tenantId": approval.tenant_id,
         "expiresAt": approval.expires_at},
    )
    return records.Opened(grant=None, approval=approval)


def resolve_approval(
    conn: sqlite3.Connection, now: int, approval_id: str, decision: records.Decision,
    resolved_by: str | None, sticky_ttl_ms: int, decider: principals.Principal,
) -> records.Approval:
    asked = conn.execute(
        "SELECT agent_id, requested_by_key FROM approvals WHERE id = ?", (approval_id,)
    ).fetchone()
    if asked is None:
        raise errors.NotFound(f"no approval {approval_id}")
    refusal = decider.refusal_to_decide(*asked)
    if refusal is not None:
        raise errors.Forbidden(refusal, {"approvalId": approval_id})
    # The one conditional update that makes a decision: only a pending, unexpired row.
    changed = conn.execute(
        "UPDATE approvals SET status = ?, resolved_at = ?, resolved_by = ?, resolved_by_key = ?,"
        " resolved_by_role = ? WHERE id = ? AND status = 'pending' AND expires_at > ?",
        (decision, now, resolved_by, decider.key_id, decider.role, approval_id, now),
    ).rowcount
    row = conn.execute(
        f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)
    ).fetchone()
    approval = approval_from_row(row)
    if changed == 0:
        status = approval.as_of(now).status
        raise errors.Conflict(
            f"approval {approval_id} is already {status}",
            {"approvalId": approval_id, "status": status},
        )
    grant = None
    if decision == "allow_always":
        grant = _create_grant(conn, now, approval, sticky_ttl_ms)
    _insert_history(
        conn, now, approval.agent_id, _HISTORY_ACTION[decision], approval.tool_name,
        audit.canonical({"approvalId": approval_id, "resolvedBy": resolved_by}),
    )
    audit_log.append(
        conn, now, "approval", "approval.resolved", approval.agent_id,
        {"approvalId": approval_id, "toolName": approval.tool_name, "decision": decision,
         "resolvedBy": resolved_by, "resolvedByKey": decider.key_id,
         "resolvedByRole": decider.role, "taskId": approval.task_id,
         "grantId": None if grant is None else grant.id,
         "grantExpiresAt": None if grant is None else grant.expires_at},
    )
    return approval


def _create_grant(
    conn: sqlite3.Connection, now: int, approval: records.Approval, sticky_ttl_ms: int
) -> records.Grant:
    grant = records.Grant(
        id="grt_" + secrets.token_hex(8), agent_id=approval.agent_id,
        tool_name=approval.tool_name, approval_id=approval.id, created_at=now,
        expires_at=now + sticky_ttl_ms if sticky_ttl_ms > 0 else None, revoked_at=None,
        revoked_by=None,
    )
    # One unrevoked grant per pair: a new one (e.g. after the old expired) supersedes it.
    conn.execute(
        "UPDATE approval_grants SET revoked_at = ?, revoked_by = ? WHERE agent_id = ?"
        " AND tool_name = ? AND revoked_at IS NULL",
        (now, "superseded:" + grant.id, grant.agent_id, grant.tool_name),
    )
    conn.execute(
        f"INSERT INTO approval_grants ({GRANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
        (grant.id, grant.agent_id, grant.tool_name, grant.approval_id, now, grant.expires_at),
    )
    return grant


def expire_approvals(conn: sqlite3.Connection, now: int, limit: int) -> list[records.Approval]:
    rows = conn.execute(
        f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending'"
        " AND expires_at <= ? ORDER BY expires_at LIMIT ?",
        (now, limit),
    ).fetchall()
    expired = []
    for row in rows:
        approval = approval_from_row(row).as_of(now)
        conn.execute(
            "UPDATE approvals SET status = 'expired', resolved_at = expires_at"
            " WHERE id = ? AND status = 'pending'",
            (approval.id,),
        )
        audit_log.append(
            conn, now, "approval", "approval.expired", approval.agent_id,
            {"approvalId": approval.id, "toolName": approval.tool_name,
             "expiresAt": approval.expires_at, "taskId": approval.task_id},
        )
        expired.append(approval)
    return expired


def revoke_grant(
    conn: sqlite3.Connection, now: int, grant_id: str, revoked_by: str | None,
    revoker: principals.Principal,
) -> records.Grant:
    row = conn.execute(
        f"SELECT {GRANT_COLUMNS} FROM approval_grants WHERE id = ?", (grant_id,)
    ).fetchone()
    if row is None:
        raise errors.NotFound(f"no grant {grant_id}")
    grant = grant_from_row(row)
    if not revoker.may_decide_for(grant.agent_id):
        raise errors.Forbidden(f"key {revoker.name} may revoke only grants of agents it leads")
    if grant.revoked_at is not None:
        raise errors.Conflict(
            f"grant {grant_id} is already revoked",
            {"grantId": grant_id, "revokedAt": grant.revoked_at},
        )
    conn.execute(
        "UPDATE approval_grants SET revoked_at = ?, revoked_by = ? WHERE id = ?",
        (now, revoked_by, grant_id),
    )
    audit_log.append(
        conn, now, "approval", "approval.grant_revoked", grant.agent_id,
        {"grantId": grant_id, "toolName": grant.tool_name, "revokedBy": revoked_by,
         "revokedByKey": revoker.key_id, "grantedBy": grant.approval_id},
    )
    return grant.model_copy(update={"revoked_at": now, "revoked_by": revoked_by})


def _insert_history(
    conn: sqlite3.Connection, now: int, agent_id: str, action: records.HistoryAction,
    tool_name: str, details: str | None,
) -> records.HistoryRecord:
    history_id = conn.execute(
        "INSERT INTO approval_history (agent_id, action, tool_name, details, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (agent_id, action, tool_name, details, now),
    ).lastrowid
    assert history_id is not None
    return records.HistoryRecord(
        id=history_id, agent_id=agent_id, action=action, tool_name=tool_name, details=details,
        created_at=now,
    )


def append_history(
    conn: sqlite3.Connection, now: int, agent_id: str, action: records.HistoryAction,
    tool_name: str, details: str | None,
) -> records.HistoryRecord:
    record = _insert_history(conn, now, agent_id, action, tool_name, details)
    audit_log.append(
        conn, now, "approval", "approval.history_recorded", agent_id,
        {"historyId": record.id, "action": action, "toolName": tool_name},
    )
    return record

