"""Who is calling: API keys, roles, and the rule of who may decide for which agent.

A key is shown once, when it is made; only its SHA-256 is stored. Keys are
256-bit random strings, so a fast hash is enough: there is nothing to guess.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from clawguard.core import audit

Role = Literal["executor", "leader", "operator", "admin"]
ROLES: tuple[Role, ...] = ("executor", "leader", "operator", "admin")
KEY_PREFIX = "cgk_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name and role, and the agents a leader may decide for."""

    key_id: str
    name: str
    role: Role
    leads: frozenset[str] | None = None  # None: every agent

    def may_act_for(self, agent_id: str) -> bool:
        """The one scoping rule: may this caller see `agent_id`'s approval requests, grants
        and history, and decide, revoke or append for it. Every agent, unless the key is a
        leader made with `--leads`."""
        return self.leads is None or agent_id in self.leads

    def refusal_to_see(self, agent_id: str) -> str | None:
        """Why this caller may not read or write for `agent_id` by name, or None."""
        if self.may_act_for(agent_id):
            return None
        return f"key {self.name} may act only for the agents it leads, not {agent_id}"

    def refusal_to_decide(self, agent_id: str, requested_by_key: str | None) -> str | None:
        """Why this caller may not decide a request of `agent_id`, or None when it may."""
        if not self.may_act_for(agent_id):
            return f"key {self.name} may decide only for agents it leads, not {agent_id}"
        if requested_by_key is not None and requested_by_key == self.key_id != ANONYMOUS_KEY:
            return "a request cannot be decided with the key that asked for it"
        return None


def actor(principal: Principal) -> dict[str, str]:
    """Who made a change or was refused, as audit rows name them: the key's id (never the
    key itself), name and role (the names the auth middleware's refusals use)."""
    return {"keyId": principal.key_id, "keyName": principal.name, "role": principal.role}


ANONYMOUS_KEY = "none"
ANONYMOUS = Principal(key_id=ANONYMOUS_KEY, name="anonymous", role="admin")  # auth.mode none


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()



def key_created(principal: Principal) -> audit.Event:
    return audit.Event("verification", "key.created", None, {
        "keyId": principal.key_id, "name": principal.name, "role": principal.role,
        "leads": None if principal.leads is None else sorted(principal.leads),
    })


def key_revoked(key_id: str) -> audit.Event:
    return audit.Event("verification", "key.revoked", None, {"keyId": key_id})
