"""Who is calling: API keys, roles, and the rule of who may decide for which agent.

A key is shown once, when it is made; only its SHA-256 is stored. Keys are
256-bit random strings, so a fast hash is enough: there is nothing to guess.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from clawguard.core import audit, errors, records

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
    groups: frozenset[str] | None = None  # the approval groups a leader answers for
    expires_at: int | None = None  # epoch ms; None: never

    def usable(self, now: int) -> bool:
        """An expired key is refused exactly as a revoked one is."""
        return self.expires_at is None or now < self.expires_at

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


def make(
    role: Role, name: str | None, leads: frozenset[str] | None = None,
    groups: frozenset[str] | None = None, expires_at: int | None = None,
) -> Principal:
    """A new key's principal; `leads` and `groups` belong to a leader, and are never empty."""
    for what, names in (("leads", leads), ("groups", groups)):
        if names is not None and (role != "leader" or not names):
            raise errors.InvalidInput(
                f"{what} takes a non-empty list, and only for a leader key", {"field": what}
            )
    return Principal(key_id=new_key_id(), name=name or role, role=role, leads=leads,
                     groups=groups, expires_at=expires_at)


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()



def key_record(principal: Principal, created_at: int) -> records.ApiKey:
    """A new key as `GET /api/keys` lists it."""
    return records.ApiKey(
        id=principal.key_id, name=principal.name, role=principal.role,
        leads=None if principal.leads is None else sorted(principal.leads),
        groups=None if principal.groups is None else sorted(principal.groups),
        created_at=created_at, expires_at=principal.expires_at, revoked_at=None,
        last_used_at=None,
    )


def key_created(principal: Principal) -> audit.Event:
    details: dict[str, Any] = {
        "keyId": principal.key_id, "name": principal.name, "role": principal.role,
        "leads": None if principal.leads is None else sorted(principal.leads),
    }
    if principal.groups is not None:
        details["groups"] = sorted(principal.groups)
    if principal.expires_at is not None:
        details["expiresAt"] = principal.expires_at
    return audit.Event("verification", "key.created", None, details)


def revoke(existing: records.ApiKey | None, key_id: str, now: int) -> tuple[
    records.ApiKey, audit.Event
]:
    """Revoke a key once: NotFound for no such key, Conflict when it is revoked already."""
    if existing is None:
        raise errors.NotFound(f"no key {key_id}")
    if existing.revoked_at is not None:
        raise errors.Conflict(f"key {key_id} is already revoked",
                              {"revokedAt": existing.revoked_at})
    return existing.model_copy(update={"revoked_at": now}), key_revoked(key_id)


def key_revoked(key_id: str) -> audit.Event:
    return audit.Event("verification", "key.revoked", None, {"keyId": key_id})
