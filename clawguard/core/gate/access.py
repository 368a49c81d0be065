"""Tool access (README: Policies): registry status, role override, tool policy, restrictions.

Order: an unregistered or archived tool is blocked; then a role override for
any of the principal's roles decides (a deny among them wins); else the tool's
policy; else the default, deny. A tool policy's restrictions apply whoever
granted access, an override included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urlsplit

from clawguard.core.gate import subjects

ToolStatus = Literal["active", "deprecated", "archived"]
DecidedBy = Literal["registry", "role_override", "tool_policy", "default"]

_HOST_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-:")
_SCHEMES: Final = ("http", "https")


@dataclass(frozen=True, slots=True)
class Tool:
    """A registry entry; a deprecated tool still runs, an archived one never does."""

    name: str
    status: ToolStatus = "active"
    reason: str | None = None
    replacement: str | None = None


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """The organisation's policy for one tool, with its optional restrictions."""

    id: str
    tool_name: str
    allowed: bool
    allowed_domains: tuple[str, ...] | None = None
    max_response_size_kb: int | None = None


@dataclass(frozen=True, slots=True)
class RoleOverride:
    """Allows or denies one tool to one role, ahead of the tool policy."""

    id: str
    role: str
    tool_name: str
    allowed: bool


@dataclass(frozen=True, slots=True)
class AccessDecision:
    """ALLOW or BLOCK, and the rule that decided it: `rule_id` is the override or policy id."""

    decision: Literal["ALLOW", "BLOCK"]
    decided_by: DecidedBy
    rule_id: str | None
    reasons: tuple[str, ...]
    obligations: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _ToolAccess:
    tool: Tool
    policy: ToolPolicy | None
    domains: tuple[str, ...] | None
    overrides: tuple[RoleOverride, ...]


class AccessTable:
    """Registry, tool policies and role overrides indexed by tool name; build with `compile`."""

    __slots__ = ("_tools",)

    def __init__(self, tools: dict[str, _ToolAccess]) -> None:
        self._tools = tools

    def get(self, tool_name: str) -> _ToolAccess | None:
        return self._tools.get(tool_name)


def normalize_domain(domain: str) -> str:
    """An `allowed_domains` entry as hosts are compared: lowercase, no trailing dot."""
    domain = domain.strip().lower()
    return domain[:-1] if domain.endswith(".") else domain


def compile(
    tools: Iterable[Tool],
    tool_policies: Iterable[ToolPolicy],
    overrides: Iterable[RoleOverride],
) -> AccessTable:
    """The table `check` reads; policies and overrides of unregistered tools are ignored."""
    by_policy = {p.tool_name: p for p in tool_policies}
    by_override: dict[str, list[RoleOverride]] = {}
    for o in overrides:
        by_override.setdefault(o.tool_name, []).append(o)
    table = {}
    for tool in tools:
        policy = by_policy.get(tool.name)
        domains = None
        if policy is not None and policy.allowed_domains is not None:
            domains = tuple(normalize_domain(d) for d in policy.allowed_domains)
        table[tool.name] = _ToolAccess(tool, policy, domains, tuple(by_override.get(tool.name, ())))
    return AccessTable(table)


def check(
    table: AccessTable,
    tool_name: str,
    arguments: Mapping[str, object] | None,
    principal: subjects.Principal,
) -> AccessDecision:
    """Whether `principal` may call `tool_name` with `arguments`, and which rule said so."""
    entry = table.get(tool_name)
    if entry is None:
        return AccessDecision(
            "BLOCK", "registry", None, (f"tool {tool_name} is not in the tool registry",)
        )
    tool, policy = entry.tool, entry.policy
    reasons: list[str] = []
    if tool.status == "archived":
        return AccessDecision("BLOCK", "registry", None, (f"tool {tool_name} is archived",))
    if tool.status == "deprecated":
        warning = f"warning: tool {tool_name} is deprecated"
        if tool.reason:
            warning += f" ({tool.reason})"
        if tool.replacement:
            warning += f"; use {tool.replacement}"
        reasons.append(warning)

    held = [o for o in entry.overrides if o.role in principal.roles]
    deny = next((o for o in held if not o.allowed), None)
    grant = next((o for o in held if o.allowed), None)
    decided_by: DecidedBy
    if deny is not None:
        reasons.append(f"role override {deny.id} denies {tool_name} to role {deny.role}")
        return AccessDecision("BLOCK", "role_override", deny.id, tuple(reasons))
    if grant is not None:
        decided_by, rule_id = "role_override", grant.id
        reasons.append(f"role override {grant.id} allows {tool_name} to role {grant.role}")
    elif policy is not None:
        decided_by, rule_id = "tool_policy", policy.id
        if not policy.allowed:
            reasons.append(f"tool policy {policy.id} does not allow {tool_name}")
            return AccessDecision("BLOCK", decided_by, rule_id, tuple(reasons))
        reasons.append(f"tool policy {policy.id} allows {tool_name}")
    else:
        reasons.append(f"no role override or tool policy allows {tool_name} (default deny)")
        return AccessDecision("BLOCK", "default", None, tuple(reasons))

    obligations: dict[str, object] = {}
    if policy is not None:
        if entry.domains is not None:
            url = None if arguments is None else arguments.get("url")
            refusal = url_refusal(url, entry.domains)
            if refusal is not None:
                reasons.append(f"tool policy {policy.id} restricts {tool_name}: {refusal}")
                return AccessDecision("BLOCK", "tool_policy", policy.id, tuple(reasons))
        if policy.max_response_size_kb is not None:
            obligations["max_response_size_kb"] = policy.max_response_size_kb
    return AccessDecision("ALLOW", decided_by, rule_id, tuple(reasons), obligations)


def host_of(url: object) -> str | None:
    """The host an http(s) URL points at, compared form; None when it is not one we accept.

    Refused: anything but an absolute http(s) URL, any backslash, whitespace or
    control character anywhere (parsers disagree on them), a non-ASCII host.
    """
    if not isinstance(url, str):
        return None
    if any(c == "\\" or c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        return None
    if parts.scheme.lower() not in _SCHEMES or not parts.netloc:
        return None
    host = parts.hostname or ""
    if host.endswith("."):
        host = host[:-1]
    if not host or not set(host) <= _HOST_CHARS:
        return None
    return host


def url_refusal(url: object, domains: tuple[str, ...]) -> str | None:
    """Why `url` is outside `domains` (normalized), or None when its host is one or under one."""
    if url is None:
        return "allowed_domains needs a url argument"
    host = host_of(url)
    if host is None:
        return f"url {url!r} is not an absolute http(s) URL with a plain host"
    for domain in domains:
        if host == domain or host.endswith("." + domain):
            return None
    return f"host {host} is not in allowed_domains ({', '.join(domains)})"
