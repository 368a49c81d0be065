"""The wire shapes of authorize, receipts, the approval settings, the enforcement check and
the reports: clawguard's own routes camelCase, seed 000's objects (settings, reports)
snake_case. Handlers write the answers with `bodies.respond_document` (exact numbers); the
models here say what they hold, for the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic

from clawguard.core import authorize, commands, records
from clawguard.core.gate import settings as gate_settings
from clawguard.http import gatewire, wire

# --- bodies and queries ------------------------------------------------------------------

# Declared loosely (core.gate.settings.check_patch judges the values and names the key); the
# schemas say what is accepted.
# null puts a setting back to its default.
Flag = Annotated[Any, pydantic.WithJsonSchema({"type": ["boolean", "null"]})]
Threshold = Annotated[Any, pydantic.WithJsonSchema(
    {"type": ["integer", "null"], "minimum": 1, "maximum": gate_settings.THRESHOLD_MAX})]
Flags = Annotated[Any, pydantic.WithJsonSchema({
    "type": ["object", "null"], "propertyNames": {"enum": list(gate_settings.CATEGORIES)},
    "additionalProperties": {"type": ["boolean", "null"]}})]


class SettingsPatch(gatewire.Document):
    """Seed 000's PATCH: any of the settings; category_flags merge key by key (null removes
    one); null for a setting puts back its default. Unknown keys are passed on to be refused
    by name."""

    require_approval_for_external_comm: Flag = None
    require_approval_for_public_writes: Flag = None
    require_approval_for_permission_changes: Flag = None
    allow_self_approval: Flag = None
    approval_threshold: Threshold = None
    category_flags: Flags = None


class EnforcementQuery(wire.Query):
    resource_type: authorize.ResourceType
    resource_id: commands.Ident


class PeriodQuery(gatewire.SnakeQuery):
    period: authorize.Period = "last_30_days"


# --- answers -------------------------------------------------------------------------------


class Settings(gatewire.Reply):
    require_approval_for_external_comm: bool
    require_approval_for_public_writes: bool
    require_approval_for_permission_changes: bool
    allow_self_approval: bool
    approval_threshold: int
    category_flags: dict[str, bool]


class PolicyCited(records.Model):
    policy_id: str
    name: str
    version: int


class Gate(records.Model):
    group: str | None = None
    count: int
    votes: list[dict[str, Any]]


class Stage(records.Model):
    name: str
    gates: list[Gate]
    status: str


class ApprovalOpened(records.Model):
    approval_id: str
    status: str
    stages: list[Stage]


class Verdict(records.Model):
    decision: authorize.Decision
    receipt_id: str
    reasons: list[str]
    obligations: dict[str, Any]
    approval: ApprovalOpened | None = None
    policies: list[PolicyCited]
    hold_id: str | None = None


class Receipt(records.Model):
    """The stored verdict and everything behind it (README: Authorize has each field)."""

    model_config = pydantic.ConfigDict(extra="allow")

    receipt_id: str
    created_at: int
    request: dict[str, Any]
    decision: authorize.Decision
    decided_by: str
    reasons: list[str]
    obligations: dict[str, Any]
    policies: list[PolicyCited]
    guardrails: dict[str, Any]
    access: dict[str, Any]
    tool: dict[str, Any]
    settings: dict[str, Any]
    budgets: list[dict[str, Any]]
    run: dict[str, Any] | None
    approval: dict[str, Any] | None
    outcome: dict[str, Any] | None
    approval_now: dict[str, Any] | None = None


class Blocking(records.Model):
    model_config = pydantic.ConfigDict(extra="allow")

    kind: Literal["budget_paused", "run_tripped", "quota_exhausted", "approval_pending"]


class Enforcement(records.Model):
    allowed: bool
    resource_type: authorize.ResourceType
    resource_id: str
    blocking: list[Blocking]


class Approver(gatewire.Reply):
    user_id: str
    approvals: int


class Report(gatewire.Reply):
    period: authorize.Period
    total_executions: int
    gated_executions: int
    approved: int
    rejected: int
    approval_rate: float | None
    avg_approval_time_minutes: float | None
    top_approvers: list[Approver]


class ToolStats(gatewire.Reply):
    tool_name: str
    total: int
    approved: int
    rejected: int


class CategoryStats(gatewire.Reply):
    total: int
    approved: int


class ApprovalStats(gatewire.Reply):
    period: authorize.Period
    by_tool: list[ToolStats]
    by_category: dict[str, CategoryStats]
