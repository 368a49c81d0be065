"""The answers of the clawguard API as the client reads them: frozen pydantic models.

They mirror the JSON the daemon's routes answer, in snake_case (the JSON is
camelCase). They are the client's own, so the client never imports the
daemon. Fields a newer daemon adds are kept, not refused (`extra="allow"`):
an older client still reads its answers, and `to_json()` gives them back whole.
Statuses are read as plain strings for the same reason; the Literal types
below are what this client knows how to send.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from pydantic.alias_generators import to_camel

Scope = Literal["agent", "mission", "team", "tenant"]
SCOPES: tuple[Scope, ...] = ("agent", "mission", "team", "tenant")
Status = Literal["active", "soft_capped", "paused"]
STATUSES: tuple[Status, ...] = ("active", "soft_capped", "paused")
Mode = Literal["warn", "cap"]
MODES: tuple[Mode, ...] = ("warn", "cap")
EventType = Literal[
    "install", "approval", "tool_call", "budget", "cap_hit", "verification", "circuit_break"
]
EVENT_TYPES: tuple[EventType, ...] = (
    "install", "approval", "tool_call", "budget", "cap_hit", "verification", "circuit_break"
)
Decision = Literal["allow_once", "allow_always", "deny"]
DECISIONS: tuple[Decision, ...] = ("allow_once", "allow_always", "deny")
VoteDecision = Literal["allow_once", "allow_always", "deny", "conditional"]
VOTE_DECISIONS: tuple[VoteDecision, ...] = ("allow_once", "allow_always", "deny", "conditional")
HistoryAction = Literal["allow-once", "allow-always", "deny"]
# What an allow_always grants: the tool with any arguments, or the request's arguments only.
GrantScope = Literal["tool", "args"]
GRANT_SCOPES: tuple[GrantScope, ...] = ("tool", "args")
ALLOWING = frozenset({"allow_once", "allow_always", "approved"})  # approved: with stages


class Record(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, frozen=True,
        extra="allow",
    )

    def to_json(self) -> dict[str, Any]:
        """The JSON as the daemon sent it, camelCase, unknown fields included."""
        return self.model_dump(mode="json", by_alias=True)


class Budget(Record):
    id: str
    scope: str
    scope_id: str
    tenant_id: str | None = None
    limit_usd_cents: int
    spent_usd_cents: int
    spent_usd_micros: int
    held_usd_cents: int = 0
    status: str
    mode: str
    created_at: int
    updated_at: int
    held_usd_micros: int = 0
    window: str = "none"
    timezone: str = "UTC"
    window_start: int | None = None
    window_end: int | None = None


class ScopeState(Record):
    """One budgeted scope as a spend, a preflight or a hold saw it."""

    scope: str
    scope_id: str
    status: str
    mode: str
    spent_usd_cents: int
    spent_usd_micros: int
    limit_usd_cents: int
    crossed: str = "none"
    window_start: int | None = None
    window_end: int | None = None


class HeldScope(ScopeState):
    """A scope as a preflight or a hold sees it: with what live holds reserve on it."""

    held_usd_micros: int = 0


class Hold(Record):
    """A reservation under the caps (README: Holds): held, committed, released or expired."""

    id: str
    agent_id: str | None = None
    mission_id: str | None = None
    team_id: str | None = None
    tenant_id: str | None = None
    run_id: str | None = None
    amount_usd_micros: int
    status: str
    created_at: int
    expires_at: int
    resolved_at: int | None = None
    spend_id: int | None = None
    scopes: list[HeldScope]


class SpendRecord(Record):
    id: int
    cost_usd_micros: int
    duplicate: bool


class SpendOutcome(Record):
    spend: SpendRecord
    stop: bool
    stop_reason: str | None
    scopes: list[ScopeState]


class SpendGroup(Record):
    """One group of the spend summary; `key` None gathers spends that do not name it."""

    key: str | None
    spent_usd_micros: int
    spends: int
    input_tokens: int
    output_tokens: int


SpendGrouping = Literal["agent", "mission", "team", "tenant", "model"]


class ApiKey(Record):
    """An API key as an admin lists it: never its value."""

    id: str
    name: str
    role: str
    leads: list[str] | None
    groups: list[str] | None
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None  # may lag its last use by up to a minute


class Me(Record):
    """The calling key (GET /api/me): never its value."""

    key_id: str
    name: str
    role: str
    leads: list[str] | None
    groups: list[str] | None
    expires_at: int | None


class KeyCreated(Record):
    """A new key: `key` is its value, shown in this answer only."""

    api_key: ApiKey
    key: str


class Preflight(Record):
    allowed: bool
    reason: str | None
    scopes: list[HeldScope]


class Resumed(Record):
    budget: Budget
    will_repause: bool


class AuditEntry(Record):
    id: int
    event_type: str
    action: str
    agent_id: str | None
    details: dict[str, Any]
    created_at: int
    prev_hash: str
    hash: str


class AuditHead(Record):
    """The latest audit row: anchor it elsewhere to prove later that no tail was cut."""

    seq: int
    hash: str


class Handshake(Record):
    """The answer of the blocking approval routes: `{resolution, approvalId}`."""

    resolution: str
    approval_id: str | None = None


def _absent(value: object) -> bool:
    return value is None


class Vote(Record):
    key_id: str
    key_name: str
    decision: str
    comments: str | None = None
    conditions: str | None = None
    voted_at: int


class Gate(Record):
    group: str | None = None
    count: int
    votes: list[Vote] = []


class Stage(Record):
    name: str
    gates: list[Gate]
    status: str


class Waiver(Record):
    reason: str
    key_id: str
    key_name: str
    waived_at: int


class Approval(Record):
    """`stages`, `sticky` and `waiver` only on approvals with stages (status `approved`
    once every gate has its count or an admin waived it)."""

    id: str
    tool_name: str
    agent_id: str
    args_summary: str | None
    reason: str | None
    status: str
    task_id: str | None
    tenant_id: str | None
    created_at: int
    expires_at: int
    resolved_at: int | None
    resolved_by: str | None
    # Absent from the JSON of approvals without stages, and so from to_json().
    stages: list[Stage] | None = pydantic.Field(default=None, exclude_if=_absent)
    sticky: bool | None = pydantic.Field(default=None, exclude_if=_absent)
    waiver: Waiver | None = pydantic.Field(default=None, exclude_if=_absent)


class ApprovalPage(Record):
    """A page of the pending queue, newest first; `next_cursor` asks for the next one (None:
    this was the last)."""

    approvals: list[Approval]
    next_cursor: str | None = None


class Grant(Record):
    """A sticky allow_always for the tool (`grant_scope` tool: any arguments) or for the
    arguments with `args_fingerprint` only (args); live while unrevoked and unexpired."""

    id: str
    agent_id: str
    tool_name: str
    grant_scope: str = "tool"
    args_fingerprint: str | None = None
    args_summary: str | None = None
    approval_id: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    revoked_by: str | None


class HistoryRecord(Record):
    id: int
    agent_id: str
    action: str
    tool_name: str
    details: str | None  # JSON text, as Clawboo stores it
    created_at: int


class Run(Record):
    id: str
    agent_id: str
    status: str  # running | ended | expired | tripped
    depth: int
    parent_run_id: str | None
    started_at: int
    lease_expires_at: int
    ended_at: int | None


class Trip(Record):
    reason: str
    detail: str
    counters: dict[str, int]


class RunEvents(Record):
    run: Run
    tripped: Trip | None = None


class Quota(Record):
    plan: str
    limits: dict[str, int]
    overrides: dict[str, int]
    effective: dict[str, int]


class Verdict(Record):
    """POST /api/governance/authorize: ALLOW, BLOCK or PENDING, and the receipt that keeps it.

    `approval` is `{approvalId, status, stages}` when an approval was opened;
    `obligations` are what the step must honour (`max_response_size_kb`, the
    conditions of a conditional approval)."""

    decision: str
    receipt_id: str
    reasons: list[str]
    obligations: dict[str, Any] = {}
    approval: dict[str, Any] | None = None
    policies: list[dict[str, Any]] = []
    hold_id: str | None = None

    @property
    def allowed(self) -> bool:
        return self.decision == "ALLOW"
