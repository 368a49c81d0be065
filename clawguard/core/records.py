"""The domain's records: budgets, spends, approvals, grants and audit rows as the API answers them.

Python names are snake_case; the JSON names are the seeds' camelCase aliases.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import pydantic
from pydantic.alias_generators import to_camel

from clawguard.core import audit, money, windows

Scope = Literal["agent", "mission", "team", "tenant"]
SCOPES: tuple[Scope, ...] = ("agent", "mission", "team", "tenant")
Status = money.Status
Mode = money.Mode
EventType = audit.EventType
EVENT_TYPES = audit.EVENT_TYPES


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, frozen=True
    )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def to_json_bytes(self) -> bytes:
        """Serialised by pydantic-core: several times faster than json.dumps(to_json())."""
        return self.__pydantic_serializer__.to_json(self, by_alias=True)


class Budget(Model):
    id: str
    scope: Scope
    scope_id: str
    tenant_id: str | None  # the tenant the row belongs to, as Clawboo's budget rows carry it
    limit_usd_cents: int
    spent_usd_cents: int
    spent_usd_micros: int
    held_usd_cents: int
    status: Status
    mode: Mode
    created_at: int
    updated_at: int
    # Live holds on the scope (core.holds): reserved, not spent.
    held_usd_micros: int = 0
    # The calendar window `spent` counts (core.windows): both None for "none".
    window: windows.Window = "none"
    timezone: str = windows.DEFAULT_ZONE
    window_start: int | None = None
    window_end: int | None = None


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
    # The window spent counts in (None for "none"); absent from spends stored before windows.
    window_start: int | None = None
    window_end: int | None = None


class HeldScope(ScopeState):
    """A scope as a preflight or a hold sees it: with what live holds reserve on it."""

    held_usd_micros: int = 0


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


class PriceUsed(Model):
    """The price a spend was charged at: US dollars per million tokens, as decimal strings."""

    model: str
    input_per_mtok_usd: str
    output_per_mtok_usd: str


class PricedSpendOutcome(SpendOutcome):
    """A spend the daemon priced (it named no costUsdCents): says so, and at what price."""

    priced: Literal[True] = True
    price: PriceUsed


SpendGrouping = Literal["agent", "mission", "team", "tenant", "model"]


class SpendGroup(Model):
    """One group of the spend summary; `key` is None for spends that do not name it."""

    key: str | None
    spent_usd_micros: int
    spends: int
    input_tokens: int
    output_tokens: int


class ApiKey(Model):
    """An API key as an admin sees it: never its value, which is shown once, at creation."""

    id: str
    name: str
    role: str
    leads: list[str] | None
    groups: list[str] | None
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None


class Preflight(Model):
    allowed: bool
    reason: str | None
    scopes: list[HeldScope]


class Resumed(Model):
    budget: Budget
    will_repause: bool


class AuditEntry(Model):
    """One audit row: clawguard's action, details and hashes, and the fields Clawboo's own
    client reads (taskId, teamId, tenantId, and summary: the details as a JSON string).
    Details that are not a JSON object (a row edited by hand, or broken on disk) are shown
    as they are stored, in `detailsRaw`, with `detailsValid: false` and `details: {}`: the
    trail stays readable, and `clawguard audit verify` names the row."""

    id: int
    event_type: str
    action: str
    agent_id: str | None
    details: dict[str, Any]
    created_at: int
    prev_hash: str
    hash: str
    details_valid: bool = True
    details_raw: str | None = None

    @classmethod
    def from_stored(
        cls, seq: int, event_type: str, action: str, agent_id: str | None, details_json: Any,
        created_at: int, prev_hash: str, digest: str,
    ) -> AuditEntry:
        """The entry for a row as an engine read it, its details text decoded here."""
        details = audit.decode_details(details_json)
        return cls(
            id=seq, event_type=event_type, action=action, agent_id=agent_id,
            details={} if details is None else details, created_at=created_at,
            prev_hash=prev_hash, hash=digest, details_valid=details is not None,
            details_raw=None if details is not None else str(details_json),
        )

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def task_id(self) -> str | None:
        return _text(self.details.get("taskId"))

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def team_id(self) -> str | None:
        if self.details.get("scope") == "team":
            return _text(self.details.get("scopeId"))
        return _text(self.details.get("teamId"))

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def tenant_id(self) -> str | None:
        if self.details.get("scope") == "tenant":
            return _text(self.details.get("scopeId"))
        return _text(self.details.get("tenantId"))

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> str:
        return audit.canonical(self.details)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


class AuditHead(Model):
    """The latest audit row: anchor it elsewhere to prove later that no tail was cut."""

    seq: int
    hash: str


Decision = Literal["allow_once", "allow_always", "deny"]
DECISIONS: tuple[str, ...] = Decision.__args__  # type: ignore[attr-defined]
# A leader's vote on an approval with stages: a decision, or an approval with conditions.
VoteDecision = Literal["allow_once", "allow_always", "deny", "conditional"]
# `approved`: an approval with stages whose every gate has its count, or that was waived.
ApprovalStatus = Literal["pending", "allow_once", "allow_always", "deny", "expired", "approved"]
StageStatus = Literal["pending", "approved", "deny", "waived"]


# What a waiting caller hears: a decision, the row's expiry, or its own deadline.
Resolution = Literal["allow_once", "allow_always", "deny", "expired", "timeout", "approved"]
HistoryAction = Literal["allow-once", "allow-always", "deny"]
# What a sticky grant covers: the tool with any arguments, or only the arguments it was
# granted for (matched by their fingerprint, core.approvals.args_fingerprint).
GrantScope = Literal["tool", "args"]


class Vote(Model):
    """One leader's vote, as the gate it counts for holds it (README: Approvals)."""

    key_id: str
    key_name: str
    decision: VoteDecision
    comments: str | None = None
    conditions: str | None = None  # a conditional vote's conditions, for the executor
    voted_at: int


