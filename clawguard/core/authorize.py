"""One verdict per side effect (README: Authorize): the checks in order, the answer, the receipt.

The service loads what each check reads (the budgets of the named scopes, the
run, the compiled gate, the tool's categories, the settings) and `judge`
decides, in this order, stopping at the first that refuses: the kill-switch
(a paused cap scope), the run (tripped, ended or expired), tool access, the
guardrails, then the settings (a flagged category turns ALLOW into ALERT).
An ALERT becomes an approval; its outcome is ALLOW (approved), BLOCK
(denied, expired) or PENDING. Nothing here turns a BLOCK into anything else.

Receipts are documents: `receipt_document` holds everything needed to
reconstruct the verdict later; `answer` is what the caller hears, first time
or replayed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Final, Literal

import pydantic

from clawguard.core import (
    approvals,
    audit,
    commands,
    errors,
    money,
    principals,
    records,
    redact,
    runs,
)
from clawguard.core import gate as gate_rules
from clawguard.core.gate import settings as gate_settings
from clawguard.core.gate import stages

Decision = Literal["ALLOW", "BLOCK", "PENDING"]
Outcome = Literal["ALLOW", "ALERT", "BLOCK"]
Step = Literal["budget", "run", "access", "guardrails", "settings"]
VALUE_BOUND: Final = Decimal(10) ** 15
ROLES_MAX: Final = 50
# What an approval's status means for the receipt: approved (a waiver included) or not.
APPROVED: Final = frozenset({"allow_once", "allow_always", "approved"})
REFUSED: Final = frozenset({"deny", "expired"})


def _value(value: object) -> int | Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("must be a number")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError("must be a finite number")
    if abs(number) > VALUE_BOUND:
        raise ValueError(f"must be at most {VALUE_BOUND} in size")
    return value


def _estimate(value: object) -> Decimal:
    if money.cents_to_micros(value) <= 0:
        raise ValueError("must be more than 0")
    return Decimal(value)  # type: ignore[arg-type]


Value = Annotated[int | Decimal, pydantic.PlainValidator(_value),
                  pydantic.PlainSerializer(str, return_type=str, when_used="json"),
                  pydantic.WithJsonSchema({"type": "number"})]
Estimate = Annotated[Decimal, pydantic.PlainValidator(_estimate),
                     pydantic.PlainSerializer(str, return_type=str, when_used="json"),
                     pydantic.WithJsonSchema({"type": "number", "exclusiveMinimum": 0})]
Roles = Annotated[list[commands.Ident], pydantic.Field(max_length=ROLES_MAX)]


class Request(commands.Request):
    """POST /api/governance/authorize: the action, who proposes it, and its scopes."""

    agent_id: commands.Ident
    mission_id: commands.Ident | None = None
    team_id: commands.Ident | None = None
    tenant_id: commands.Ident | None = None
    run_id: commands.Ident | None = None
    roles: Roles | None = None
    connector: commands.Ident | None = None
    tool: commands.Ident
    value: Value | None = None
    args: commands.JsonObject | None = None
    context: commands.JsonObject | None = None
    estimate_usd_cents: Estimate | None = None
    wait_ms: commands.WaitMs | None = None
    idempotency_key: commands.Ident | None = None
    task_id: commands.Ident | None = None

    def scope_ids(self) -> commands.ScopeIds:
        return commands.ScopeIds.model_construct(
            agent_id=self.agent_id, mission_id=self.mission_id, team_id=self.team_id,
            tenant_id=self.tenant_id, run_id=self.run_id)

    def action(self) -> gate_rules.Action:
        return gate_rules.Action(self.tool, self.connector, self.value, self.args or {})

    def principal(self) -> gate_rules.Principal:
        return gate_rules.Principal(self.agent_id, tuple(self.roles or ()))

    def document(self) -> dict[str, Any]:
        """The request as a receipt keeps it: camelCase, numbers exact, secrets masked."""
        fields = self.model_dump(by_alias=True, exclude_none=True, exclude={"wait_ms"})
        for name in ("args", "context"):
            if name in fields:
                fields[name] = redact.redact(fields[name])
        return fields


def fingerprint(request: Request) -> str:
    """The request without its wait and key: a retry with another waitMs is the same call.
    Only a keyed request can be retried, so an unkeyed one is not hashed ("")."""
    if request.idempotency_key is None:
        return ""
    text = request.model_dump_json(exclude={"wait_ms", "idempotency_key"}, exclude_none=True)
    return hashlib.sha256(text.encode()).hexdigest()


def idempotency_key(owner: str, key: str | None) -> str | None:
    """Keys are the sending API key's own, as for spends."""
    return None if key is None else f"{owner}:{key}"


