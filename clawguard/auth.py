"""API keys and roles: who may call which route (no HTTP and no SQL here).

A key is shown once, when it is made; only its SHA-256 is stored. Keys are
256-bit random strings, so a fast hash is enough: there is nothing to guess.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

Role = Literal["executor", "leader", "operator", "admin"]
ROLES: tuple[Role, ...] = ("executor", "leader", "operator", "admin")
KEY_PREFIX = "cgk_"

PUBLIC: frozenset[Role] = frozenset()  # no key needed
EXECUTOR: frozenset[Role] = frozenset({"executor"})
LEADER: frozenset[Role] = frozenset({"leader"})
OPERATOR: frozenset[Role] = frozenset({"operator"})

# Who may call what, in one place; admin may call everything. Keyed by method
# and route template as web.ROUTES spells them; a test checks both agree.
PERMISSIONS: dict[tuple[str, str], frozenset[Role]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/metrics"): OPERATOR,
    ("GET", "/api/governance/budgets"): OPERATOR,
    ("POST", "/api/governance/budgets"): OPERATOR,
    ("DELETE", "/api/governance/budgets/{scope}/{scopeId}"): OPERATOR,
    ("POST", "/api/governance/budgets/{scope}/{scopeId}/resume"): OPERATOR,
    ("POST", "/api/governance/spend"): EXECUTOR,
    ("GET", "/api/governance/preflight"): EXECUTOR,
    ("GET", "/api/governance/audit"): OPERATOR,
    ("GET", "/api/governance/audit/head"): OPERATOR,
    # Approvals (SPEC section 4): executors ask and re-attach, leaders read and decide;
    # sticky grants and the history are also an operator's to read and revoke.
    ("POST", "/api/governance/delegation-approval"): EXECUTOR,
    ("POST", "/api/tools/approvals"): EXECUTOR,
    ("GET", "/api/tools/approvals"): LEADER,
    ("GET", "/api/tools/approvals/{id}"): EXECUTOR | LEADER,
    ("POST", "/api/tools/approvals/{id}/resolve"): LEADER,
    ("GET", "/api/tools/approvals/grants"): LEADER | OPERATOR,
    ("DELETE", "/api/tools/approvals/grants/{id}"): LEADER | OPERATOR,
    ("GET", "/api/approvals"): LEADER | OPERATOR,
    ("POST", "/api/approvals"): LEADER,
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name and role, and the agents a leader may decide for."""

    key_id: str
    name: str
    role: Role
    leads: frozenset[str] | None = None  # None: every agent

    def may_call(self, method: str, route: str) -> bool:
        allowed = PERMISSIONS.get((method, route))
        if allowed is None:
            return self.role == "admin"  # a route missing from the table is closed
        return not allowed or self.role == "admin" or self.role in allowed

    def may_decide_for(self, agent_id: str) -> bool:
        return self.leads is None or agent_id in self.leads

    def refusal_to_decide(self, agent_id: str, requested_by_key: str | None) -> str | None:
        """Why this caller may not decide a request of `agent_id`, or None when it may."""
        if not self.may_decide_for(agent_id):
            return f"key {self.name} may decide only for agents it leads, not {agent_id}"
        if requested_by_key is not None and requested_by_key == self.key_id != ANONYMOUS_KEY:
            return "a request cannot be decided with the key that asked for it"
        return None


ANONYMOUS_KEY = "none"
ANONYMOUS = Principal(key_id=ANONYMOUS_KEY, name="anonymous", role="admin")  # auth.mode none


def is_public(method: str, route: str) -> bool:
    return PERMISSIONS.get((method, route)) == PUBLIC


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key from `Authorization: Bearer <key>`, else from `X-API-Key: <key>`."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return x_api_key.strip() if x_api_key and x_api_key.strip() else None


class KeyCache:
    """Principals by key hash for `ttl_ms`, so the spend path does not read the keys table.

    A key revoked in the database stops working within `ttl_ms`.
    """

    def __init__(self, ttl_ms: int) -> None:
        self._ttl_ms = ttl_ms
        self._entries: dict[str, tuple[Principal, int]] = {}

    def get(self, key_hash: str, now: int) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def put(self, key_hash: str, principal: Principal, now: int) -> None:
        if len(self._entries) > 10_000:  # bounded: keys are few, guesses are many
            self._entries.clear()
        self._entries[key_hash] = (principal, now + self._ttl_ms)
