"""Runs, their breaker counters and tenant quota overrides on PostgreSQL, in a transaction.

Load, decide with clawguard.core.runs, apply: no rule lives here. Several
daemons start runs at once, so a start takes its locks in one fixed order
before it counts anything: its tenant's `tenant_quotas` row (made on first
use), then for a root run an advisory lock on its agent, then for a child its
parent row, and the audit head last. The counts it decides on are then the
counts it commits against: two instances never both take a tenant's last slot
or a parent's last child. Ending a run and posting events lock the run's row.
"""

from __future__ import annotations

import json
import secrets

from clawguard.core import commands, records, runs
from clawguard.store import tables
from clawguard.store.postgres import audit_log, connection


def new_run_id() -> str:
    return "run_" + secrets.token_hex(8)


async def _find(
    conn: connection.Connection, run_id: str
) -> tuple[records.Run, str | None] | None:
    cursor = await conn.execute(
        f"SELECT {tables.RUN_COLUMNS}, breaker FROM runs WHERE id = %s FOR UPDATE", (run_id,)
    )
    row = await cursor.fetchone()
    return None if row is None else (tables.run_from_row(row[:8]), row[8])


async def _lock_tenant(conn: connection.Connection, now: int, tenant_id: str) -> dict[str, int]:
    await conn.execute(
        "INSERT INTO tenant_quotas (tenant_id, overrides, updated_at) VALUES (%s, '{}', %s)"
        " ON CONFLICT (tenant_id) DO NOTHING", (tenant_id, now),
    )
    cursor = await conn.execute(
        "SELECT overrides FROM tenant_quotas WHERE tenant_id = %s FOR UPDATE", (tenant_id,)
    )
    row = await cursor.fetchone()
    assert row is not None
    return tables.decode_overrides(row[0])


async def start_run(
    conn: connection.Connection, now: int, request: commands.RunStart, plan: dict[str, int],
    rules: runs.Rules,
) -> runs.Started | runs.Refused:
    if request.idempotency_key is not None:
        cursor = await conn.execute(
            f"SELECT {tables.RUN_COLUMNS}, fingerprint FROM runs WHERE idempotency_key = %s",
            (request.idempotency_key,),
        )
        seen = await cursor.fetchone()
        if seen is not None:
            return runs.replay(tables.run_from_row(seen[:8]), seen[8], request)
    tenant = runs.tenant_of(request)
    limits = runs.effective(plan, await _lock_tenant(conn, now, tenant))
    parent = None
    root: tuple[int, int | None] = (0, None)
    if request.parent_run_id is not None:
        found = await _find(conn, request.parent_run_id)
        if found is not None:
            cursor = await conn.execute("SELECT count(*) FROM runs WHERE parent_run_id = %s",
                                        (request.parent_run_id,))
            counted = await cursor.fetchone()
            assert counted is not None
            parent = runs.Parent(found[0], counted[0])
    else:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                           ("clawguard.root-runs:" + request.agent_id,))
        cursor = await conn.execute(
            "SELECT count(*), min(started_at) FROM runs WHERE agent_id = %s"
            " AND parent_run_id IS NULL AND started_at > %s",
            (request.agent_id, runs.root_since(now, rules)),
        )
        found_root = await cursor.fetchone()
        assert found_root is not None
        root = (found_root[0], found_root[1])
    cursor = await conn.execute(
        "SELECT (SELECT count(*) FROM runs WHERE tenant_id = %(t)s AND status = 'running'"
        "         AND lease_expires_at > %(now)s),"
        " (SELECT min(lease_expires_at) FROM runs WHERE tenant_id = %(t)s"
        "         AND status = 'running' AND lease_expires_at > %(now)s),"
        " (SELECT count(*) FROM runs WHERE tenant_id = %(t)s AND started_at > %(hour)s),"
        " (SELECT min(started_at) FROM runs WHERE tenant_id = %(t)s AND started_at > %(hour)s)",
        {"t": tenant, "now": now, "hour": runs.hour_since(now)},
    )
    counts = await cursor.fetchone()
    assert counts is not None
    load = runs.TenantLoad(counts[0], counts[1], counts[2], counts[3])
    result = runs.start(request, parent, root, load, limits, rules, now, new_run_id())
    if isinstance(result, runs.Refused):
        await audit_log.append(conn, now, result.events)
        return result
    run = result.run
    await conn.execute(
        "INSERT INTO runs (id, agent_id, mission_id, team_id, tenant_id, parent_run_id, depth,"
        " status, started_at, lease_expires_at, ended_at, idempotency_key, fingerprint)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (run.id, run.agent_id, request.mission_id, request.team_id, tenant, run.parent_run_id,
         run.depth, run.status, run.started_at, run.lease_expires_at, run.ended_at,
         request.idempotency_key, runs.fingerprint(request)),
    )
    return result


async def end_run(conn: connection.Connection, now: int, run_id: str) -> records.Run:
    found = await _find(conn, run_id)
    ended = runs.end(None if found is None else found[0], run_id, now)
    if ended is None:
        assert found is not None
        return found[0]
    await conn.execute(
        "UPDATE runs SET status = %s, ended_at = %s WHERE id = %s AND status = 'running'",
        (ended.status, ended.ended_at, run_id),
    )
    return ended


async def run_events(
    conn: connection.Connection, now: int, run_id: str, events: list[commands.RunEvent],
    rules: runs.Rules,
) -> runs.Applied:
    found = await _find(conn, run_id)
    state = runs.BreakerState.from_json(None if found is None else found[1])
    applied = runs.apply_events(None if found is None else found[0], run_id, state, events,
                                rules, now)
    run = applied.run
    await conn.execute(
        "UPDATE runs SET status = %s, lease_expires_at = %s, ended_at = %s, breaker = %s"
        " WHERE id = %s AND status = 'running'",
        (run.status, run.lease_expires_at, run.ended_at, applied.state.to_json(), run_id),
    )
    await audit_log.append(conn, now, applied.events)
    return applied


async def set_overrides(
    conn: connection.Connection, now: int, tenant_id: str, patch: dict[str, int | None]
) -> dict[str, int]:
    current = await _lock_tenant(conn, now, tenant_id)
    updated, event = runs.apply_patch(tenant_id, current, patch)
    await conn.execute(
        "UPDATE tenant_quotas SET overrides = %s, updated_at = %s WHERE tenant_id = %s",
        (json.dumps(updated), now, tenant_id),
    )
    await audit_log.append(conn, now, [event])
    return updated


async def expire_runs(conn: connection.Connection, now: int, limit: int) -> int:
    """Write `expired` on up to `limit` running runs past their lease (see the SQLite twin);
    rows another transaction holds are left to the next sweep."""
    cursor = await conn.execute(
        "UPDATE runs SET status = 'expired', ended_at = lease_expires_at WHERE id IN"
        " (SELECT id FROM runs WHERE status = 'running' AND lease_expires_at <= %s"
        " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)",
        (now, limit),
    )
    return cursor.rowcount