# --- the checks ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Judgement:
    """What the checks say before anyone is asked: ALLOW, BLOCK, or ALERT with its plan."""

    outcome: Outcome
    step: Step
    reasons: tuple[str, ...]
    obligations: Mapping[str, object] = field(default_factory=dict)
    plan: stages.Plan | None = None
    flagged: tuple[str, ...] = ()


def run_refusal(run: records.Run | None) -> str | None:
    """Why a step of this run may not happen: its breakers tripped it, or it is over."""
    if run is None or run.status == "running":
        return None
    return "circuit_break" if run.status == "tripped" else f"run_{run.status}"


def judge(
    stop_reason: str | None, run: records.Run | None, access: gate_rules.AccessDecision,
    verdict: gate_rules.Verdict, categories: Sequence[str], settings: gate_settings.Settings,
) -> Judgement:
    """The checks in order; `run` as it reads now (None: no runId)."""
    if stop_reason is not None:
        return Judgement("BLOCK", "budget", (stop_reason,))
    refusal = run_refusal(run)
    if refusal is not None:
        return Judgement("BLOCK", "run", (refusal,))
    if access.decision == "BLOCK":
        # Both are reported, so a caller can fix every cause at once.
        extra = verdict.reasons if verdict.decision == "BLOCK" else ()
        return Judgement("BLOCK", "access", access.reasons + extra)
    obligations = dict(access.obligations)
    warnings = access.reasons
    if verdict.decision == "BLOCK":
        return Judgement("BLOCK", "guardrails", warnings + verdict.reasons)
    flagged = settings.flagged(categories)
    if verdict.decision == "ALERT":
        plan = stages.plan(verdict.approvals, verdict.sticky, settings.approval_threshold)
        reasons = warnings + verdict.reasons + _flag_reasons(flagged)
        return Judgement("ALERT", "guardrails", reasons, obligations, plan, flagged)
    if flagged:
        plan = stages.plan((), verdict.sticky, settings.approval_threshold)
        reasons = warnings + verdict.reasons + _flag_reasons(flagged)
        return Judgement("ALERT", "settings", reasons, obligations, plan, flagged)
    return Judgement("ALLOW", "guardrails", warnings + verdict.reasons, obligations)


def _flag_reasons(flagged: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"the approval settings require a human approval for {c} tools"
                 for c in flagged)


def hold_refused(judgement: Judgement, code: str, scope: str) -> Judgement:
    """An ALLOW whose estimate no hold could reserve: BLOCK `budget_exhausted:<scope>` (or
    `budget_paused:<scope>`), decided by the budget; its other reasons stay."""
    return Judgement("BLOCK", "budget", (*judgement.reasons, f"{code}:{scope}"),
                     judgement.obligations, judgement.plan, judgement.flagged)


def refuse_outcome(outcome: dict[str, Any], code: str, scope: str) -> dict[str, Any]:
    """An approved outcome whose estimate no hold could reserve: BLOCK, as `hold_refused`."""
    return {**outcome, "decision": "BLOCK", "obligations": {},
            "reasons": [*outcome["reasons"], f"{code}:{scope}"]}


def estimate_of(document: Mapping[str, Any]) -> tuple[commands.ScopeIds, Decimal] | None:
    """A receipt's request's scopes and estimate (None: it named no estimate)."""
    request = document["request"]
    if request.get("estimateUsdCents") is None:
        return None
    scope_ids = commands.ScopeIds.model_construct(
        agent_id=request["agentId"], mission_id=request.get("missionId"),
        team_id=request.get("teamId"), tenant_id=request.get("tenantId"),
        run_id=request.get("runId"))
    return scope_ids, Decimal(str(request["estimateUsdCents"]))


