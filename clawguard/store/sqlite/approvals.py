"""Approvals, sticky grants and the approval history, inside a write transaction.

Load, decide with clawguard.core.approvals, apply: no rule lives here.
"""

from __future__ import annotations

import secrets
import sqlite3

from clawguard.core import approvals, principals, records
from clawguard.store import tables
from clawguard.store.sqlite import audit_log
from clawguard.store.sqlite import authorize as receipts


def _live_grants(
    conn: sqlite3.Connection, now: int, agent_id: str, tool_name: str
) -> list[records.Grant]:
    rows = conn.execute(
        f"SELECT {tables.GRANT_COLUMNS} FROM approval_grants WHERE agent_id = ? AND tool_name = ?"
        " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
        (agent_id, tool_name, now),
    ).fetchall()
    return [tables.grant_from_row(row) for row in rows]


def open_approval(
    conn: sqlite3.Connection, now: int, new: records.NewApproval, ttl_ms: int
) -> records.Opened:
    opening = approvals.open_request(
        _live_grants(conn, now, new.agent_id, new.tool_name), new, ttl_ms, now
    )
    approval = opening.opened.approval
    if approval is not None:
        conn.execute(
            f"INSERT INTO approvals ({tables.APPROVAL_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (approval.id, approval.tool_name, approval.agent_id, approval.args_summary,
             approval.reason, approval.status, approval.task_id, approval.tenant_id, now,
             approval.expires_at, None, None, approval.args_fingerprint,
             None if new.stages is None else tables.stages_json(new.stages), new.sticky,
             None, new.requested_by_key),
        )
    audit_log.append(conn, now, opening.event)
    return opening.opened


def _load(conn: sqlite3.Connection, approval_id: str) -> records.Approval | None:
    row = conn.execute(
        f"SELECT {tables.APPROVAL_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)
    ).fetchone()
    return None if row is None else tables.approval_from_row(row)


def decide(conn: sqlite3.Connection, now: int, request: approvals.DecisionRequest
           ) -> records.Approval:
    """A decision, a vote or a waiver (core.approvals.rule_on). The single writer runs one at
    a time: each reads the votes before it."""
    approval = _load(conn, request.approval_id)
    setting = approvals.reads_setting(request, approval) and (
        receipts.load_settings(conn).allow_self_approval)
    return _apply(conn, now, approvals.rule_on(request, approval, setting, now,
                                               "grt_" + secrets.token_hex(8)))


def _apply(conn: sqlite3.Connection, now: int, decided: approvals.Decided) -> records.Approval:
    resolver = decided.resolver if decided.final else None
    # The one conditional update that decides or votes: only a pending, unexpired row.
    conn.execute(
        "UPDATE approvals SET status = ?, resolved_at = ?, resolved_by = ?, stages = ?,"
        " waiver = ?, resolved_by_key = ?, resolved_by_role = ?"
        " WHERE id = ? AND status = 'pending' AND expires_at > ?",
        (*tables.approval_values(decided.approval),
         None if resolver is None else resolver.key_id,
         None if resolver is None else resolver.role, decided.approval.id, now),
    )
    if decided.grant is not None:
        _insert_grant(conn, now, decided.grant)
    if decided.history_action is not None:
        _insert_history(conn, now, decided.approval.agent_id, decided.history_action,
                        decided.approval.tool_name, decided.history_details)
    audit_log.append(conn, now, decided.event)
    return decided.approval


def _insert_grant(conn: sqlite3.Connection, now: int, grant: records.Grant) -> None:
    # One unrevoked grant per (pair, scope, arguments): a new one (e.g. after the old
    # expired) supersedes it.
    conn.execute(
        "UPDATE approval_grants SET revoked_at = ?, revoked_by = ? WHERE agent_id = ?"
        " AND tool_name = ? AND grant_scope = ? AND coalesce(args_fingerprint, '') = ?"
        " AND revoked_at IS NULL",
        (now, "superseded:" + grant.id, grant.agent_id, grant.tool_name, grant.grant_scope,
         grant.args_fingerprint or ""),
    )
    conn.execute(
        f"INSERT INTO approval_grants ({tables.GRANT_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
        (grant.id, grant.agent_id, grant.tool_name, grant.grant_scope, grant.args_fingerprint,
         grant.args_summary, grant.approval_id, now, grant.expires_at),
    )


def expire_approvals(conn: sqlite3.Connection, now: int, limit: int) -> list[records.Approval]:
    rows = conn.execute(
        f"SELECT {tables.APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending'"
        " AND expires_at <= ? ORDER BY expires_at LIMIT ?",
        (now, limit),
    ).fetchall()
    expired = approvals.expire([tables.approval_from_row(row) for row in rows], now)
    for approval, event in expired:
        conn.execute(
            "UPDATE approvals SET status = 'expired', resolved_at = expires_at"
            " WHERE id = ? AND status = 'pending'",
            (approval.id,),
        )
        audit_log.append(conn, now, event)
    return [approval for approval, _ in expired]


def revoke_grant(
    conn: sqlite3.Connection, now: int, grant_id: str, revoked_by: str | None,
    revoker: principals.Principal,
) -> records.Grant:
    row = conn.execute(
        f"SELECT {tables.GRANT_COLUMNS} FROM approval_grants WHERE id = ?", (grant_id,)
    ).fetchone()
    grant, event = approvals.revoke(
        None if row is None else tables.grant_from_row(row), grant_id, revoked_by, revoker, now
    )
    conn.execute(
        "UPDATE approval_grants SET revoked_at = ?, revoked_by = ? WHERE id = ?",
        (now, revoked_by, grant_id),
    )
    audit_log.append(conn, now, event)
    return grant


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
    audit_log.append(conn, now, approvals.history_recorded(record))
    return record
