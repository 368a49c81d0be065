"""The HTTP-only shapes: query strings, path parameters and the response envelopes."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Literal

import pydantic

from clawguard.core import commands, principals, records


class Query(records.Model):
    """Query parameters: strings in, unknown parameters ignored (the seeds' clients send extras)."""

    model_config = pydantic.ConfigDict(strict=True, extra="ignore", validate_by_name=False)


_INTEGER = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only; str.isdigit() takes '\u00b2'
INTEGER_BOUND = 10**18 - 1  # 18 digits: inside SQLite's int64 either way
AUDIT_LIMIT_DEFAULT, AUDIT_LIMIT_MAX = 200, 1000
HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX = 50, 200
PENDING_LIMIT_DEFAULT, PENDING_LIMIT_MAX = 100, 1000


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


def _pending_limit(value: object) -> object:
    """An integer of at least 1; more than the most a page holds is that most."""
    number = _query_integer(value)
    return min(number, PENDING_LIMIT_MAX) if isinstance(number, int) else number


def pending_cursor(key: records.PendingKey) -> str:
    """The opaque `nextCursor` of a page of the pending queue."""
    return base64.urlsafe_b64encode(f"{key.created_at}.{key.id}".encode()).decode().rstrip("=")


def pending_key(cursor: str | None) -> records.PendingKey | None:
    """The page boundary a `cursor` names; ValueError when it is not one of ours."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError) as exc:
        raise ValueError("is not a cursor this API gave") from exc
    created_at, _, approval_id = text.partition(".")
    if not _INTEGER.fullmatch(created_at) or not approval_id:
        raise ValueError("is not a cursor this API gave")
    return records.PendingKey(int(created_at), approval_id)


def _a_cursor(value: str | None) -> str | None:
    pending_key(value)
    return value


def _known_event_type(value: object) -> object:
    return value if value in records.EVENT_TYPES else None  # unknown: ignored, not refused


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
# An id is 1..200 characters, so a longer filter is refused; a blank one is no filter.
AgentFilter = Annotated[
    Annotated[str, pydantic.StringConstraints(max_length=200)] | None,
    pydantic.BeforeValidator(_blank_is_none),
    pydantic.WithJsonSchema({"type": "string", "maxLength": 200}),
]
AuditLimit = Annotated[int, pydantic.BeforeValidator(_audit_limit), pydantic.WithJsonSchema(
    {"type": "string", "description": f"1..{AUDIT_LIMIT_MAX}; anything else means "
     f"{AUDIT_LIMIT_DEFAULT}"})]


PendingLimit = Annotated[
    int, pydantic.BeforeValidator(_pending_limit), pydantic.Field(ge=1),
    pydantic.WithJsonSchema({"type": "integer", "minimum": 1, "description":
                             f"at most {PENDING_LIMIT_MAX} (more asks for that many)"}),
]
PageCursor = Annotated[
    Annotated[str, pydantic.StringConstraints(max_length=400)] | None,
    pydantic.AfterValidator(_a_cursor),
    pydantic.WithJsonSchema({"type": "string", "description": "a nextCursor as answered"}),
]


HistoryLimit = Annotated[int, pydantic.BeforeValidator(_history_limit), pydantic.WithJsonSchema(
    {"type": "string", "description": f"clamped to 1..{HISTORY_LIMIT_MAX}; non-numeric means "
     f"{HISTORY_LIMIT_DEFAULT}"})]


EventTypeFilter = Annotated[str | None, pydantic.BeforeValidator(_known_event_type),
                            pydantic.WithJsonSchema({"type": "string", "description":
                                                     "an unknown type is ignored"})]


class BudgetResume(commands.Request):
    grace_usd_cents: commands.Cents | None = None


class BudgetKey(commands.Request):
    """The path of one budget: /budgets/{scope}/{scopeId}."""

    scope: records.Scope
    scope_id: commands.Ident


class ItemId(commands.Request):
    """The path of one approval or grant: .../{id}."""

    id: commands.Ident


RUNS_LIMIT_DEFAULT, RUNS_LIMIT_MAX = 100, 500


def _runs_limit(value: object) -> object:
    value = _query_integer(value)
    if isinstance(value, int) and not 1 <= value <= RUNS_LIMIT_MAX:
        raise ValueError(f"must be between 1 and {RUNS_LIMIT_MAX}")
    return value


RunsLimit = Annotated[
    int, pydantic.BeforeValidator(_runs_limit),
    pydantic.WithJsonSchema({"type": "integer", "minimum": 1, "maximum": RUNS_LIMIT_MAX}),
]


class RunFilter(Query):
    status: records.RunStatus | None = None
    agent_id: AgentFilter = None
    limit: RunsLimit = RUNS_LIMIT_DEFAULT


class TenantKey(commands.Request):
    """The path of a tenant's quota: /api/tenants/{tenantId}/quota."""

    tenant_id: commands.Ident


QuotaValue = Annotated[int | None, pydantic.Field(description="null removes the override")]


class QuotaPatch(commands.Request):
    """Overrides to set; keys as seed 000 spells them (snake_case), null removes one."""

    model_config = pydantic.ConfigDict(alias_generator=None)

    runs_per_hour: QuotaValue = None
    concurrent_runs: QuotaValue = None

    def patch(self) -> dict[str, object]:
        return {key: getattr(self, key) for key in sorted(self.model_fields_set)}


class RunList(records.Model):
    runs: list[records.Run]


class BudgetFilter(Query):
    scope: records.Scope | None = None
    status: records.Status | None = None


class AuditFilter(Query):
    agent_id: AgentFilter = None
    event_type: EventTypeFilter = None
    since: QueryInt | None = None
    limit: AuditLimit = AUDIT_LIMIT_DEFAULT


class SpendSummaryQuery(Query):
    """since and until are epoch ms: spends at or after since, and before until."""

    group_by: records.SpendGrouping
    since: QueryInt | None = None
    until: QueryInt | None = None


class ApprovalWait(Query):
    wait_ms: QueryWaitMs | None = None


class GrantFilter(Query):
    agent_id: AgentFilter = None


class PendingFilter(Query):
    limit: PendingLimit = PENDING_LIMIT_DEFAULT
    cursor: PageCursor = None
    # `me`: only the approvals the caller's key could vote on now.
    reviewer: Literal["me"] | None = None


class HistoryFilter(Query):
    agent_id: AgentFilter = None
    limit: HistoryLimit = HISTORY_LIMIT_DEFAULT


NonEmptyText = Annotated[str, pydantic.StringConstraints(min_length=1, max_length=10_000)]


class ApprovalResolve(commands.Request):
    """A decision, or a vote on an approval with stages: `conditional` approves with
    `conditions` (required), which the executor receives as an obligation."""

    decision: records.VoteDecision
    resolved_by: commands.Ident | None = None
    # What an allow_always grants: the tool with any arguments, or these arguments only.
    grant_scope: records.GrantScope = "tool"
    comments: commands.Text | None = None
    conditions: NonEmptyText | None = None

    @pydantic.model_validator(mode="after")
    def _conditions_with_conditional(self) -> ApprovalResolve:
        if (self.decision == "conditional") != (self.conditions is not None):
            raise ValueError("conditions are required with decision conditional, and only then")
        return self


class ApprovalWaive(commands.Request):
    reason: NonEmptyText  # why the gates are waived: required, never blank

    @pydantic.field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("reason must not be blank")
        return value


class Ok(records.Model):
    ok: Literal[True] = True


class Error(records.Model):
    """The one error body; middleware.error_response writes it (README: Errors)."""

    error: str
    message: str
    details: Any = None


class SpendSummary(records.Model):
    groups: list[records.SpendGroup]


class KeyCreate(commands.Request):
    role: principals.Role
    name: commands.Ident | None = None
    leads: list[commands.Ident] | None = pydantic.Field(default=None, max_length=1000)
    groups: list[commands.Ident] | None = pydantic.Field(default=None, max_length=1000)
    expires_in_ms: Annotated[int, pydantic.Field(gt=0, le=100 * 365 * 86_400_000)] | None = None


class Me(records.Model):
    """The calling key as GET /api/me shows it: never its value."""

    key_id: str
    name: str
    role: str
    leads: list[str] | None
    groups: list[str] | None
    expires_at: int | None


class KeyList(records.Model):
    keys: list[records.ApiKey]


class KeyOne(records.Model):
    api_key: records.ApiKey


class KeyCreated(KeyOne):
    """The one answer that holds the key itself: it is shown here, once, and never again."""

    key: str


class BudgetList(records.Model):
    budgets: list[records.Budget]


class BudgetOne(records.Model):
    budget: records.Budget


class AuditList(records.Model):
    audit: list[records.AuditEntry]


class ApprovalList(Ok):
    approvals: list[records.Approval]
    next_cursor: str | None = None  # null on the last page


class ApprovalOne(Ok):
    approval: records.Approval


class GrantList(Ok):
    grants: list[records.Grant]


class GrantOne(Ok):
    grant: records.Grant


class HistoryList(Ok):
    records: list[records.HistoryRecord]


class HistoryOne(Ok):
    record: records.HistoryRecord

