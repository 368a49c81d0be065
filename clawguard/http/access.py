"""Which role may call which route, how a key is presented, and the key cache."""

from __future__ import annotations

from clawguard.core import principals

PUBLIC: frozenset[principals.Role] = frozenset()  # no key needed
EXECUTOR: frozenset[principals.Role] = frozenset({"executor"})
LEADER: frozenset[principals.Role] = frozenset({"leader"})
OPERATOR: frozenset[principals.Role] = frozenset({"operator"})
ADMIN: frozenset[principals.Role] = frozenset({"admin"})


# Who may call what, in one place; admin may call everything. Keyed by method
# and route template as web.ROUTES spells them; a test checks both agree.
PERMISSIONS: dict[tuple[str, str], frozenset[principals.Role]] = {
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
    ("GET", "/api/governance/spend/summary"): OPERATOR,
    # Holds: executors place, commit and release them; operators may read one.
    ("POST", "/api/governance/holds"): EXECUTOR,
    ("GET", "/api/governance/holds/{id}"): EXECUTOR | OPERATOR,
    ("POST", "/api/governance/holds/{id}/commit"): EXECUTOR,
    ("POST", "/api/governance/holds/{id}/release"): EXECUTOR,
    # Runs: executors start, end and report them; operators read them and set quotas.
    ("POST", "/api/governance/runs"): EXECUTOR,
    ("GET", "/api/governance/runs"): OPERATOR,
    ("GET", "/api/governance/runs/{id}"): EXECUTOR | OPERATOR,
    ("POST", "/api/governance/runs/{id}/end"): EXECUTOR,
    ("POST", "/api/governance/runs/{id}/events"): EXECUTOR,
    ("GET", "/api/tenants/{tenantId}/quota"): OPERATOR,
    ("PATCH", "/api/tenants/{tenantId}/quota"): OPERATOR,
    ("GET", "/api/governance/audit"): OPERATOR,
    ("GET", "/api/governance/audit/head"): OPERATOR,
    # Approvals: executors ask and re-attach, leaders read and decide;
    # sticky grants and the history are also an operator's to read and revoke.
    ("POST", "/api/governance/delegation-approval"): EXECUTOR,
    ("POST", "/api/tools/approvals"): EXECUTOR,
    ("GET", "/api/tools/approvals"): LEADER | OPERATOR,  # an operator's console reads it
    ("GET", "/api/tools/approvals/{id}"): EXECUTOR | LEADER,
    ("POST", "/api/tools/approvals/{id}/resolve"): LEADER,
    ("POST", "/api/tools/approvals/{id}/waive"): ADMIN,
    ("GET", "/api/tools/approvals/grants"): LEADER | OPERATOR,
    ("DELETE", "/api/tools/approvals/grants/{id}"): LEADER | OPERATOR,
    ("GET", "/api/approvals"): LEADER | OPERATOR,
    ("POST", "/api/approvals"): LEADER,
    ("GET", "/api/me"): EXECUTOR | LEADER | OPERATOR,  # any key: who am I
    ("GET", "/api/keys"): ADMIN,
    ("POST", "/api/keys"): ADMIN,
    ("DELETE", "/api/keys/{id}"): ADMIN,
    # The live stream; each key hears only what its role may read (core.events.READERS).
    ("GET", "/api/events"): LEADER | OPERATOR,
    # The console's static files: the page signs in with a key for every /api/ call.
    ("GET", "/console"): PUBLIC,
    ("GET", "/console/"): PUBLIC,
    ("GET", "/console/{name}"): PUBLIC,
    # The action gate's documents are an operator's to write, read and try out.
    ("GET", "/api/guardrails"): OPERATOR,
    ("POST", "/api/guardrails"): OPERATOR,
    ("POST", "/api/guardrails/evaluate"): OPERATOR,
    ("GET", "/api/guardrails/{id}"): OPERATOR,
    ("PATCH", "/api/guardrails/{id}"): OPERATOR,
    ("DELETE", "/api/guardrails/{id}"): OPERATOR,
    ("GET", "/api/guardrails/{id}/versions"): OPERATOR,
    ("POST", "/api/guardrails/{id}/versions/{n}/rollback"): OPERATOR,
    ("GET", "/api/tools"): OPERATOR,
    ("POST", "/api/tools"): OPERATOR,
    ("POST", "/api/tools/{name}/deprecate"): OPERATOR,
    ("POST", "/api/tools/{name}/archive"): OPERATOR,
    ("GET", "/api/tool-policies"): OPERATOR,
    ("POST", "/api/tool-policies"): OPERATOR,
    ("DELETE", "/api/tool-policies/{id}"): OPERATOR,
    ("GET", "/api/role-policy-overrides"): OPERATOR,
    ("POST", "/api/role-policy-overrides"): OPERATOR,
    ("DELETE", "/api/role-policy-overrides/{id}"): OPERATOR,
    # Authorize: executors ask; operators read receipts, set the approval settings and read
    # the reports; both may ask the enforcement check.
    ("POST", "/api/governance/authorize"): EXECUTOR,
    ("GET", "/api/governance/receipts/{id}"): OPERATOR,
    ("GET", "/api/governance/settings"): OPERATOR,
    ("PATCH", "/api/governance/settings"): OPERATOR,
    ("GET", "/api/governance/enforcement/check"): EXECUTOR | OPERATOR,
    ("GET", "/api/governance/report"): OPERATOR,
    ("GET", "/api/governance/approval-stats"): OPERATOR,
}


