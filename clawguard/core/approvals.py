"""The approval rules: how a request becomes a pending row, and open, decide, expire, revoke.

Each decider takes the rows an engine loaded inside its write transaction and
returns what to write and the audit event; the engine applies them in that
transaction (and guards the decision with a conditional UPDATE on a pending
row), so a request is decided, or expired, exactly once on any engine.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from clawguard.core import audit, commands, errors, principals, records, redact

SUMMARY_MAX_CHARS = 4_000
HISTORY_ACTION: dict[str, records.HistoryAction] = {
    "allow_once": "allow-once", "allow_always": "allow-always", "deny": "deny",
}


# --- a request as it is stored ---------------------------------------------------------


def delegation_scope(kind: str) -> str:
    """The sticky-grant key of a delegation: Clawboo's `delegate:<kind>`."""
    return f"delegate:{kind}"


def resolution_of(approval: records.Approval) -> records.Resolution:
    """What a caller hears for a row: its decision, `expired`, or `timeout` while pending."""
    return "timeout" if approval.status == "pending" else approval.status


def json_text(value: Any) -> str:
    """A JSON value as stored text, secrets masked; body numbers arrive as Decimal."""
    return json.dumps(
        redact.redact(value), ensure_ascii=False, separators=(",", ":"), default=_number
    )


def _number(value: object) -> object:
    if isinstance(value, Decimal):
        as_float = float(value)
        return as_float if math.isfinite(as_float) else str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _summary(value: Any) -> str:
    text = json_text(value)
    return text if len(text) <= SUMMARY_MAX_CHARS else text[: SUMMARY_MAX_CHARS - 1] + "…"


def args_fingerprint(args: Any) -> str:
    """SHA-256 of the canonical JSON of the masked arguments: key order, and 1 against 1.0,
    do not change it; a masked secret does not either (only its key is compared)."""
    text = json.dumps(_canonical(redact.redact(args)), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    """Numbers in one spelling (an integral 2.0 is 2), so equal arguments hash alike."""
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, Decimal | float):
        if not math.isfinite(value):
            return str(value)
        if value == int(value):
            return int(value)
        return float(value) if isinstance(value, Decimal) else value
    return value


def _masked(text: str | None) -> str | None:
    return None if text is None else str(redact.redact(text))


def tool_request(
    body: commands.ToolApprovalRequest, requester: principals.Principal, approval_id: str
) -> records.NewApproval:
    return records.NewApproval(
        id=approval_id, tool_name=body.tool_name, agent_id=body.agent_id,
        args_summary=None if body.args is None else _summary(body.args),
        reason=_masked(body.reason), task_id=body.task_id, tenant_id=body.tenant_id,
        args_fingerprint=args_fingerprint(body.args), requested_by_key=requester.key_id,
    )


def delegation_request(
    body: commands.DelegationApprovalRequest, requester: principals.Principal, approval_id: str
) -> records.NewApproval:
    """The leader's pending row: tool `delegate:<kind>`, and Clawboo's prompt as the reason."""
    prompt = f"Delegate {body.kind} work"
    if body.target_agent_name is not None:
        prompt += f" to {body.target_agent_name}"
    if body.task is not None:
        prompt += f": {body.task}"
    given = {"kind": body.kind, "targetAgentName": body.target_agent_name, "task": body.task}
    args = {key: value for key, value in given.items() if value is not None}
    return records.NewApproval(
        id=approval_id, tool_name=delegation_scope(body.kind), agent_id=body.leader_agent_id,
        args_summary=_summary(args), reason=_masked(prompt), task_id=body.task_id,
        tenant_id=body.tenant_id, args_fingerprint=args_fingerprint(args),
        requested_by_key=requester.key_id,
    )


# --- the deciders ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opening:
    """A live grant short-circuits (`opened.grant`), else `opened.approval` is to insert."""

    opened: records.Opened
    event: audit.Event


def matching_grant(
    grants: list[records.Grant], fingerprint: str
) -> records.Grant | None:
    """The grant that lets a request through: an args grant for exactly its arguments
    first, else the tool grant (any arguments); an args grant for others never matches."""
    for grant in grants:
        if grant.grant_scope == "args" and grant.args_fingerprint == fingerprint:
            return grant
    for grant in grants:
        if grant.grant_scope == "tool":
            return grant
    return None


def open_request(
    grants: list[records.Grant], new: records.NewApproval, ttl_ms: int, now: int
) -> Opening:
    """`grants`: the live sticky grants for (agent, tool) at `now` that the engine found.

    A short-circuit's audit row names the arguments it let through."""
    grant = matching_grant(grants, new.args_fingerprint) if new.honour_grants else None
    if grant is not None:
        return Opening(records.Opened(grant=grant, approval=None), audit.Event(
            "approval", "approval.sticky_allowed", new.agent_id,
            {"grantId": grant.id, "grantScope": grant.grant_scope, "toolName": new.tool_name,
             "argsSummary": new.args_summary, "argsFingerprint": new.args_fingerprint,
             "grantedBy": grant.approval_id, "taskId": new.task_id,
             "tenantId": new.tenant_id},
        ))
    approval = records.Approval(
        **new.model_dump(), status="pending", created_at=now, expires_at=now + ttl_ms,
        resolved_at=None, resolved_by=None,
    )
    return Opening(records.Opened(grant=None, approval=approval), audit.Event(
        "approval", "approval.requested", new.agent_id,
        {"approvalId": approval.id, "toolName": approval.tool_name,
         "argsSummary": approval.args_summary, "argsFingerprint": approval.args_fingerprint,
         "reason": approval.reason,
         "taskId": approval.task_id, "tenantId": approval.tenant_id,
         "expiresAt": approval.expires_at},
    ))


