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
from clawguard.store.postgres import authorize as receipts


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
            f"INSERT INTO approvals ({tables.APPROVAL_COLUMNS}) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, NULL, %s, %s, %s, NULL, %s)",
            (approval.id, approval.tool_name, approval.agent_id, approval.args_summary,
             approval.reason, approval.status, approval.task_id, approval.tenant_id, now,
             approval.expires_at, approval.args_fingerprint,
             None if new.stages is None else tables.stages_json(new.stages), new.sticky,
             new.requested_by_key),
        )
    await audit_log.append(conn, now, [opening.event])
    return opening.opened


async def _lock(conn: connection.Connection, approval_id: str) -> records.Approval | None:
    """The row, locked until the transaction ends: concurrent votes and decisions on one
    approval, on any instance, each read the votes committed before them."""
    cursor = await conn.execute(
        f"SELECT {tables.APPROVAL_COLUMNS} FROM approvals WHERE id = %s FOR UPDATE",
        (approval_id,),
    )
    row = await cursor.fetchone()
    return None if row is None else tables.approval_from_row(row)


async def resolve_approval(
    conn: connection.Connection, now: int, approval_id: str, decision: records.Decision,
    resolved_by: str | None, sticky_ttl_ms: int, decider: principals.Principal,
    grant_scope: records.GrantScope, instance: str,
) -> records.Approval:
    approval = await _lock(conn, approval_id)
    decided = approvals.decide(
        approval, None if approval is None else approval.requested_by_key,
        approval_id, decision, resolved_by, decider, sticky_ttl_ms, now,
        "grt_" + secrets.token_hex(8), grant_scope,
    )
    return await _apply(conn, now, decided, instance)


async def vote_approval(
    conn: connection.Connection, now: int, approval_id: str, ballot: approvals.Ballot,
    resolved_by: str | None, voter: principals.Principal, allow_self: bool | None,
    sticky_ttl_ms: int, grant_scope: records.GrantScope, instance: str,
) -> records.Approval:
    approval = await _lock(conn, approval_id)
    if allow_self is None:
        allow_self = approvals.needs_self_setting(approval, voter) and (
            await receipts.load_settings(conn)).allow_self_approval
    decided = approvals.vote(
        approval, approval_id, ballot, resolved_by, voter, allow_self,
        sticky_ttl_ms, now, "grt_" + secrets.token_hex(8), grant_scope,
    )
    return await _apply(conn, now, decided, instance)


async def waive_approval(
    conn: connection.Connection, now: int, approval_id: str, reason: str,
    resolved_by: str | None, admin: principals.Principal, instance: str,
) -> records.Approval:
    decided = approvals.waive(await _lock(conn, approval_id), approval_id, reason,
                              resolved_by, admin, now)
    return await _apply(conn, now, decided, instance)


async def _apply(
    conn: connection.Connection, now: int, decided: approvals.Decided, instance: str
) -> records.Approval:
    resolver = decided.resolver if decided.final else None
    # The one conditional update that decides or votes: only a pending, unexpired row. A
    # decision's NOTIFY rides on it (no round trip of its own); a vote that leaves it
    # pending wakes nobody.
    announce = ""
    params: tuple[object, ...] = ()
    if decided.final:
        announce = " RETURNING pg_notify(%s, %s)"
        params = (listener.CHANNEL, listener.decided(instance, decided.approval))
    cursor = await conn.execute(
        "UPDATE approvals SET status = %s, resolved_at = %s, resolved_by = %s, stages = %s,"
        " waiver = %s, resolved_by_key = %s, resolved_by_role = %s"
        " WHERE id = %s AND status = 'pending' AND expires_at > %s" + announce,
        (*tables.approval_values(decided.approval),
         None if resolver is None else resolver.key_id,
         None if resolver is None else resolver.role, decided.approval.id, now, *params),
    )
    if cursor.rowcount != 1:  # the lock above makes this unreachable; the guard stays
        raise approvals.already_decided(decided.approval.id, "decided")
    if decided.grant is not None:
        await _insert_grant(conn, now, decided.grant)
    if decided.history_action is not None:
        await conn.execute(
            "INSERT INTO approval_history (agent_id, action, tool_name, details, created_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (decided.approval.agent_id, decided.history_action, decided.approval.tool_name,
             decided.history_details, now),
        )
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
