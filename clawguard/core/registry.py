"""The tool registry, tool policies and role overrides as stored resources (no I/O).

Seed 000's lifecycle: active -> deprecated -> archived, archived for good.
The engines load the rows a write depends on, call these deciders and apply
what they return; access itself is decided by `core.gate.check_access`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, TypeVar

from clawguard.core import audit, documents, errors, principals
from clawguard.core import gate as gate_rules

Category = Literal["external_comm", "public_writes", "permission_changes", "financial", "pii",
                   "other"]
ToolStatus = Literal["active", "deprecated", "archived"]
TOOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
# `/api/tools/approvals...` are the approval routes: a tool of that name would sit under them.
RESERVED_NAMES = frozenset({"approvals"})
CHECK_TOOLS = "check GET /api/tools for the registered tool names"


@dataclass(frozen=True, slots=True)
class Tool:
    seq: int
    name: str
    categories: tuple[str, ...]
    description: str | None
    status: ToolStatus
    reason: str | None
    replacement: str | None
    created_at: int
    updated_at: int

    def wire(self) -> dict[str, Any]:
        return {
            "name": self.name, "categories": list(self.categories),
            "description": self.description, "status": self.status,
            "deprecation_reason": self.reason, "replacement": self.replacement,
            "created_at": documents.rfc3339(self.created_at),
            "updated_at": documents.rfc3339(self.updated_at),
        }

    def access(self) -> gate_rules.Tool:
        return gate_rules.Tool(self.name, self.status, self.reason, self.replacement)


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    id: str
    tool_name: str
    allowed: bool
    allowed_domains: tuple[str, ...] | None
    max_response_size_kb: int | None
    created_at: int

    def wire(self) -> dict[str, Any]:
        restrictions: dict[str, Any] | None = None
        if self.allowed_domains is not None or self.max_response_size_kb is not None:
            restrictions = {}
            if self.allowed_domains is not None:
                restrictions["allowed_domains"] = list(self.allowed_domains)
            if self.max_response_size_kb is not None:
                restrictions["max_response_size_kb"] = self.max_response_size_kb
        return {"id": self.id, "tool_name": self.tool_name, "allowed": self.allowed,
                "restrictions": restrictions, "created_at": documents.rfc3339(self.created_at)}

    def access(self) -> gate_rules.ToolPolicy:
        return gate_rules.ToolPolicy(self.id, self.tool_name, self.allowed,
                                     self.allowed_domains, self.max_response_size_kb)


@dataclass(frozen=True, slots=True)
class RoleOverride:
    id: str
    role: str
    tool_name: str
    allowed: bool
    created_at: int

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "role": self.role, "tool_name": self.tool_name,
                "allowed": self.allowed, "created_at": documents.rfc3339(self.created_at)}

    def access(self) -> gate_rules.RoleOverride:
        return gate_rules.RoleOverride(self.id, self.role, self.tool_name, self.allowed)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Written(Generic[T]):
    """A decided write: the record to store and its audit event."""

    record: T
    event: audit.Event


def _event(action: str, actor: principals.Principal, details: dict[str, Any]) -> audit.Event:
    return audit.Event("install", action, None,
                       {**details, "keyId": actor.key_id, "keyName": actor.name})


def register(
    existing: Tool | None, name: str, categories: Sequence[str], description: str | None,
    now: int, actor: principals.Principal,
) -> Written[Tool]:
    if name in RESERVED_NAMES:
        raise errors.InvalidInput(f"{name} is reserved: /api/tools/{name} is another route")
    if existing is not None:
        raise errors.Conflict(f"a tool named {name} is already registered ({existing.status})")
    tool = Tool(0, name, tuple(dict.fromkeys(categories)), description, "active", None, None,
                now, now)
    return Written(tool, _event("tool.register", actor, {
        "tool": name, "categories": list(tool.categories)}))


def _transition(tool: Tool | None, name: str, to: ToolStatus) -> Tool:
    if tool is None:
        raise errors.NotFound(f"no tool {name} is registered")
    if tool.status == "archived":
        raise errors.Conflict(f"tool {name} is archived; archiving is final")
    if tool.status == to:
        raise errors.Conflict(f"tool {name} is already {to}")
    return tool


def deprecate(
    tool: Tool | None, name: str, reason: str, replacement: Tool | None,
    replacement_name: str | None, now: int, actor: principals.Principal,
) -> Written[Tool]:
    """active -> deprecated; a replacement must be another registered, unarchived tool."""
    current = _transition(tool, name, "deprecated")
    if replacement_name is not None and (
        replacement is None or replacement.status == "archived" or replacement_name == name
    ):
        raise errors.Unprocessable(
            f"replacement {replacement_name} is not another registered, unarchived tool",
            {"hint": CHECK_TOOLS})
    changed = replace(current, status="deprecated", reason=reason,
                      replacement=replacement_name, updated_at=now)
    return Written(changed, _event("tool.deprecate", actor, {
        "tool": name, "reason": reason, "replacement": replacement_name}))


def archive(tool: Tool | None, name: str, now: int, actor: principals.Principal
            ) -> Written[Tool]:
    """active or deprecated -> archived, for good."""
    current = _transition(tool, name, "archived")
    changed = replace(current, status="archived", updated_at=now)
    return Written(changed, _event("tool.archive", actor, {"tool": name, "from": current.status}))


def _registered(tool: Tool | None, name: str) -> None:
    if tool is None:
        raise errors.Unprocessable(f"tool_name {name} is not in the tool registry",
                                   {"hint": CHECK_TOOLS})


def add_policy(
    tool: Tool | None, existing: ToolPolicy | None, tool_name: str, allowed: bool,
    domains: Sequence[str] | None, max_kb: int | None, now: int, actor: principals.Principal,
) -> Written[ToolPolicy]:
    """One policy per registered tool."""
    _registered(tool, tool_name)
    if existing is not None:
        raise errors.Conflict(f"tool {tool_name} already has a policy ({existing.id})",
                              {"id": existing.id})
    normalized = None if domains is None else tuple(domains)
    policy = ToolPolicy("tpol_" + secrets.token_hex(8), tool_name, allowed, normalized, max_kb,
                        now)
    return Written(policy, _event("tool_policy.create", actor, {
        "id": policy.id, "tool": tool_name, "allowed": allowed,
        "allowedDomains": None if normalized is None else list(normalized),
        "maxResponseSizeKb": max_kb}))


def remove_policy(existing: ToolPolicy | None, policy_id: str, actor: principals.Principal
                  ) -> audit.Event:
    if existing is None:
        raise errors.NotFound(f"no tool policy {policy_id}")
    return _event("tool_policy.delete", actor, {"id": policy_id, "tool": existing.tool_name})


def add_override(
    tool: Tool | None, existing: RoleOverride | None, role: str, tool_name: str, allowed: bool,
    now: int, actor: principals.Principal,
) -> Written[RoleOverride]:
    """One override per (role, registered tool)."""
    _registered(tool, tool_name)
    if existing is not None:
        raise errors.Conflict(f"role {role} already has an override for {tool_name} "
                              f"({existing.id})", {"id": existing.id})
    override = RoleOverride("rpo_" + secrets.token_hex(8), role, tool_name, allowed, now)
    return Written(override, _event("role_override.create", actor, {
        "id": override.id, "role": role, "tool": tool_name, "allowed": allowed}))


def remove_override(existing: RoleOverride | None, override_id: str,
                    actor: principals.Principal) -> audit.Event:
    if existing is None:
        raise errors.NotFound(f"no role policy override {override_id}")
    return _event("role_override.delete", actor, {
        "id": override_id, "role": existing.role, "tool": existing.tool_name})


def access_table(tools: Sequence[Tool], policies: Sequence[ToolPolicy],
                 overrides: Sequence[RoleOverride]) -> gate_rules.AccessTable:
    return gate_rules.compile_access([t.access() for t in tools],
                                     [p.access() for p in policies],
                                     [o.access() for o in overrides])