@dataclass(frozen=True, slots=True)
class Decided:
    """A decision to write: the row as decided, a sticky grant (allow_always), the history
    line, and the audit event. The engine supersedes any older grant for the pair."""

    approval: records.Approval
    grant: records.Grant | None
    history_action: records.HistoryAction
    history_details: str
    event: audit.Event


def decide(
    approval: records.Approval | None, requested_by_key: str | None, approval_id: str,
    decision: records.Decision, resolved_by: str | None, decider: principals.Principal,
    sticky_ttl_ms: int, now: int, grant_id: str, grant_scope: records.GrantScope = "tool",
) -> Decided:
    """Decide once: NotFound, Forbidden when `decider` may not decide it, Conflict when it is
    decided or past its expiry (a late allow_always never becomes sticky). An allow_always
    grants the tool (`grant_scope` tool) or only the request's exact arguments (args)."""
    if approval is None:
        raise errors.NotFound(f"no approval {approval_id}")
    refusal = decider.refusal_to_decide(approval.agent_id, requested_by_key)
    if refusal is not None:
        raise errors.Refused(refusal, {"approvalId": approval_id}, audit.Event(
            "verification", "approval.decision_refused", approval.agent_id,
            {"approvalId": approval_id, "toolName": approval.tool_name, "decision": decision,
             "reason": refusal, **principals.actor(decider)},
        ))
    status = approval.as_of(now).status
    if status != "pending":
        raise already_decided(approval_id, status)
    decided = approval.model_copy(update={
        "status": decision, "resolved_at": now, "resolved_by": resolved_by,
    })
    grant = None
    if decision == "allow_always":
        by_args = grant_scope == "args"
        if by_args and approval.args_fingerprint is None:
            raise errors.Conflict(
                f"approval {approval_id} was opened before arguments were fingerprinted;"
                " grant it with grantScope tool, or deny it and ask again",
                {"approvalId": approval_id, "grantScope": grant_scope},
            )
        grant = records.Grant(
            id=grant_id, agent_id=approval.agent_id, tool_name=approval.tool_name,
            grant_scope=grant_scope,
            args_fingerprint=approval.args_fingerprint if by_args else None,
            args_summary=approval.args_summary if by_args else None,
            approval_id=approval.id, created_at=now,
            expires_at=now + sticky_ttl_ms if sticky_ttl_ms > 0 else None, revoked_at=None,
            revoked_by=None,
        )
    return Decided(
        approval=decided, grant=grant, history_action=HISTORY_ACTION[decision],
        history_details=audit.canonical({"approvalId": approval_id, "resolvedBy": resolved_by}),
        event=audit.Event(
            "approval", "approval.resolved", approval.agent_id,
            {"approvalId": approval_id, "toolName": approval.tool_name, "decision": decision,
             "resolvedBy": resolved_by, "resolvedByKey": decider.key_id,
             "resolvedByRole": decider.role, **principals.actor(decider),
             "taskId": approval.task_id,
             "grantId": None if grant is None else grant.id,
             "grantScope": None if grant is None else grant.grant_scope,
             "argsSummary": approval.args_summary, "argsFingerprint": approval.args_fingerprint,
             "grantExpiresAt": None if grant is None else grant.expires_at},
        ),
    )


def already_decided(approval_id: str, status: str) -> errors.Conflict:
    return errors.Conflict(
        f"approval {approval_id} is already {status}",
        {"approvalId": approval_id, "status": status},
    )


def expire(due: list[records.Approval], now: int) -> list[tuple[records.Approval, audit.Event]]:
    """Pending rows past their expiry at `now`, as the sweep writes them (resolvedAt =
    expiresAt, so a row reads the same before and after its sweep), each audited once."""
    expired = []
    for row in due:
        approval = row.as_of(now)
        if approval.status != "expired":
            continue
        expired.append((approval, audit.Event(
            "approval", "approval.expired", approval.agent_id,
            {"approvalId": approval.id, "toolName": approval.tool_name,
             "expiresAt": approval.expires_at, "taskId": approval.task_id},
        )))
    return expired


def revoke(
    grant: records.Grant | None, grant_id: str, revoked_by: str | None,
    revoker: principals.Principal, now: int,
) -> tuple[records.Grant, audit.Event]:
    """NotFound, Forbidden outside the revoker's agents, or Conflict when already revoked."""
    if grant is None:
        raise errors.NotFound(f"no grant {grant_id}")
    if not revoker.may_act_for(grant.agent_id):
        refusal = f"key {revoker.name} may revoke only grants of agents it leads"
        raise errors.Refused(refusal, {"grantId": grant_id}, audit.Event(
            "verification", "approval.revoke_refused", grant.agent_id,
            {"grantId": grant_id, "toolName": grant.tool_name, "reason": refusal,
             **principals.actor(revoker)},
        ))
    if grant.revoked_at is not None:
        raise errors.Conflict(
            f"grant {grant_id} is already revoked",
            {"grantId": grant_id, "revokedAt": grant.revoked_at},
        )
    return grant.model_copy(update={"revoked_at": now, "revoked_by": revoked_by}), audit.Event(
        "approval", "approval.grant_revoked", grant.agent_id,
        {"grantId": grant_id, "toolName": grant.tool_name, "grantScope": grant.grant_scope,
         "argsFingerprint": grant.args_fingerprint, "revokedBy": revoked_by,
         "revokedByKey": revoker.key_id, **principals.actor(revoker),
         "grantedBy": grant.approval_id},
    )


def history_recorded(record: records.HistoryRecord) -> audit.Event:
    """The audit event of a history line appended by hand (POST /api/approvals)."""
    return audit.Event(
        "approval", "approval.history_recorded", record.agent_id,
        {"historyId": record.id, "action": record.action, "toolName": record.tool_name},
    )