class Gate(Model):
    """`count` votes of leaders (of `group` only, when given) approve it."""

    group: str | None = None
    count: int = pydantic.Field(ge=1, le=1000)
    votes: list[Vote] = []


class Stage(Model):
    name: str
    gates: list[Gate] = pydantic.Field(min_length=1, max_length=100)
    status: StageStatus = "pending"


class Waiver(Model):
    """An admin approved the approval without its votes: who, when and why."""

    reason: str
    key_id: str
    key_name: str
    waived_at: int


STAGES = pydantic.TypeAdapter(list[Stage])  # the stored text of an approval's stages


def _absent(value: object) -> bool:
    return value is None


class NewApproval(Model):
    """A pending row as the handshake asks the store to open it (masked already).

    `stages` None: Clawboo's one-decision approval. `sticky` False: no live grant satisfies
    it and its approval makes none."""

    id: str
    tool_name: str
    agent_id: str
    args_summary: str | None
    reason: str | None
    task_id: str | None
    tenant_id: str | None
    args_fingerprint: str
    requested_by_key: str | None = pydantic.Field(default=None, exclude=True)
    stages: list[Stage] | None = None
    sticky: bool = True


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
    args_fingerprint: str | None  # None on rows opened before fingerprints were kept
    # Approvals with stages only (left out of the JSON of Clawboo's approvals):
    stages: list[Stage] | None = pydantic.Field(default=None, exclude_if=_absent)
    sticky: bool | None = pydantic.Field(default=None, exclude_if=_absent)
    waiver: Waiver | None = pydantic.Field(default=None, exclude_if=_absent)
    # Which key asked: a voter's own request is refused unless self-approval is allowed.
    requested_by_key: str | None = pydantic.Field(default=None, exclude=True)

    def as_of(self, now: int) -> Approval:
        """The row as it acts at `now`: pending past its expiry reads as expired, everywhere.

        The reaper writes the same values later (resolvedAt = expiresAt), so a
        row reads the same before and after its sweep.
        """
        if self.status == "pending" and now >= self.expires_at:
            return self.model_copy(update={"status": "expired", "resolved_at": self.expires_at})
        return self


class PendingKey(NamedTuple):
    """Where a page of the pending queue (newest first) ended: its last row's creation time
    and id; the next page starts after it."""

    created_at: int
    id: str

    @classmethod
    def of(cls, approval: Approval) -> PendingKey:
        return cls(approval.created_at, approval.id)


class Grant(Model):
    """A sticky allow_always for (agentId, toolName), for any arguments (`grantScope` tool)
    or only those of `argsFingerprint` (args); live while unrevoked and unexpired."""

    id: str
    agent_id: str
    tool_name: str
    grant_scope: GrantScope
    args_fingerprint: str | None  # set for an args grant
    args_summary: str | None  # the masked arguments an args grant was made for
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



RunStatus = Literal["running", "ended", "expired", "tripped"]


class Run(Model):
    id: str
    agent_id: str
    status: RunStatus
    depth: int
    parent_run_id: str | None
    started_at: int
    lease_expires_at: int
    ended_at: int | None

    def as_of(self, now: int) -> Run:
        """A running run past its lease reads as expired, everywhere, and holds no slot."""
        if self.status == "running" and now >= self.lease_expires_at:
            return self.model_copy(update={"status": "expired", "ended_at": self.lease_expires_at})
        return self


class Counters(Model):
    tool_iterations: int
    consec_failures: int
    non_productive: int
    consec_denials: int
    window_tokens: int


class Trip(Model):
    reason: str
    detail: str
    counters: Counters


class RunOne(Model):
    run: Run


class RunEvents(Model):
    """The run after its events; `tripped` only when one of them tripped a breaker."""

    run: Run
    tripped: Trip | None = None

    def _left_out(self) -> set[str] | None:
        return {"tripped"} if self.tripped is None else None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude=self._left_out())

    def to_json_bytes(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self, by_alias=True, exclude=self._left_out())


class Quota(Model):
    """Seed 000's quota object; its keys are snake_case, as the seed spells them."""

    plan: str
    limits: dict[str, int]
    overrides: dict[str, int]
    effective: dict[str, int]


HoldStatus = Literal["held", "committed", "released", "expired"]


class Hold(Model):
    """A reservation of `amountUsdMicros` on the scopes it names (README: Holds)."""

    id: str
    agent_id: str | None
    mission_id: str | None
    team_id: str | None
    tenant_id: str | None
    run_id: str | None
    amount_usd_micros: int
    status: HoldStatus
    created_at: int
    expires_at: int
    resolved_at: int | None
    spend_id: int | None
    scopes: list[HeldScope]  # each budgeted scope as the hold's creation saw it, hold included

    def as_of(self, now: int) -> Hold:
        """A held hold past its expiry reads, and counts, as expired everywhere (the reaper
        writes the same values later: resolvedAt = expiresAt)."""
        if self.status == "held" and now >= self.expires_at:
            return self.model_copy(update={"status": "expired", "resolved_at": self.expires_at})
        return self


HELD_SCOPES = pydantic.TypeAdapter(list[HeldScope])


class HoldOne(Model):
    hold: Hold
