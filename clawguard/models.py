"""Pydantic models: request bodies as the API takes them and domain objects as it answers.

Python names are snake_case; the JSON names are the seeds' camelCase aliases.
Requests are strict (a string is not a number, 10.5 is not an integer) and
refuse unknown fields, so a typo is an error rather than a silent default.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

import pydantic
from pydantic.alias_generators import to_camel

from clawguard import money

Scope = Literal["agent", "mission", "team", "tenant"]
SCOPES: tuple[Scope, ...] = ("agent", "mission", "team", "tenant")
Status = money.Status
Mode = money.Mode
EventType = Literal[
    "install", "approval", "tool_call", "budget", "cap_hit", "verification", "circuit_break"
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]

Ident = Annotated[str, pydantic.StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, pydantic.StringConstraints(max_length=10_000)]
Cents = Annotated[int, pydantic.Field(gt=0, le=money.MAX_CENTS)]
Count = Annotated[int, pydantic.Field(ge=0, le=2**53)]


def _decimal_cents(value: object) -> Decimal:
    money.cents_to_micros(value)  # the one place amounts are checked
    return Decimal(value)  # type: ignore[arg-type]


SpendCents = Annotated[
    Decimal,
    pydantic.PlainValidator(_decimal_cents),
    pydantic.PlainSerializer(float, return_type=float),
    pydantic.WithJsonSchema({"type": "number", "minimum": 0, "maximum": money.MAX_CENTS}),
]


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, frozen=True
    )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def to_json_bytes(self) -> bytes:
        """Serialised by pydantic-core: several times faster than json.dumps(to_json())."""
        return self.__pydantic_serializer__.to_json(self, by_alias=True)


class Request(Model):
    """A body as a client sends it: camelCase names only, strict types, no unknown fields."""

    model_config = pydantic.ConfigDict(strict=True, extra="forbid", validate_by_name=False)


class Query(Model):
    """Query parameters: strings in, unknown parameters ignored (the seeds' clients send extras)."""

    model_config = pydantic.ConfigDict(strict=True, extra="ignore", validate_by_name=False)


# --- parsing query strings ------------------------------------------------

_INTEGER = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only; str.isdigit() takes '\u00b2'
INTEGER_BOUND = 10**18 - 1  # 18 digits: inside SQLite's int64 either way
AUDIT_LIMIT_DEFAULT, AUDIT_LIMIT_MAX = 200, 1000
HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX = 50, 200


def _query_integer(value: object) -> object:
    if isinstance(value, str):
        if not _INTEGER.fullmatch(value):
            raise ValueError("must be an integer")
        return int(value)
    return value


def _blank_is_none(value: object) -> object:
    return value or None


def _audit_limit(value: object) -> int:
    """Clawboo's lenient limit: non-numeric, zero or negative means the default."""
    text = value if isinstance(value, str) else ""
    if not re.fullmatch(r"[0-9]+", text) or not text.strip("0"):
        return AUDIT_LIMIT_DEFAULT
    digits = text.lstrip("0")
    return AUDIT_LIMIT_MAX if len(digits) > 9 else min(int(digits), AUDIT_LIMIT_MAX)


def _history_limit(value: object) -> int:
    """Clawboo's history limit: clamped to [1, max]; non-numeric means the default."""
    if not isinstance(value, str) or not _INTEGER.fullmatch(value):
        return HISTORY_LIMIT_DEFAULT
    return max(1, min(int(value), HISTORY_LIMIT_MAX))


def _known_event_type(value: object) -> object:
    return value if value in EVENT_TYPES else None  # unknown: ignored, not refused (SPEC 8)


QueryInt = Annotated[
    int, pydantic.BeforeValidator(_query_integer),
    pydantic.WithJsonSchema({"type": "integer", "minimum": -INTEGER_BOUND,
                             "maximum": INTEGER_BOUND}),
]
QueryWaitMs = Annotated[
    int, pydantic.BeforeValidator(_query_integer), pydantic.Field(ge=0),
    pydantic.WithJsonSchema({"type": "integer", "minimum": 0, "maximum": INTEGER_BOUND}),
]
# Lenient parameters take any text, so the document says "string" and what it means.
# An id is 1..200 characters (SPEC 11), so a longer filter is refused; a blank one is no filter.
AgentFilter = Annotated[
    Annotated[str, pydantic.StringConstraints(max_length=200)] | None,
    pydantic.BeforeValidator(_blank_is_none),
    pydantic.WithJsonSchema({"type": "string", "maxLength": 200}),
]
AuditLimit = Annotated[int, pydantic.BeforeValidator(_audit_limit), pydantic.WithJsonSchema(
    {"type": "string", "description": f"1..{AUDIT_LIMIT_MAX}; anything else means "
     f"{AUDIT_LIMIT_DEFAULT}"})]
HistoryLimit = Annotated[int, pydantic.BeforeValidator(_history_limit), pydantic.WithJsonSchema(
    {"type": "string", "description": f"clamped to 1..{HISTORY_LIMIT_MAX}; non-numeric means "
     f"{HISTORY_LIMIT_DEFAULT}"})]
EventTypeFilter = Annotated[str | None, pydantic.BeforeValidator(_known_event_type),
                            pydantic.WithJsonSchema({"type": "string", "description":
                                                     "an unknown type is ignored"})]


# --- requests -------------------------------------------------------------


class BudgetSet(Request):
    scope: Scope
    scope_id: Ident
    limit_usd_cents: Cents
    mode: Mode | None = None


class BudgetResume(Request):
    grace_usd_cents: Cents | None = None


class BudgetKey(Request):
    """The path of one budget: /budgets/{scope}/{scopeId}."""

    scope: Scope
    scope_id: Ident


class ItemId(Request):
    """The path of one approval or grant: .../{id}."""

    id: Ident


class BudgetFilter(Query):
    scope: Scope | None = None
    status: Status | None = None


class AuditFilter(Query):
    agent_id: AgentFilter = None
    event_type: EventTypeFilter = None
    since: QueryInt | None = None
    limit: AuditLimit = AUDIT_LIMIT_DEFAULT


class ApprovalWait(Query):
    wait_ms: QueryWaitMs | None = None


class GrantFilter(Query):
    agent_id: AgentFilter = None


class HistoryFilter(Query):
    agent_id: AgentFilter = None
    limit: HistoryLimit = HISTORY_LIMIT_DEFAULT


class ScopeIds(Request):
    # The document says what _one_scope checks: at least one id, and it not null.
    model_config = pydantic.ConfigDict(json_schema_extra={"anyOf": [
        {"required": [name], "properties": {name: {"type": "string"}}}
        for name in ("agentId", "missionId", "teamId", "tenantId")
    ]})

    agent_id: Ident | None = None
    mission_id: Ident | None = None
    team_id: Ident | None = None
    tenant_id: Ident | None = None

    def named(self) -> list[tuple[Scope, str]]:
        """The named scopes in kill-switch order: agent -> mission -> team -> tenant."""
        ids = (self.agent_id, self.mission_id, self.team_id, self.tenant_id)
        return [(scope, sid) for scope, sid in zip(SCOPES, ids, strict=True) if sid is not None]

    @pydantic.model_validator(mode="after")
    def _one_scope(self) -> ScopeIds:
        if self.agent_id is self.mission_id is self.team_id is self.tenant_id is None:
            raise ValueError("at least one of agentId, missionId, teamId, tenantId is required")
        return self


class SpendRequest(ScopeIds):
    cost_usd_cents: SpendCents
    idempotency_key: Ident | None = None
    task_id: Ident | None = None
    model: Ident | None = None
    input_tokens: Count | None = None
    output_tokens: Count | None = None

    @functools.cached_property
    def cost_micros(self) -> int:
        return money.cents_to_micros(self.cost_usd_cents)


# --- domain objects -------------------------------------------------------


class Budget(Model):
    id: str
    scope: Scope
    scope_id: str
    limit_usd_cents: int
    spent_usd_cents: int
    spent_usd_micros: int
    held_usd_cents: int
    status: Status
    mode: Mode
    created_at: int
    updated_at: int


class ScopeState(Model):
    """One budgeted scope as a spend or a preflight saw it."""

    scope: Scope
    scope_id: str
    status: Status
    mode: Mode
    spent_usd_cents: int
    spent_usd_micros: int
    limit_usd_cents: int
    crossed: money.Crossed = "none"


class SpendRecord(Model):
    id: int
    cost_usd_micros: int
    duplicate: bool


SCOPE_STATES = pydantic.TypeAdapter(list[ScopeState])  # the replay copy stored with a spend


class SpendCharged(Model):
    """What the store did with one spend: the ledger row and each budgeted scope after it."""

    spend: SpendRecord
    scopes: list[ScopeState]


class SpendOutcome(Model):
    spend: SpendRecord
    stop: bool
    stop_reason: str | None
    scopes: list[ScopeState]


class Preflight(Model):
    allowed: bool
    reason: str | None
    scopes: list[ScopeState]


class Resumed(Model):
    budget: Budget
    will_repause: bool


class AuditEntry(Model):
    id: int
    event_type: str
    action: str
    agent_id: str | None
    details: dict[str, Any]
    created_at: int
    prev_hash: str
    hash: str


class AuditHead(Model):
    """The latest audit row: anchor it elsewhere to prove later that no tail was cut."""

    seq: int
    hash: str

# --- approvals (SPEC section 4) -------------------------------------------------

Decision = Literal["allow_once", "allow_always", "deny"]
DECISIONS: tuple[str, ...] = Decision.__args__  # type: ignore[attr-defined]
ApprovalStatus = Literal["pending", "allow_once", "allow_always", "deny", "expired"]
# What a waiting caller hears: a decision, the row's expiry, or its own deadline.
Resolution = Literal["allow_once", "allow_always", "deny", "expired", "timeout"]
HistoryAction = Literal["allow-once", "allow-always", "deny"]
WaitMs = Annotated[int, pydantic.Field(ge=0, le=2**53)]
Kind = Annotated[
    str, pydantic.StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
]
JSON_MAX_DEPTH = 32


def _storable(value: Any, depth: int = 0) -> None:
    """Free-form JSON that can be masked and stored: bounded nesting, text that is UTF-8."""
    if depth > JSON_MAX_DEPTH:
        raise ValueError(f"is nested deeper than {JSON_MAX_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("holds text that is not valid Unicode") from exc
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key, depth + 1)
            _storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _storable(item, depth + 1)


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    _storable(value)
    return value


JsonObject = Annotated[dict[str, Any], pydantic.AfterValidator(_json_object)]


class DelegationApprovalRequest(Request):
    """Clawboo's delegation handshake; `tenantId` and `waitMs` are clawguard's additions."""

    leader_agent_id: Ident
    kind: Kind = "code"
    target_agent_name: Ident | None = None
    task: Text | None = None
    task_id: Ident | None = None
    tenant_id: Ident | None = None
    wait_ms: WaitMs | None = None


class ToolApprovalRequest(Request):
    tool_name: Ident
    agent_id: Ident
    args: JsonObject | None = None
    reason: Text | None = None
    task_id: Ident | None = None
    tenant_id: Ident | None = None
    wait_ms: WaitMs | None = None


class ApprovalResolve(Request):
    decision: Decision
    resolved_by: Ident | None = None


class HistoryAppend(Request):
    agent_id: Ident
    action: HistoryAction
    tool_name: Ident
    details: JsonObject | None = None


class NewApproval(Model):
    """A pending row as the handshake asks the store to open it (masked already)."""

    id: str
    tool_name: str
    agent_id: str
    args_summary: str | None
    reason: str | None
    task_id: str | None
    tenant_id: str | None
    requested_by_key: str | None = pydantic.Field(default=None, exclude=True)


class Approval(Model):
    id: str
    tool_name: str
    agent_id: str
    args_summary: str | None
    reason: str | None
    status: ApprovalStatus
    task_id: str | None
    tenant_id: str | None
    created_at: int
    expires_at: int
    resolved_at: int | None
    resolved_by: str | None

    def as_of(self, now: int) -> Approval:
        """The row as it acts at `now`: pending past its expiry reads as expired, everywhere.

        The reaper writes the same values later (resolvedAt = expiresAt), so a
        row reads the same before and after its sweep.
        """
        if self.status == "pending" and now >= self.expires_at:
            return self.model_copy(update={"status": "expired", "resolved_at": self.expires_at})
        return self


class Grant(Model):
    """A sticky allow_always for (agentId, toolName); live while unrevoked and unexpired."""

    id: str
    agent_id: str
    tool_name: str
    approval_id: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    revoked_by: str | None


class Opened(Model):
    """What the store did with a request: short-circuited by a live grant, or a pending row."""

    grant: Grant | None
    approval: Approval | None


class Handshake(Model):
    """The answer of the blocking routes: `{resolution, approvalId}`."""

    resolution: Resolution
    approval_id: str | None = None

    # The sticky short-circuit answers Clawboo's bare {"resolution": "allow_always"}.
    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_json_bytes(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self, by_alias=True, exclude_none=True)


class HistoryRecord(Model):
    id: int
    agent_id: str
    action: HistoryAction
    tool_name: str
    details: str | None  # JSON text, as Clawboo stores it
    created_at: int


# --- response envelopes (the JSON the routes answer, exactly) ----------------------


class Ok(Model):
    ok: Literal[True] = True


class Error(Model):
    """The one error body (SPEC 9); web.error_response writes it."""

    error: str
    message: str
    details: Any = None


class BudgetList(Model):
    budgets: list[Budget]


class BudgetOne(Model):
    budget: Budget


class AuditList(Model):
    audit: list[AuditEntry]


class ApprovalList(Ok):
    approvals: list[Approval]


class ApprovalOne(Ok):
    approval: Approval


class GrantList(Ok):
    grants: list[Grant]


class GrantOne(Ok):
    grant: Grant


class HistoryList(Ok):
    records: list[HistoryRecord]


class HistoryOne(Ok):
    record: HistoryRecord
