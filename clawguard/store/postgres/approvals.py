"""Approvals, sticky grants and the approval history on PostgreSQL, inside a transaction.

Load, decide with clawguard.core.approvals, apply: no rule lives here.
Decisions come in batches (`decide_all`): their rows are locked (FOR UPDATE,
in id order, so two instances' batches never deadlock) before the core rules,
and written with one conditional UPDATE on pending rows, so each happens once
whichever instance gets it. The sweep takes due rows FOR UPDATE SKIP LOCKED,
so each expiry is written once even with every instance sweeping. Both
NOTIFY, so waiters parked on the other instances wake. Locks are taken in one
order: the approval rows, then grants, then the audit head.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from clawguard.core import approvals, errors, principals, records
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


async def decide_all(
    conn: connection.Connection, now: int, requests: Sequence[approvals.DecisionRequest],
    instance: str,
) -> list[records.Approval | errors.ClawguardError]:
    """Decisions, votes and waivers, many in one transaction (store.py queues them) with a
    statement per step, not per request: every row they touch locked and read at once, a
    ruling on each request in turn (a second vote on one row sees the first), then the rows
    written together. Each request's answer is its approval or its domain error."""
    ids = sorted({request.approval_id for request in requests})  # one lock order for all
    cursor = await conn.execute(
        f"SELECT {tables.APPROVAL_COLUMNS} FROM approvals WHERE id = ANY(%s) ORDER BY id"
        " FOR UPDATE", (ids,))
    rows = {approval.id: approval
            for approval in map(tables.approval_from_row, await cursor.fetchall())}
    allow_self = any(approvals.reads_setting(request, rows.get(request.approval_id))
                     for request in requests) and (
        await receipts.load_settings(conn)).allow_self_approval
    answers: list[records.Approval | errors.ClawguardError] = []
    written: dict[str, approvals.Decided] = {}  # each row's last state
    decisions: list[approvals.Decided] = []
    for request in requests:
        try:
            decided = approvals.rule_on(request, rows.get(request.approval_id), allow_self,
                                        now, "grt_" + secrets.token_hex(8))
        except errors.ClawguardError as exc:
            answers.append(exc)
            continue
        rows[decided.approval.id] = decided.approval
        written[decided.approval.id] = decided
        decisions.append(decided)
        answers.append(decided.approval)
    if written:
        await _write(conn, now, list(written.values()), decisions, instance)
    return answers


async def _write(conn: connection.Connection, now: int, last: list[approvals.Decided],
                 decisions: list[approvals.Decided], instance: str) -> None:
    """Each row's last state with one conditional UPDATE (a decision's NOTIFY riding on it),
    the grants, the history lines and the audit rows in ruling order."""
    values: list[tuple[Any, ...]] = []
    for decided in last:
        resolver = decided.resolver if decided.final else None
        values.append((
            decided.approval.id, *tables.approval_values(decided.approval),
            None if resolver is None else resolver.key_id,
            None if resolver is None else resolver.role,
            listener.decided(instance, decided.approval) if decided.final else None,
        ))
    columns = [list(column) for column in zip(*values, strict=True)]
    # Only pending, unexpired rows: the locks above make a miss unreachable; the guard stays.
    updated = await conn.execute(
        "UPDATE approvals AS a SET status = u.status, resolved_at = u.resolved_at,"
        " resolved_by = u.resolved_by, stages = u.stages, waiver = u.waiver,"
        " resolved_by_key = u.by_key, resolved_by_role = u.by_role"
        " FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], %b::text[],"
        " %b::text[], %b::text[], %b::text[], %b::text[]) AS u(id, status, resolved_at,"
        " resolved_by, stages, waiver, by_key, by_role, notice)"
        " WHERE a.id = u.id AND a.status = 'pending' AND a.expires_at > %s"
        " RETURNING a.id, CASE WHEN u.notice IS NOT NULL THEN pg_notify(%s, u.notice) END",
        (*columns, now, listener.CHANNEL),
    )
    for decided in decisions:
        if decided.grant is not None:
            await _insert_grant(conn, now, decided.grant)
    history = [decided for decided in decisions if decided.history_action is not None]
    if history:
        await conn.execute(
            "INSERT INTO approval_history (agent_id, action, tool_name, details, created_at)"
            " SELECT agent_id, action, tool_name, details, %s"
            " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[])"
            " WITH ORDINALITY AS h(agent_id, action, tool_name, details, n) ORDER BY n",
            (now, [d.approval.agent_id for d in history], [d.history_action for d in history],
             [d.approval.tool_name for d in history], [d.history_details for d in history]),
        )
    await audit_log.append(conn, now, [decided.event for decided in decisions])
    if len(await updated.fetchall()) != len(last):
        raise connection.Retry("an approval changed under its lock")


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