def may_call(principal: principals.Principal, method: str, route: str) -> bool:
    allowed = PERMISSIONS.get((method, route))
    if allowed is None:
        return principal.role == "admin"  # a route missing from the table is closed
    return not allowed or principal.role == "admin" or principal.role in allowed


def is_public(method: str, route: str) -> bool:
    return PERMISSIONS.get((method, route)) == PUBLIC


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key from `Authorization: Bearer <key>`, else from `X-API-Key: <key>`."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return x_api_key.strip() if x_api_key and x_api_key.strip() else None


class KeyCache:
    """Principals by key hash for `ttl_ms`, so the spend path does not read the keys table.

    A key revoked in the database stops working within `ttl_ms`; an expired one at
    its expiry, also from the cache.
    """

    def __init__(self, ttl_ms: int) -> None:
        self._ttl_ms = ttl_ms
        self._entries: dict[str, tuple[principals.Principal, int]] = {}
        # Hashes found unknown, until when: a flood repeating a bad key reads nothing. A key
        # is shown only when it is made, so no one presents it before it exists.
        self._unknown: dict[str, int] = {}

    def get(self, key_hash: str, now: int) -> principals.Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None or entry[1] <= now or not entry[0].usable(now):
            return None
        return entry[0]

    def put(self, key_hash: str, principal: principals.Principal, now: int) -> None:
        if len(self._entries) > 10_000:  # bounded: keys are few, guesses are many
            self._entries.clear()
        self._entries[key_hash] = (principal, now + self._ttl_ms)


    def unknown(self, key_hash: str, now: int) -> bool:
        until = self._unknown.get(key_hash)
        return until is not None and until > now

    def put_unknown(self, key_hash: str, now: int) -> None:
        if len(self._unknown) > 10_000:
            self._unknown.clear()
        self._unknown[key_hash] = now + self._ttl_ms

class KeyUsage:
    """When each key was last used, kept in memory and written at most once a flush period.

    Noting a use is a dict store (no write per request); `take()` hands the uses
    since the last flush to one store write, so lastUsedAt lags by up to a period.
    """

    def __init__(self) -> None:
        self._used: dict[str, int] = {}

    def note(self, key_id: str, now: int) -> None:
        self._used[key_id] = now

    def take(self) -> dict[str, int]:
        used, self._used = self._used, {}
        return used

    def give_back(self, used: dict[str, int]) -> None:
        """Uses a failed flush did not write: kept for the next one, unless newer."""
        for key_id, at in used.items():
            if self._used.get(key_id, 0) < at:
                self._used[key_id] = at