def decision_of(status: str) -> Decision:
    """An approval's status as the executor's decision: approved ALLOW, refused BLOCK."""
    if status in APPROVED:
        return "ALLOW"
    if status in REFUSED:
        return "BLOCK"
    return "PENDING"


# --- receipts and answers --------------------------------------------------------------


def policies_cited(verdict: gate_rules.Verdict) -> list[dict[str, Any]]:
    return [{"policyId": p.id, "name": p.name, "version": p.version} for p in verdict.policies]


def approval_view(approval_id: str | None, status: str, plan: stages.Plan) -> dict[str, Any]:
    return {"approvalId": approval_id, "status": status, "stages": plan.wire()}


@dataclass(frozen=True, slots=True)
class NewReceipt:
    """A receipt to append, and the columns reports and checks aggregate on."""

    id: str
    request: Request
    decision: Decision
    approval_id: str | None
    categories: tuple[str, ...]
    idempotency_key: str | None
    fingerprint: str
    document: dict[str, Any]


def receipt_document(
    request: Request, judgement: Judgement, decision: Decision, reasons: Sequence[str],
    access: gate_rules.AccessDecision, verdict: gate_rules.Verdict, categories: Sequence[str],
    settings: gate_settings.Settings, scopes: Sequence[records.ScopeState],
    run: records.Run | None, approval: dict[str, Any] | None, hold_id: str | None = None,
) -> dict[str, Any]:
    """Everything needed to reconstruct the verdict: the request, what each check read and
    said, the exact policy versions, the access rule, the settings in force, the approval."""
    return {
        "request": request.document(),
        "decision": decision,
        "decidedBy": judgement.step,
        "reasons": list(reasons),
        "obligations": dict(judgement.obligations),
        "policies": policies_cited(verdict),
        "guardrails": {
            "decision": verdict.decision,
            "explanation": verdict.explanation,
            "sticky": verdict.sticky,
            "matched": [
                {"policyId": m.policy_id, "policyVersion": m.policy_version,
                 "ruleIndex": m.rule_index, "decision": m.decision,
                 "constraintFailed": m.constraint_failed}
                for m in verdict.matched
            ],
        },
        "access": {"decision": access.decision, "decidedBy": access.decided_by,
                   "ruleId": access.rule_id, "reasons": list(access.reasons)},
        "tool": {"name": request.tool, "categories": list(categories),
                 "flagged": list(judgement.flagged)},
        "settings": settings.wire(),
        "budgets": [{"scope": s.scope, "scopeId": s.scope_id, "status": s.status,
                     "mode": s.mode, "spentUsdMicros": s.spent_usd_micros,
                     "limitUsdCents": s.limit_usd_cents} for s in scopes],
        "run": None if run is None else run.to_json(),
        "approval": approval,
        "holdId": hold_id,
    }


