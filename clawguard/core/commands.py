"""What callers ask the domain to do: validated requests (strict types, no unknown fields).

A string is not a number and 10.5 is not an integer, so a typo is an error rather
than a silent default. Amounts are read as Decimal and checked by core.money.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Annotated, Any, Literal

import pydantic

from clawguard.core import money, records, windows

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


class Request(records.Model):
    """A body as a client sends it: camelCase names only, strict types, no unknown fields."""

    model_config = pydantic.ConfigDict(strict=True, extra="forbid", validate_by_name=False)


def _timezone(name: str) -> str:
    windows.zone(name)  # ValueError naming it when unknown
    return name


Timezone = Annotated[
    str, pydantic.StringConstraints(min_length=1, max_length=64),
    pydantic.AfterValidator(_timezone),
]


class BudgetSet(Request):
    scope: records.Scope
    scope_id: Ident
    limit_usd_cents: Cents
    mode: records.Mode | None = None
    # Omitted on an existing row: kept, like mode; null: the row belongs to no tenant.
    tenant_id: Ident | None = None
    # The calendar window spend counts in, and its IANA zone; omitted on an existing row:
    # kept, like mode (a new row: "none", "UTC").
    window: windows.Window | None = None
    timezone: Timezone | None = None


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
    # The run this is part of: preflight refuses a tripped run's step; a spend records it.
    run_id: Ident | None = None

    def named(self) -> list[tuple[records.Scope, str]]:
        """The named scopes in kill-switch order: agent -> mission -> team -> tenant."""
        ids = (self.agent_id, self.mission_id, self.team_id, self.tenant_id)
        return [
            (scope, sid) for scope, sid in zip(records.SCOPES, ids, strict=True) if sid is not None
        ]

    @pydantic.model_validator(mode="after")
    def _one_scope(self) -> ScopeIds:
        if self.agent_id is self.mission_id is self.team_id is self.tenant_id is None:
            raise ValueError("at least one of agentId, missionId, teamId, tenantId is required")
        return self


class SpendRequest(ScopeIds):
    # Without it the daemon prices the spend from `model` and the token counts
    # (core.prices, in services.spending); given, it always wins.
    cost_usd_cents: SpendCents | None = None
    idempotency_key: Ident | None = None
    task_id: Ident | None = None
    model: Ident | None = None
    input_tokens: Count | None = None
    output_tokens: Count | None = None

    @functools.cached_property
    def cost_micros(self) -> int:
        """What the spend costs: the caller's amount, or the priced one (services.spending)."""
        return money.cents_to_micros(self.cost_usd_cents)

    @property
    def given_micros(self) -> int | None:
        """The amount as the caller sent it; None when the daemon is to price the spend."""
        return None if self.cost_usd_cents is None else self.cost_micros

    def priced(self, micros: int) -> SpendRequest:
        """This spend at a cost the daemon worked out (exact: micros are 1/10,000 cent)."""
        return self.model_copy(update={"cost_usd_cents": Decimal(micros).scaleb(-4)})


HOLD_TTL_MAX_MS = 24 * 3_600_000


class HoldRequest(ScopeIds):
    """Reserve an estimate on the named scopes (README: Holds)."""

    amount_usd_cents: SpendCents
    ttl_ms: Annotated[int, pydantic.Field(gt=0, le=HOLD_TTL_MAX_MS)] | None = None
    idempotency_key: Ident

    @functools.cached_property
    def amount_micros(self) -> int:
        return money.cents_to_micros(self.amount_usd_cents)


class HoldCommit(Request):
    """The actual cost of a held step, charged as a spend to the hold's scopes."""

    cost_usd_cents: SpendCents
    task_id: Ident | None = None
    model: Ident | None = None
    input_tokens: Count | None = None
    output_tokens: Count | None = None


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


class HistoryAppend(Request):
    agent_id: Ident
    action: records.HistoryAction
    tool_name: Ident
    details: JsonObject | None = None


class RunStart(Request):
    agent_id: Ident
    mission_id: Ident | None = None
    team_id: Ident | None = None
    tenant_id: Ident | None = None
    parent_run_id: Ident | None = None
    idempotency_key: Ident | None = None


Timestamp = Annotated[int, pydantic.Field(ge=0, le=2**53)]
RunEventKind = Literal["tool-call", "tool-result", "cost", "policy-denied"]
RUN_EVENTS_MAX = 256


class RunEvent(Request):
    kind: RunEventKind
    ts: Timestamp | None = None
    signature: Ident | None = None
    ok: bool | None = None
    tokens: Count | None = None


RUN_EVENTS = pydantic.TypeAdapter(
    RunEvent | Annotated[list[RunEvent], pydantic.Field(min_length=1, max_length=RUN_EVENTS_MAX)]
)
