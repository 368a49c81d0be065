"""Guardrail policies, the tool registry, tool policies and role overrides, on PostgreSQL.

Load, decide with clawguard.core.guardrails and clawguard.core.registry,
apply: no rule lives here. Every write moves `gate_generation`, in its
transaction, so a compiled copy of these tables, on any instance, knows it
is stale. Locks are taken in one order: the row written (FOR UPDATE), then
`gate_generation`, then the audit head; two instances racing to create the
same name or idempotency key lose a unique key and the retry reads the winner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clawguard.core import documents, guardrails, principals, registry
from clawguard.core import gate as gate_rules
from clawguard.store import tables
from clawguard.store.postgres import audit_log, connection


async def _one(conn: connection.Connection, sql: str, params: Sequence[Any] | dict[str, Any]
               ) -> tuple[Any, ...] | None:
    cursor = await conn.execute(sql, params)
    return await cursor.fetchone()


async def _moved(conn: connection.Connection) -> None:
    await conn.execute("UPDATE gate_generation SET generation = generation + 1 WHERE id = 1")


async def _stored(conn: connection.Connection, policy_id: str, version: int | None = None
            ) -> guardrails.Stored | None:
    row = await _one(conn,
        tables.STORED + " WHERE p.id = %(id)s AND v.version = coalesce(%(version)s, p.version)"
        " FOR UPDATE OF p", {"id": policy_id, "version": version}
    )
    return None if row is None else tables.stored_from_row(row)


async def _head(conn: connection.Connection, policy_id: str) -> guardrails.Head | None:
    row = await _one(conn,
        f"SELECT {tables.HEAD_COLUMNS} FROM guardrail_policies WHERE id = %s FOR UPDATE",
        (policy_id,)
    )
    return None if row is None else tables.head_from_row(row)


async def _version(conn: connection.Connection, policy_id: str, version: int
             ) -> guardrails.Version | None:
    row = await _one(conn,
        f"SELECT {tables.VERSION_COLUMNS} FROM guardrail_versions"
        " WHERE policy_id = %s AND version = %s",
        (policy_id, version),
    )
    return None if row is None else tables.version_from_row(row)


async def _apply(conn: connection.Connection, now: int, change: guardrails.Change) -> None:
    head = change.head
    await conn.execute(
        "UPDATE guardrail_policies SET description = %s, status = %s, version = %s,"
        " updated_at = %s, deleted_at = %s WHERE id = %s",
        (head.description, head.status, head.version, head.updated_at, head.deleted_at, head.id),
    )
    if change.version is not None:
        await _insert_version(conn, change.version)
    await _moved(conn)
    await audit_log.append(conn, now, [change.event])


async def _insert_version(conn: connection.Connection, version: guardrails.Version) -> None:
    await conn.execute(
        f"INSERT INTO guardrail_versions ({tables.VERSION_COLUMNS})"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (version.policy_id, version.version, documents.dumps(list(version.rules)),
         version.created_at, version.created_by, version.message),
    )


async def create_guardrail(
    conn: connection.Connection, now: int, draft: gate_rules.Draft, key: str | None,
    actor: principals.Principal,
) -> tuple[guardrails.Stored, bool]:
    if key is not None:
        row = await _one(conn,
            f"SELECT {tables.HEAD_COLUMNS} FROM guardrail_policies WHERE idempotency_key = %s",
            (key,)
        )
        earlier = guardrails.replay(None if row is None else tables.head_from_row(row), key, draft)
        if earlier is not None:
            stored = await _stored(conn, earlier.id)
            assert stored is not None
            return stored, True
    taken = await _one(conn,
        "SELECT 1 FROM guardrail_policies WHERE name = %s", (draft.name,)
    ) is not None
    change = guardrails.create(draft, taken, guardrails.new_id(), now, actor, key)
    head = change.head
    await conn.execute(
        "INSERT INTO guardrail_policies (id, name, description, status, version, created_at,"
        " updated_at, idempotency_key, fingerprint) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (head.id, head.name, head.description, head.status, head.version, head.created_at,
         head.updated_at, head.idempotency_key, head.fingerprint),
    )
    assert change.version is not None
    await _insert_version(conn, change.version)
    await _moved(conn)
    await audit_log.append(conn, now, [change.event])
    stored = await _stored(conn, head.id)
    assert stored is not None
    return stored, False


async def update_guardrail(
    conn: connection.Connection, now: int, policy_id: str, patch: gate_rules.Update,
    actor: principals.Principal,
) -> guardrails.Stored:
    current = await _stored(conn, policy_id)
    change = guardrails.update(
        None if current is None else current.head, None if current is None else current.version,
        policy_id, patch, now, actor,
    )
    await _apply(conn, now, change)
    assert current is not None
    return change.stored(current.version)


async def rollback_guardrail(
    conn: connection.Connection, now: int, policy_id: str, number: int, message: str | None,
    actor: principals.Principal,
) -> guardrails.Rollback:
    change = guardrails.rollback(
        await _head(conn, policy_id), await _version(conn, policy_id, number), policy_id, number,
        message, now, actor,
    )
    await _apply(conn, now, change)
    return guardrails.Rollback(change.head.version, number, now)


async def delete_guardrail(
    conn: connection.Connection, now: int, policy_id: str, actor: principals.Principal
) -> None:
    await _apply(conn, now, guardrails.delete(await _head(conn, policy_id), policy_id, now, actor))


# --- the tool registry, tool policies and role overrides --------------------------------


async def _tool(conn: connection.Connection, name: str | None) -> registry.Tool | None:
    if name is None:
        return None
    row = await _one(
        conn, f"SELECT {tables.TOOL_COLUMNS} FROM tools WHERE name = %s FOR UPDATE", (name,)
    )
    return None if row is None else tables.tool_from_row(row)


async def register_tool(
    conn: connection.Connection, now: int, name: str, categories: Sequence[str],
    description: str | None, actor: principals.Principal,
) -> registry.Tool:
    written = registry.register(await _tool(conn, name), name, categories, description, now, actor)
    tool = written.record
    await conn.execute(
        "INSERT INTO tools (name, categories, description, status, created_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (tool.name, documents.dumps(list(tool.categories)), tool.description, tool.status,
         now, now),
    )
    await _moved(conn)
    await audit_log.append(conn, now, [written.event])
    stored = await _tool(conn, name)
    assert stored is not None
    return stored


async def _save_tool(conn: connection.Connection, now: int, written: registry.Written[registry.Tool]
               ) -> registry.Tool:
    tool = written.record
    await conn.execute(
        "UPDATE tools SET status = %s, reason = %s, replacement = %s, updated_at = %s"
        " WHERE name = %s",
        (tool.status, tool.reason, tool.replacement, tool.updated_at, tool.name),
    )
    await _moved(conn)
    await audit_log.append(conn, now, [written.event])
    return tool


async def deprecate_tool(
    conn: connection.Connection, now: int, name: str, reason: str, replacement: str | None,
    actor: principals.Principal,
) -> registry.Tool:
    tool, substitute = await _tool(conn, name), await _tool(conn, replacement)
    return await _save_tool(conn, now, registry.deprecate(
        tool, name, reason, substitute, replacement, now, actor))


async def archive_tool(
    conn: connection.Connection, now: int, name: str, actor: principals.Principal
) -> registry.Tool:
    return await _save_tool(conn, now, registry.archive(await _tool(conn, name), name, now, actor))


async def create_tool_policy(
    conn: connection.Connection, now: int, tool_name: str, allowed: bool,
    domains: Sequence[str] | None, max_kb: int | None, actor: principals.Principal,
) -> registry.ToolPolicy:
    row = await _one(conn,
        f"SELECT {tables.TOOL_POLICY_COLUMNS} FROM tool_policies WHERE tool_name = %s", (tool_name,)
    )
    written = registry.add_policy(
        await _tool(conn, tool_name), None if row is None else tables.tool_policy_from_row(row),
        tool_name, allowed, domains, max_kb, now, actor,
    )
    policy = written.record
    await conn.execute(
        f"INSERT INTO tool_policies ({tables.TOOL_POLICY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
        (policy.id, policy.tool_name, policy.allowed,
         None if policy.allowed_domains is None else documents.dumps(list(policy.allowed_domains)),
         policy.max_response_size_kb, policy.created_at),
    )
    await _moved(conn)
    await audit_log.append(conn, now, [written.event])
    return policy


async def delete_tool_policy(
    conn: connection.Connection, now: int, policy_id: str, actor: principals.Principal
) -> None:
    row = await _one(conn,
        f"SELECT {tables.TOOL_POLICY_COLUMNS} FROM tool_policies WHERE id = %s", (policy_id,)
    )
    event = registry.remove_policy(None if row is None else tables.tool_policy_from_row(row),
                                   policy_id, actor)
    await conn.execute("DELETE FROM tool_policies WHERE id = %s", (policy_id,))
    await _moved(conn)
    await audit_log.append(conn, now, [event])


async def create_role_override(
    conn: connection.Connection, now: int, role: str, tool_name: str, allowed: bool,
    actor: principals.Principal,
) -> registry.RoleOverride:
    row = await _one(conn,
        f"SELECT {tables.OVERRIDE_COLUMNS} FROM role_policy_overrides"
        " WHERE role = %s AND tool_name = %s",
        (role, tool_name),
    )
    written = registry.add_override(
        await _tool(conn, tool_name), None if row is None else tables.override_from_row(row), role,
        tool_name, allowed, now, actor,
    )
    override = written.record
    await conn.execute(
        f"INSERT INTO role_policy_overrides ({tables.OVERRIDE_COLUMNS})"
        " VALUES (%s, %s, %s, %s, %s)",
        (override.id, override.role, override.tool_name, override.allowed,
         override.created_at),
    )
    await _moved(conn)
    await audit_log.append(conn, now, [written.event])
    return override


async def delete_role_override(
    conn: connection.Connection, now: int, override_id: str, actor: principals.Principal
) -> None:
    row = await _one(conn,
        f"SELECT {tables.OVERRIDE_COLUMNS} FROM role_policy_overrides WHERE id = %s", (override_id,)
    )
    event = registry.remove_override(None if row is None else tables.override_from_row(row),
                                     override_id, actor)
    await conn.execute("DELETE FROM role_policy_overrides WHERE id = %s", (override_id,))
    await _moved(conn)
    await audit_log.append(conn, now, [event])