def answer(receipt_id: str, document: Mapping[str, Any],
           outcome: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the caller hears: the receipt's verdict, or its appended outcome once decided."""
    reasons = list(document["reasons"])
    obligations = dict(document["obligations"])
    decision = document["decision"]
    approval = document.get("approval")
    if outcome is not None:
        decision = outcome["decision"]
        reasons += outcome["reasons"]
        obligations.update(outcome.get("obligations") or {})
        if approval is not None:
            approval = {**approval, "status": outcome["approvalStatus"],
                        "stages": outcome.get("stages", approval.get("stages"))}
    body: dict[str, Any] = {"decision": decision, "receiptId": receipt_id, "reasons": reasons,
                            "obligations": obligations, "policies": document["policies"]}
    if approval is not None and approval.get("approvalId") is not None:
        body["approval"] = approval
    hold_id = (outcome or {}).get("holdId") or document.get("holdId")
    if hold_id is not None:
        body["holdId"] = hold_id
    return body


def outcome_document(approval: records.Approval) -> dict[str, Any]:
    """A decided approval as the receipt's appended outcome, with its stages as decided (their
    votes); conditional votes make their conditions the executor's obligations
    (`conditions`)."""
    decision = decision_of(approval.status)
    status = approval.status
    by = f" by {approval.resolved_by}" if approval.resolved_by else ""
    reason = (f"approval {approval.id} was approved ({status}){by}" if decision == "ALLOW"
              else f"approval {approval.id} was {'denied' if status == 'deny' else status}{by}")
    conditions = approvals.conditions_of(approval) if decision == "ALLOW" else []
    return {"decision": decision, "approvalId": approval.id, "approvalStatus": status,
            "resolvedBy": approval.resolved_by, "resolvedAt": approval.resolved_at,
            "stages": [stage.model_dump(mode="json", by_alias=True, exclude_none=True)
                       for stage in approval.stages or ()],
            "reasons": [reason], "obligations": {"conditions": conditions} if conditions else {}}


def verdict_event(receipt: NewReceipt) -> audit.Event:
    """Small on purpose: the receipt holds the rest, and one is appended per verdict."""
    return audit.Event("tool_call", "authorize.verdict", receipt.request.agent_id, {
        "receiptId": receipt.id, "tool": receipt.request.tool, "decision": receipt.decision,
        "decidedBy": receipt.document["decidedBy"], "approvalId": receipt.approval_id,
    })


def outcome_event(receipt_id: str, agent_id: str, outcome: Mapping[str, Any]) -> audit.Event:
    return audit.Event("tool_call", "authorize.outcome", agent_id, {
        "receiptId": receipt_id, "approvalId": outcome["approvalId"],
        "decision": outcome["decision"], "approvalStatus": outcome["approvalStatus"],
    })


# --- what the store loads and the deciders it applies ------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    """A receipt as stored, with its appended outcome (None until its approval is decided)."""

    id: str
    agent_id: str
    decision: Decision
    approval_id: str | None
    fingerprint: str
    document: dict[str, Any]
    created_at: int
    outcome: dict[str, Any] | None

    def answer(self) -> dict[str, Any]:
        return answer(self.id, self.document, self.outcome)

    def wire(self) -> dict[str, Any]:
        """GET /api/governance/receipts/{id}: the document, its id and time, its outcome."""
        return {"receiptId": self.id, "createdAt": self.created_at, **self.document,
                "outcome": self.outcome}


def write(existing: Stored | None, new: NewReceipt, now: int
          ) -> tuple[Stored, bool, list[audit.Event]]:
    """The receipt to insert (and its tool_call event), or the one its idempotency key
    already made (replayed=True; IdempotencyConflict when the request differs)."""
    if existing is not None:
        return replay(existing, new.fingerprint), True, []
    stored = Stored(new.id, new.request.agent_id, new.decision, new.approval_id,
                    new.fingerprint, new.document, now, None)
    return stored, False, [verdict_event(new)]


def replay(existing: Stored, request_fingerprint: str) -> Stored:
    if existing.fingerprint != request_fingerprint:
        raise errors.IdempotencyConflict(
            "this idempotencyKey was used with a different request",
            {"receiptId": existing.id})
    return existing


def append_outcome(stored: Stored | None, receipt_id: str, outcome: dict[str, Any]
                   ) -> tuple[Stored, bool, list[audit.Event]]:
    """The receipt with `outcome` appended (written=True), or as it is when an outcome is
    there already (the first stands). Only a PENDING receipt takes one: a verdict given is
    never changed, so a BLOCK never becomes an ALLOW."""
    if stored is None:
        raise errors.NotFound(f"no receipt {receipt_id}")
    if stored.outcome is not None:
        return stored, False, []
    if stored.decision != "PENDING":
        raise errors.Conflict(f"receipt {receipt_id} is {stored.decision}, not PENDING",
                              {"receiptId": receipt_id, "decision": stored.decision})
    updated = Stored(stored.id, stored.agent_id, stored.decision, stored.approval_id,
                     stored.fingerprint, stored.document, stored.created_at, outcome)
    return updated, True, [outcome_event(stored.id, stored.agent_id, outcome)]


def settings_changed(before: gate_settings.Settings, after: gate_settings.Settings,
                     patch: Mapping[str, Any], actor: principals.Principal) -> audit.Event:
    return audit.Event("install", "settings.updated", None, {
        "patch": dict(patch), "before": before.wire(), "after": after.wire(),
        "keyId": actor.key_id, "keyName": actor.name,
    })


# --- the enforcement check and reports ----------------------------------------------------

ResourceType = Literal["agent", "mission", "team", "tenant"]
Period = Literal["last_24_hours", "last_7_days", "last_30_days"]
PERIOD_MS: Final[dict[str, int]] = {
    "last_24_hours": 86_400_000, "last_7_days": 7 * 86_400_000, "last_30_days": 30 * 86_400_000,
}
BLOCKING_MAX: Final = 20  # entries of one kind listed by the enforcement check


@dataclass(frozen=True, slots=True)
class Blockers:
    """What the store found holding a resource back (budgets are read separately)."""

    tripped_runs: list[tuple[str, str, int | None]]  # (run id, agent id, lease end)
    pending_approvals: list[tuple[str, str, str, int]]  # (approval id, agent, tool, expiresAt)
    tenant_load: runs.TenantLoad | None  # for a tenant: its runs now, else None
    tenant_overrides: dict[str, int]


def blocking(resource_type: ResourceType, resource_id: str,
             scopes: Sequence[records.ScopeState], found: Blockers,
             plan: dict[str, int]) -> list[dict[str, Any]]:
    """Seed 001's blocking entries, each `{kind, ...}`, in a fixed order of kinds."""
    entries: list[dict[str, Any]] = [
        {"kind": "budget_paused", "scope": s.scope, "scopeId": s.scope_id,
         "spentUsdCents": s.spent_usd_cents, "limitUsdCents": s.limit_usd_cents}
        for s in scopes if s.status == "paused"
    ]
    entries += [{"kind": "run_tripped", "runId": run_id, "agentId": agent_id}
                for run_id, agent_id, _ in found.tripped_runs]
    if found.tenant_load is not None:
        limits = runs.effective(plan, found.tenant_overrides)
        load = found.tenant_load
        for key, used in (("runs_per_hour", load.started_last_hour),
                          ("concurrent_runs", load.running)):
            if used >= limits[key]:
                entries.append({"kind": "quota_exhausted", "tenantId": resource_id,
                                "key": key, "limit": limits[key], "used": used})
    entries += [{"kind": "approval_pending", "approvalId": approval_id, "agentId": agent,
                 "toolName": tool, "expiresAt": expires_at}
                for approval_id, agent, tool, expires_at in found.pending_approvals]
    return entries


@dataclass(frozen=True, slots=True)
class ReportFigures:
    """The SQL aggregates a report is made of."""

    total: int
    gated: int
    approved: int
    rejected: int
    approval_ms_total: int  # summed decision time of the approved ones, in ms
    top_approvers: list[tuple[str, int]]


def report(period: Period, figures: ReportFigures) -> dict[str, Any]:
    """Seed 000's governance report object."""
    decided = figures.approved + figures.rejected
    rate = None if decided == 0 else (Decimal(figures.approved) / decided).quantize(
        Decimal("0.001"), ROUND_HALF_UP)
    minutes = None if figures.approved == 0 else (
        Decimal(figures.approval_ms_total) / figures.approved / 60_000
    ).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return {
        "period": period, "total_executions": figures.total,
        "gated_executions": figures.gated, "approved": figures.approved,
        "rejected": figures.rejected, "approval_rate": rate,
        "avg_approval_time_minutes": minutes,
        "top_approvers": [{"user_id": key, "approvals": n} for key, n in figures.top_approvers],
    }


def approval_stats(by_tool: Sequence[tuple[str, int, int, int]],
                   by_category: Sequence[tuple[str, int, int]]) -> dict[str, Any]:
    """Seed 000's approval statistics, by tool (its by_workflow) and by category."""
    return {
        "by_tool": [{"tool_name": tool, "total": total, "approved": approved,
                     "rejected": rejected} for tool, total, approved, rejected in by_tool],
        "by_category": {category: {"total": total, "approved": approved}
                        for category, total, approved in by_category},
    }
