"""Guardrail policies, the tool registry, tool policies and role overrides, in SQLite.

Load, decide with clawguard.core.guardrails and clawguard.core.registry,
apply: no rule lives here. Every write moves `gate_generation`, in its
transaction, so a compiled copy of these tables knows it is stale.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from clawguard.core import documents, guardrails, principals, registry
from clawguard.core import gate as gate_rules
from clawguard.store import tables
from clawguard.store.sqlite import audit_log


def _moved(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE gate_generation SET generation = generation + 1 WHERE id = 1")


def _stored(conn: sqlite3.Connection, policy_id: str, version: int | None = None
            ) -> guardrails.Stored | None:
    row = conn.execute(
        tables.STORED + " WHERE p.id = ?1 AND v.version = coalesce(?2, p.version)",
        (policy_id, version),
    ).fetchone()
    return None if row is None else tables.stored_from_row(row)


def _head(conn: sqlite3.Connection, policy_id: str) -> guardrails.Head | None:
    row = conn.execute(
        f"SELECT {tables.HEAD_COLUMNS} FROM guardrail_policies WHERE id = ?", (policy_id,)
    ).fetchone()
    return None if row is None else tables.head_from_row(row)


def _version(conn: sqlite3.Connection, policy_id: str, version: int
             ) -> guardrails.Version | None:
    row = conn.execute(
        f"SELECT {tables.VERSION_COLUMNS} FROM guardrail_versions"
        " WHERE policy_id = ? AND version = ?",
        (policy_id, version),
    ).fetchone()
    return None if row is None else tables.version_from_row(row)


def _apply(conn: sqlite3.Connection, now: int, change: guardrails.Change) -> None:
    head = change.head
    conn.execute(
        "UPDATE guardrail_policies SET description = ?, status = ?, version = ?, updated_at = ?,"
        " deleted_at = ? WHERE id = ?",
        (head.description, head.status, head.version, head.updated_at, head.deleted_at, head.id),
    )
    if change.version is not None:
        _insert_version(conn, change.version)
    _moved(conn)
    audit_log.append(conn, now, change.event)


def _insert_version(conn: sqlite3.Connection, version: guardrails.Version) -> None:
    conn.execute(
        f"INSERT INTO guardrail_versions ({tables.VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (version.policy_id, version.version, documents.dumps(list(version.rules)),
         version.created_at, version.created_by, version.message),
    )


def create_guardrail(
    conn: sqlite3.Connection, now: int, draft: gate_rules.Draft, key: str | None,
    actor: principals.Principal,
) -> tuple[guardrails.Stored, bool]:
    if key is not None:
        row = conn.execute(
            f"SELECT {tables.HEAD_COLUMNS} FROM guardrail_policies WHERE idempotency_key = ?",
            (key,)
        ).fetchone()
        earlier = guardrails.replay(None if row is None else tables.head_from_row(row), key, draft)
        if earlier is not None:
            stored = _stored(conn, earlier.id)
            assert stored is not None
            return stored, True
    taken = conn.execute(
        "SELECT 1 FROM guardrail_policies WHERE name = ?", (draft.name,)
    ).fetchone() is not None
    change = guardrails.create(draft, taken, guardrails.new_id(), now, actor, key)
    head = change.head
    conn.execute(
        f"INSERT INTO guardrail_policies ({tables.HEAD_COLUMNS})"
        " VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        (head.id, head.name, head.description, head.status, head.version, head.created_at,
         head.updated_at, head.idempotency_key, head.fingerprint),
    )
    assert change.version is not None
    _insert_version(conn, change.version)
    _moved(conn)
    audit_log.append(conn, now, change.event)
    stored = _stored(conn, head.id)
    assert stored is not None
    return stored, False


def update_guardrail(
    conn: sqlite3.Connection, now: int, policy_id: str, patch: gate_rules.Update,
    actor: principals.Principal,
) -> guardrails.Stored:
    current = _stored(conn, policy_id)
    change = guardrails.update(
        None if current is None else current.head, None if current is None else current.version,
        policy_id, patch, now, actor,
    )
    _apply(conn, now, change)
    assert current is not None
    return change.stored(current.version)


def rollback_guardrail(
    conn: sqlite3.Connection, now: int, policy_id: str, number: int, message: str | None,
    actor: principals.Principal,
) -> guardrails.Rollback:
    change = guardrails.rollback(
        _head(conn, policy_id), _version(conn, policy_id, number), policy_id, number, message,
        now, actor,
    )
    _apply(conn, now, change)
    return guardrails.Rollback(change.head.version, number, now)


def delete_guardrail(
    conn: sqlite3.Connection, now: int, policy_id: str, actor: principals.Principal
) -> None:
    _apply(conn, now, guardrails.delete(_head(conn, policy_id), policy_id, now, actor))


# --- the tool registry, tool policies and role overrides --------------------------------


def _tool(conn: sqlite3.Connection, name: str | None) -> registry.Tool | None:
    if name is None:
        return None
    row = conn.execute(
        f"SELECT {tables.TOOL_COLUMNS} FROM tools WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else tables.tool_from_row(row)


def register_tool(
    conn: sqlite3.Connection, now: int, name: str, categories: Sequence[str],
    description: str | None, actor: principals.Principal,
) -> registry.Tool:
    written = registry.register(_tool(conn, name), name, categories, description, now, actor)
    tool = written.record
    conn.execute(
        f"INSERT INTO tools ({tables.TOOL_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, NULL, NULL, ?, ?)",
        (tool.name, documents.dumps(list(tool.categories)), tool.description, tool.status,
         now, now),
    )
    _moved(conn)
    audit_log.append(conn, now, written.event)
    stored = _tool(conn, name)
    assert stored is not None
    return stored


def _save_tool(conn: sqlite3.Connection, now: int, written: registry.Written[registry.Tool]
               ) -> registry.Tool:
    tool = written.record
    conn.execute(
        "UPDATE tools SET status = ?, reason = ?, replacement = ?, updated_at = ? WHERE name = ?",
        (tool.status, tool.reason, tool.replacement, tool.updated_at, tool.name),
    )
    _moved(conn)
    audit_log.append(conn, now, written.event)
    return tool


def deprecate_tool(
    conn: sqlite3.Connection, now: int, name: str, reason: str, replacement: str | None,
    actor: principals.Principal,
) -> registry.Tool:
    return _save_tool(conn, now, registry.deprecate(
        _tool(conn, name), name, reason, _tool(conn, replacement), replacement, now, actor))


def archive_tool(
    conn: sqlite3.Connection, now: int, name: str, actor: principals.Principal
) -> registry.Tool:
    return _save_tool(conn, now, registry.archive(_tool(conn, name), name, now, actor))


def create_tool_policy(
    conn: sqlite3.Connection, now: int, tool_name: str, allowed: bool,
    domains: Sequence[str] | None, max_kb: int | None, actor: principals.Principal,
) -> registry.ToolPolicy:
    row = conn.execute(
        f"SELECT {tables.TOOL_POLICY_COLUMNS} FROM tool_policies WHERE tool_name = ?", (tool_name,)
    ).fetchone()
    written = registry.add_policy(
        _tool(conn, tool_name), None if row is None else tables.tool_policy_from_row(row),
        tool_name, allowed, domains, max_kb, now, actor,
    )
    policy = written.record
    conn.execute(
        f"INSERT INTO tool_policies ({tables.TOOL_POLICY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (policy.id, policy.tool_name, int(policy.allowed),
         None if policy.allowed_domains is None else documents.dumps(list(policy.allowed_domains)),
         policy.max_response_size_kb, policy.created_at),
    )
    _moved(conn)
    audit_log.append(conn, now, written.event)
    return policy


def delete_tool_policy(
    conn: sqlite3.Connection, now: int, policy_id: str, actor: principals.Principal
) -> None:
    row = conn.execute(
        f"SELECT {tables.TOOL_POLICY_COLUMNS} FROM tool_policies WHERE id = ?", (policy_id,)
    ).fetchone()
    event = registry.remove_policy(None if row is None else tables.tool_policy_from_row(row),
                                   policy_id, actor)
    conn.execute("DELETE FROM tool_policies WHERE id = ?", (policy_id,))
    _moved(conn)
    audit_log.append(conn, now, event)


def create_role_override(
    conn: sqlite3.Connection, now: int, role: str, tool_name: str, allowed: bool,
    actor: principals.Principal,
) -> registry.RoleOverride:
    row = conn.execute(
        f"SELECT {tables.OVERRIDE_COLUMNS} FROM role_policy_overrides"
        " WHERE role = ? AND tool_name = ?",
        (role, tool_name),
    ).fetchone()
    written = registry.add_override(
        _tool(conn, tool_name), None if row is None else tables.override_from_row(row), role,
        tool_name, allowed, now, actor,
    )
    override = written.record
    conn.execute(
        f"INSERT INTO role_policy_overrides ({tables.OVERRIDE_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
        (override.id, override.role, override.tool_name, int(override.allowed),
         override.created_at),
    )
    _moved(conn)
    audit_log.append(conn, now, written.event)
    return override


def delete_role_override(
    conn: sqlite3.Connection, now: int, override_id: str, actor: principals.Principal
) -> None:
    row = conn.execute(
        f"SELECT {tables.OVERRIDE_COLUMNS} FROM role_policy_overrides WHERE id = ?", (override_id,)
    ).fetchone()
    event = registry.remove_override(None if row is None else tables.override_from_row(row),
                                     override_id, actor)
    conn.execute("DELETE FROM role_policy_overrides WHERE id = ?", (override_id,))
    _moved(conn)
    audit_log.append(conn, now, event)

