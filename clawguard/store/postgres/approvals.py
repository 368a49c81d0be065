"""Approvals, sticky grants and the approval history on PostgreSQL, inside a transaction.

Load, decide with clawguard.core.approvals, apply: no rule lives here. A
decision locks its row (FOR UPDATE) before the core decides, and writes it
with a conditional UPDATE on a pending row, so it happens once whichever
instance gets it; the sweep takes due rows FOR UPDATE SKIP LOCKED, so each
expiry is written once even with every instance sweeping. Both NOTIFY, so
waiters parked on the other instances wake. Locks are taken in one order:
the approval row, then grants, then the audit head.
"""

from __future__ import annotations

import secrets

from clawguard.core import approvals, principals, records
from clawguard.store import tables
from clawguard.store.postgres import audit_log, connection, listener


async def open_approval(
    conn: connection.Connection, now: int, new: records.NewApproval, ttl_ms: int
) -> records.Opened:
    cursor = await conn.execute(
        f"SELECT {tables.GRANT_COLUMNS} FROM approval_grants WHERE agent_id = %s AND tool_name = %s"
        " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > %s)",
        (new.agent_id, new.tool_name, now),
    )
    grants = [tables.grant_from_row(row) for row in await cursor.fetchall()]
    opening = approvals.open_request(grants, new, ttl_ms, now)
    approval = opening.opened.approval
    if approval is not None:
        await conn.execute(
            f"INSERT INTO approvals ({tables.APPROVAL_COLUMNS}, requested_by_key)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, NULL, %s, %s)",
            (approval.id, approval.tool_name, approval.agent_id, approval.args_summary,
             approval.reason, approval.status, approval.task_id, approval.tenant_id, now,
             approval.expires_at, approval.args_fingerprint, new.requested_by_key),
        )
    await audit_log.append(conn, now, [opening.event])
    return opening.opened


async def resolve_approval(
    conn: connection.Connection, now: int, approval_id: str, decision: records.Decision,
    resolved_by: str | None, sticky_ttl_ms: int, decider: principals.Principal,
    grant_scope: records.GrantScope, instance: str,
) -> records.Approval:
    cursor = await conn.execute(
        f"SELECT {tables.APPROVAL_COLUMNS}, requested_by_key FROM approvals"
        " WHERE id = %s FOR UPDATE",
        (approval_id,),
    )
    row = await cursor.fetchone()
    decided = approvals.decide(
        None if row is None else tables.approval_from_row(row[:-1]),
        None if row is None else row[-1],
        approval_id, decision, resolved_by, decider, sticky_ttl_ms, now,
        "grt_" + secrets.token_hex(8), grant_scope,
    )
    # The one conditional update that makes a decision: only a pending, unexpired row.
    cursor = await conn.execute(
        "UPDATE approvals SET status = %s, resolved_at = %s, resolved_by = %s,"
        " resolved_by_key = %s, resolved_by_role = %s"
        " WHERE id = %s AND status = 'pending' AND expires_at > %s",
        (decision, now, resolved_by, decider.key_id, decider.role, approval_id, now),
    )
    if cursor.rowcount != 1:  # the lock above makes this unreachable; the guard stays
        raise approvals.already_decided(approval_id, "decided")
    if decided.grant is not None:
        await _insert_grant(conn, now, decided.grant)
    await conn.execute(
        "INSERT INTO approval_history (agent_id, action, tool_name, details, created_at)"
        " VALUES (%s, %s, %s, %s, %s)",
        (decided.approval.agent_id, decided.history_action, decided.approval.tool_name,
         decided.history_details, now),
    )
    await listener.notify(conn, listener.decided(instance, decided.approval))
    await audit_log.append(conn, now, [decided.event])
    return decided.approval


async def _insert_grant(conn: connection.Connection, now: int, grant: records.Grant) -> None:
    # One unrevoked grant per (pair, scope, arguments): a new one (e.g. after the old
    # expired) supersedes it. Two instances making the same grant at once: the partial
    # unique index stops the second, whose transaction runs again and supersedes the first's.
    await conn.execute(
        "UPDATE approval_grants SET revoked_at = %s, revoked_by = %s WHERE agent_id = %s"
        " AND tool_name = %s AND grant_scope = %s AND coalesce(args_fingerprint, '') = %s"
        " AND revoked_at IS NULL",
        (now, "superseded:" + grant.id, grant.agent_id, grant.tool_name, grant.grant_scope,
         grant.args_fingerprint or ""),
    )
    await conn.execute(
        f"INSERT INTO approval_grants ({tables.GRANT_COLUMNS})"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, NULL)",
        (grant.id, grant.agent_id, grant.tool_name, grant.grant_scope, grant.args_fingerprint,
         grant.args_summary, grant.approval_id, now, grant.expires_at),
    )


async def expire_approvals(
    conn: connection.Connection, now: int, limit: int, instance: str
) -> list[records.Approval]:
    # SKIP LOCKED: a row another instance is expiring or deciding right now is its to write.
    cursor = await conn.execute(
        f"SELECT {tables.APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending'"
        " AND expires_at <= %s ORDER BY expires_at, id LIMIT %s FOR UPDATE SKIP LOCKED",
        (now, limit),
    )
    expired = approvals.expire(
        [tables.approval_from_row(row) for row in await cursor.fetchall()], now
    )
    if not expired:
        return []
    ids = [approval.id for approval, _ in expired]
    await conn.execute(
        "UPDATE approvals SET status = 'expired', resolved_at = expires_at"
        " WHERE id = ANY(%s) AND status = 'pending'",
        (ids,),
    )
    for approval, _ in expired:
        await listener.notify(conn, listener.decided(instance, approval))
    await audit_log.append(conn, now, [event for _, event in expired])
    return [approval for approval, _ in expired]


async def revoke_grant(
    conn: connection.Connection, now: int, grant_id: str, revoked_by: str | None,
    revoker: principals.Principal,
) -> records.Grant:
    cursor = await conn.execute(
        f"SELECT {tables.GRANT_COLUMNS} FROM approval_grants WHERE id = %s FOR UPDATE", (grant_id,)
    )
    row = await cursor.fetchone()
    grant, event = approvals.revoke(
        None if row is None else tables.grant_from_row(row), grant_id, revoked_by, revoker, now
    )
    await conn.execute(
        "UPDATE approval_grants SET revoked_at = %s, revoked_by = %s WHERE id = %s",
        (now, revoked_by, grant_id),
    )
    await audit_log.append(conn, now, [event])
    return grant


async def append_history(
    conn: connection.Connection, now: int, agent_id: str, action: records.HistoryAction,
    tool_name: str, details: str | None,
) -> records.HistoryRecord:
    cursor = await conn.execute(
        "INSERT INTO approval_history (agent_id, action, tool_name, details, created_at)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (agent_id, action, tool_name, details, now),
    )
    row = await cursor.fetchone()
    assert row is not None
    record = records.HistoryRecord(
        id=row[0], agent_id=agent_id, action=action, tool_name=tool_name, details=details,
        created_at=now,
    )
    await audit_log.append(conn, now, [approvals.history_recorded(record)])
    return record
