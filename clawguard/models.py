"""Pydantic models: request bodies as the API takes them and domain objects as it answers.

Python names are snake_case; the JSON names are the seeds' camelCase aliases.
Requests are strict (a string is not a number, 10.5 is not an integer) and
refuse unknown fields, so a typo is an error rather than a silent default.
"""

from __future__ import annotations

import functools
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


# --- requests -------------------------------------------------------------


class BudgetSet(Request):
    scope: Scope
    scope_id: Ident
    limit_usd_cents: Cents
    mode: Mode | None = None


class BudgetResume(Request):
    grace_usd_cents: Cents | None = None


class ScopeIds(Request):
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
