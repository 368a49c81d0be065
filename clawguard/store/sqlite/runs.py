"""Runs, their breaker counters and tenant quota overrides, inside a write transaction.

Load, decide with clawguard.core.runs, apply: no rule lives here. The one
writer serialises every start, so the counts a start is decided on are the
counts it commits against.
"""

from __future__ import annotations

import json
import secrets
import sqlite3

from clawguard.core import commands, records, runs
from clawguard.store import tables
from clawguard.store.sqlite import audit_log


def new_run_id() -> str:
    return "run_" + secrets.token_hex(8)


def _find(conn: sqlite3.Connection, run_id: str) -> tuple[records.Run, str | None] | None:
    row = conn.execute(f"SELECT {tables.RUN_COLUMNS}, breaker FROM runs WHERE id = ?",
                       (run_id,)).fetchone()
    return None if row is None else (tables.run_from_row(row[:8]), row[8])


def overrides(conn: sqlite3.Connection, tenant_id: str) -> dict[str, int]:
    row = conn.execute("SELECT overrides FROM tenant_quotas WHERE tenant_id = ?",
                       (tenant_id,)).fetchone()
    return tables.decode_overrides(None if row is None else row[0])


def start_run(
    conn: sqlite3.Connection, now: int, request: commands.RunStart, plan: dict[str, int],
    rules: runs.Rules,
) -> runs.Started | runs.Refused:
    if request.idempotency_key is not None:
        seen = conn.execute(f"SELECT {tables.RUN_COLUMNS}, fingerprint FROM runs"
                            " WHERE idempotency_key = ?", (request.idempotency_key,)).fetchone()
        if seen is not None:
            return runs.replay(tables.run_from_row(seen[:8]), seen[8], request)
    tenant = runs.tenant_of(request)
    parent = None
    if request.parent_run_id is not None:
        found = _find(conn, request.parent_run_id)
        if found is not None:
            (children,) = conn.execute("SELECT count(*) FROM runs WHERE parent_run_id = ?",
                                       (request.parent_run_id,)).fetchone()
            parent = runs.Parent(found[0], children)
        root: tuple[int, int | None] = (0, None)
    else:
        root = conn.execute(
            "SELECT count(*), min(started_at) FROM runs WHERE agent_id = ?"
            " AND parent_run_id IS NULL AND started_at > ?",
            (request.agent_id, runs.root_since(now, rules)),
        ).fetchone()
    running = conn.execute(
        "SELECT count(*), min(lease_expires_at) FROM runs WHERE tenant_id = ?"
        " AND status = 'running' AND lease_expires_at > ?", (tenant, now),
    ).fetchone()
    hour = conn.execute(
        "SELECT count(*), min(started_at) FROM runs WHERE tenant_id = ? AND started_at > ?",
        (tenant, runs.hour_since(now)),
    ).fetchone()
    load = runs.TenantLoad(running[0], running[1], hour[0], hour[1])
    limits = runs.effective(plan, overrides(conn, tenant))
    result = runs.start(request, parent, root, load, limits, rules, now, new_run_id())
    if isinstance(result, runs.Refused):
        audit_log.append(conn, now, *result.events)
        return result
    run = result.run
    conn.execute(
        "INSERT INTO runs (id, agent_id, mission_id, team_id, tenant_id, parent_run_id, depth,"
        " status, started_at, lease_expires_at, ended_at, idempotency_key, fingerprint, breaker)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        (run.id, run.agent_id, request.mission_id, request.team_id, tenant, run.parent_run_id,
         run.depth, run.status, run.started_at, run.lease_expires_at, run.ended_at,
         request.idempotency_key, runs.fingerprint(request)),
    )
    return result


def end_run(conn: sqlite3.Connection, now: int, run_id: str) -> records.Run:
    found = _find(conn, run_id)
    ended = runs.end(None if found is None else found[0], run_id, now)
    if ended is None:
        assert found is not None
        return found[0]
    conn.execute("UPDATE runs SET status = ?, ended_at = ? WHERE id = ? AND status = 'running'",
                 (ended.status, ended.ended_at, run_id))
    return ended


def run_events(
    conn: sqlite3.Connection, now: int, run_id: str, events: list[commands.RunEvent],
    rules: runs.Rules,
) -> runs.Applied:
    found = _find(conn, run_id)
    state = runs.BreakerState.from_json(None if found is None else found[1])
    applied = runs.apply_events(None if found is None else found[0], run_id, state, events,
                                rules, now)
    run = applied.run
    conn.execute(
        "UPDATE runs SET status = ?, lease_expires_at = ?, ended_at = ?, breaker = ?"
        " WHERE id = ? AND status = 'running'",
        (run.status, run.lease_expires_at, run.ended_at, applied.state.to_json(), run_id),
    )
    audit_log.append(conn, now, *applied.events)
    return applied


def set_overrides(
    conn: sqlite3.Connection, now: int, tenant_id: str, patch: dict[str, int | None]
) -> dict[str, int]:
    updated, event = runs.apply_patch(tenant_id, overrides(conn, tenant_id), patch)
    conn.execute(
        "INSERT INTO tenant_quotas (tenant_id, overrides, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (tenant_id) DO UPDATE SET overrides = excluded.overrides,"
        " updated_at = excluded.updated_at",
        (tenant_id, json.dumps(updated), now),
    )
    audit_log.append(conn, now, event)
    return updated


def expire_runs(conn: sqlite3.Connection, now: int, limit: int) -> int:
    """Write `expired` on up to `limit` running runs past their lease (they read expired and
    held no slot from then: records.Run.as_of), ended at their lease's end."""
    return conn.execute(
        "UPDATE runs SET status = 'expired', ended_at = lease_expires_at WHERE id IN"
        " (SELECT id FROM runs WHERE status = 'running' AND lease_expires_at <= ? LIMIT ?)",
        (now, limit),
    ).rowcount
