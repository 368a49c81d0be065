"""The approval rules: how a request becomes a pending row, and open, decide, vote, waive,
expire, revoke.

Each decider takes the rows an engine loaded inside its write transaction and
returns what to write and the audit event; the engine applies them in that
transaction (and guards the decision with a conditional UPDATE on a pending
row), so a request is decided, or expired, exactly once on any engine. An
approval with stages is decided by the vote that completes or denies it (README:
Gates and quorum); the votes before it are written the same way and leave it
pending.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
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
    return new_request(
        approval_id, body.tool_name, body.agent_id, body.args, body.reason, body.task_id,
        body.tenant_id, requester,
    )


def new_request(
    approval_id: str, tool_name: str, agent_id: str, args: Any, reason: str | None,
    task_id: str | None, tenant_id: str | None, requester: principals.Principal,
    stages: list[records.Stage] | None = None, sticky: bool = True,
) -> records.NewApproval:
    """A request to open, its arguments and reason masked. `stages` (None: Clawboo's one
    decision) are fixed here, as given; `sticky` False: no grant satisfies or comes of it."""
    return records.NewApproval(
        id=approval_id, tool_name=tool_name, agent_id=agent_id,
        args_summary=None if args is None else _summary(args),
        reason=_masked(reason), task_id=task_id, tenant_id=tenant_id,
        args_fingerprint=args_fingerprint(args), requested_by_key=requester.key_id,
        stages=stages, sticky=sticky,
    )


def new_stages(specs: Sequence[Mapping[str, Any]]) -> list[records.Stage]:
    """Stages as rules declare them, `[{name?, gates: [{group?, count}]}]`, ready to open:
    unnamed stages are named `stage N`, every gate starts with no votes."""
    return [
        records.Stage(
            name=spec.get("name") or f"stage {number}",
            gates=[records.Gate(group=gate.get("group"), count=gate["count"])
                   for gate in spec["gates"]],
        )
        for number, spec in enumerate(specs, start=1)
    ]


def threshold_stages(threshold: int) -> list[records.Stage]:
    """The default when no matched rule names approvals: one stage, one gate of `threshold`
    distinct leaders."""
    return [records.Stage(name="approval", gates=[records.Gate(count=threshold)])]


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
    grant = matching_grant(grants, new.args_fingerprint) if new.sticky else None
    if grant is not None:
        return Opening(records.Opened(grant=grant, approval=None), audit.Event(
            "approval", "approval.sticky_allowed", new.agent_id,
            {"grantId": grant.id, "grantScope": grant.grant_scope, "toolName": new.tool_name,
             "argsSummary": new.args_summary, "argsFingerprint": new.args_fingerprint,
             "grantedBy": grant.approval_id, "taskId": new.task_id,
             "tenantId": new.tenant_id},
        ))
    staged = new.stages is not None
    approval = records.Approval(
        **new.model_dump(exclude={"stages", "sticky"}), status="pending", created_at=now,
        expires_at=now + ttl_ms, resolved_at=None, resolved_by=None,
        requested_by_key=new.requested_by_key, stages=new.stages,
        sticky=new.sticky if staged else None,
    )
    details: dict[str, Any] = {
        "approvalId": approval.id, "toolName": approval.tool_name,
        "argsSummary": approval.args_summary, "argsFingerprint": approval.args_fingerprint,
        "reason": approval.reason, "taskId": approval.task_id, "tenantId": approval.tenant_id,
        "expiresAt": approval.expires_at,
    }
    if new.stages is not None:
        details["stages"] = [stage.to_json() for stage in new.stages]
        details["sticky"] = new.sticky
    return Opening(records.Opened(grant=None, approval=approval), audit.Event(
        "approval", "approval.requested", new.agent_id, details,
    ))


@dataclass(frozen=True, slots=True)
class Decided:
    """A decision (or a vote) to write: the row after it, a sticky grant, the history line
    (None for a vote that leaves the approval pending), and the audit event. The engine
    writes the row with one conditional UPDATE on a pending row, and supersedes any older
    grant for the pair."""

    approval: records.Approval
    grant: records.Grant | None
    history_action: records.HistoryAction | None
    history_details: str
    event: audit.Event
    resolver: principals.Principal | None = None  # whose key made a final outcome

    @property
    def final(self) -> bool:
        return self.approval.status != "pending"


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
        resolver=decider,
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


# --- approvals with stages: votes and waivers (README: Approvals, gates and quorum) -----


@dataclass(frozen=True, slots=True)
class Ballot:
    """One vote as a leader casts it; `conditions` goes with `conditional` only."""

    decision: records.VoteDecision
    comments: str | None = None
    conditions: str | None = None


def voter_id(voter: principals.Principal, resolved_by: str | None) -> str:
    """Whom one-vote-per-key counts: the key; with auth mode none (every caller is the one
    anonymous key), the name the caller gives."""
    if voter.key_id == principals.ANONYMOUS_KEY and resolved_by is not None:
        return f"{principals.ANONYMOUS_KEY}:{resolved_by}"
    return voter.key_id


def _counts_for(gate: records.Gate, voter: principals.Principal) -> bool:
    return gate.group is None or (voter.groups is not None and gate.group in voter.groups)


def current_stage(approval: records.Approval) -> int | None:
    """The index of the stage being decided: the first one not yet approved or waived."""
    for index, stage in enumerate(approval.stages or ()):
        if stage.status == "pending":
            return index
    return None


def open_gates(approval: records.Approval, voter: principals.Principal) -> list[int]:
    """The gates of the current stage that still need votes and count `voter`'s."""
    index = current_stage(approval)
    if index is None or approval.stages is None:
        return []
    return [number for number, gate in enumerate(approval.stages[index].gates)
            if len(gate.votes) < gate.count and _counts_for(gate, voter)]


def has_voted(approval: records.Approval, who: str) -> bool:
    return any(vote.key_id == who for stage in approval.stages or () for gate in stage.gates
               for vote in gate.votes)


def needs_self_setting(approval: records.Approval | None, voter: principals.Principal
                       ) -> bool:
    """Whether allow_self_approval can change this vote: only the asking key's own vote on an
    approval with stages (one without stages is never decided by the key that asked), so a
    store reads the setting for no other vote."""
    return (approval is not None and approval.stages is not None
            and approval.requested_by_key == voter.key_id)


def _self_refusal(
    approval: records.Approval, voter: principals.Principal, allow_self: bool
) -> str | None:
    asked = approval.requested_by_key
    if allow_self or asked is None or asked == principals.ANONYMOUS_KEY:
        return None
    if asked == voter.key_id:
        return "the key that asked may not vote on its own request (allow_self_approval is off)"
    return None


def may_vote(
    approval: records.Approval, voter: principals.Principal, resolved_by: str | None,
    allow_self: bool, now: int,
) -> bool:
    """Whether `voter` could vote on (or, without stages, decide) `approval` now: what
    `GET /api/tools/approvals?reviewer=me` lists."""
    if approval.as_of(now).status != "pending":
        return False
    if approval.stages is None:
        return voter.refusal_to_decide(approval.agent_id, approval.requested_by_key) is None
    return (voter.may_act_for(approval.agent_id)
            and _self_refusal(approval, voter, allow_self) is None
            and not has_voted(approval, voter_id(voter, resolved_by))
            and bool(open_gates(approval, voter)))


def votes_of(approval: records.Approval) -> list[records.Vote]:
    """Every vote once, in stage order (a vote that counts for two gates is one vote)."""
    seen: dict[str, records.Vote] = {}
    for stage in approval.stages or ():
        for gate in stage.gates:
            for vote in gate.votes:
                seen.setdefault(vote.key_id, vote)
    return list(seen.values())


def conditions_of(approval: records.Approval) -> list[str]:
    """The conditions of its conditional votes: obligations of the executor it lets through."""
    return [vote.conditions for vote in votes_of(approval) if vote.conditions is not None]


def _refused(
    approval: records.Approval, voter: principals.Principal, decision: str, reason: str
) -> errors.Refused:
    return errors.Refused(reason, {"approvalId": approval.id}, audit.Event(
        "verification", "approval.decision_refused", approval.agent_id,
        {"approvalId": approval.id, "toolName": approval.tool_name, "decision": decision,
         "reason": reason, **principals.actor(voter)},
    ))


def vote(
    approval: records.Approval | None, approval_id: str, ballot: Ballot,
    resolved_by: str | None, voter: principals.Principal, allow_self: bool,
    sticky_ttl_ms: int, now: int, grant_id: str, grant_scope: records.GrantScope = "tool",
) -> Decided:
    """One vote. Without stages it is Clawboo's one decision (`decide`; conditional is a
    Conflict there). With stages: NotFound; Refused outside the voter's agents or on its own
    request (unless `allow_self`); Conflict when decided, expired, or the key voted already;
    Forbidden, recorded nowhere, when the key counts for no open gate of the current stage.
    The vote counts in every such gate; a deny denies the approval, and it is approved when
    every gate of every stage has its count. Only then is a grant made: when the approval
    is sticky and every vote was allow_always."""
    if approval is None:
        raise errors.NotFound(f"no approval {approval_id}")
    if approval.stages is None:
        if ballot.decision == "conditional":
            raise errors.Conflict(
                f"approval {approval_id} has no stages: it takes allow_once, allow_always or"
                " deny", {"approvalId": approval_id, "decision": ballot.decision})
        return decide(approval, approval.requested_by_key, approval_id, ballot.decision,
                      resolved_by, voter, sticky_ttl_ms, now, grant_id, grant_scope)
    if not voter.may_act_for(approval.agent_id):
        raise _refused(approval, voter, ballot.decision,
                       f"key {voter.name} may decide only for agents it leads, not "
                       f"{approval.agent_id}")
    status = approval.as_of(now).status
    if status != "pending":
        raise already_decided(approval_id, status)
    refusal = _self_refusal(approval, voter, allow_self)
    if refusal is not None:
        raise _refused(approval, voter, ballot.decision, refusal)
    who = voter_id(voter, resolved_by)
    if has_voted(approval, who):
        raise errors.Conflict(f"key {voter.name} has already voted on approval {approval_id}",
                              {"approvalId": approval_id, "keyId": voter.key_id})
    gates = open_gates(approval, voter)
    index = current_stage(approval)
    assert approval.stages is not None and index is not None  # pending: a stage is open
    stage = approval.stages[index]
    if not gates:
        raise errors.Forbidden(
            f"key {voter.name} counts for no open gate of stage {stage.name!r}",
            {"approvalId": approval_id, "stage": stage.name,
             "groups": sorted(voter.groups or ())})
    cast = records.Vote(key_id=who, key_name=resolved_by or voter.name,
                        decision=ballot.decision, comments=ballot.comments,
                        conditions=ballot.conditions, voted_at=now)
    new_gates = [gate.model_copy(update={"votes": [*gate.votes, cast]}) if number in gates
                 else gate for number, gate in enumerate(stage.gates)]
    if ballot.decision == "deny":
        stage_status: records.StageStatus = "deny"
    elif all(len(gate.votes) >= gate.count for gate in new_gates):
        stage_status = "approved"
    else:
        stage_status = "pending"
    stages = list(approval.stages)
    stages[index] = stage.model_copy(update={"gates": new_gates, "status": stage_status})
    voted = approval.model_copy(update={"stages": stages})
    if stage_status == "deny":
        outcome: records.ApprovalStatus = "deny"
    elif all(s.status == "approved" for s in stages):
        outcome = "approved"
    else:
        return Decided(
            approval=voted, grant=None, history_action=None, history_details="",
            event=audit.Event("approval", "approval.voted", approval.agent_id, {
                "approvalId": approval_id, "toolName": approval.tool_name,
                "stage": stage.name, "stageStatus": stage_status, **_vote_details(cast),
                **principals.actor(voter), "taskId": approval.task_id,
            }),
        )
    decided = voted.model_copy(update={
        "status": outcome, "resolved_at": now, "resolved_by": resolved_by})
    grant = None
    if outcome == "approved" and approval.sticky and _all_always(decided):
        grant = records.Grant(
            id=grant_id, agent_id=approval.agent_id, tool_name=approval.tool_name,
            grant_scope="tool", args_fingerprint=None, args_summary=None,
            approval_id=approval.id, created_at=now,
            expires_at=now + sticky_ttl_ms if sticky_ttl_ms > 0 else None, revoked_at=None,
            revoked_by=None,
        )
    action: records.HistoryAction = (
        "deny" if outcome == "deny" else "allow-always" if grant else "allow-once")
    return Decided(
        resolver=voter, approval=decided, grant=grant, history_action=action,
        history_details=audit.canonical({"approvalId": approval_id, "resolvedBy": resolved_by}),
        event=audit.Event("approval", "approval.resolved", approval.agent_id, {
            "approvalId": approval_id, "toolName": approval.tool_name, "decision": outcome,
            "resolvedBy": resolved_by, "resolvedByKey": voter.key_id,
            "resolvedByRole": voter.role, **principals.actor(voter),
            "stage": stage.name, "lastVote": _vote_details(cast),
            "votes": [_vote_details(v) for v in votes_of(decided)],
            "conditions": conditions_of(decided), "taskId": approval.task_id,
            "grantId": None if grant is None else grant.id,
            "grantScope": None if grant is None else grant.grant_scope,
            "argsSummary": approval.args_summary, "argsFingerprint": approval.args_fingerprint,
            "grantExpiresAt": None if grant is None else grant.expires_at,
        }),
    )


def _vote_details(cast: records.Vote) -> dict[str, Any]:
    return {"voterKey": cast.key_id, "voterName": cast.key_name, "vote": cast.decision,
            "comments": cast.comments, "voteConditions": cast.conditions}


def waive(
    approval: records.Approval | None, approval_id: str, reason: str,
    resolved_by: str | None, admin: principals.Principal, now: int,
) -> Decided:
    """An admin approves an approval with stages without its votes: NotFound; Conflict when
    it has no stages (decide it) or is decided or expired. Every stage not yet approved reads
    `waived`; no grant comes of a waiver."""
    if approval is None:
        raise errors.NotFound(f"no approval {approval_id}")
    if approval.stages is None:
        raise errors.Conflict(
            f"approval {approval_id} has no stages to waive: decide it with resolve",
            {"approvalId": approval_id})
    status = approval.as_of(now).status
    if status != "pending":
        raise already_decided(approval_id, status)
    waiver = records.Waiver(reason=reason, key_id=admin.key_id,
                            key_name=resolved_by or admin.name, waived_at=now)
    stages = [stage if stage.status == "approved"
              else stage.model_copy(update={"status": "waived"})
              for stage in approval.stages]
    waived = approval.model_copy(update={
        "status": "approved", "resolved_at": now, "resolved_by": resolved_by,
        "stages": stages, "waiver": waiver})
    return Decided(
        resolver=admin, approval=waived, grant=None, history_action="allow-once",
        history_details=audit.canonical({"approvalId": approval_id, "resolvedBy": resolved_by,
                                         "waived": reason}),
        event=audit.Event("approval", "approval.waived", approval.agent_id, {
            "approvalId": approval_id, "toolName": approval.tool_name, "decision": "approved",
            "reason": reason, "resolvedBy": resolved_by, "resolvedByKey": admin.key_id,
            "resolvedByRole": admin.role, **principals.actor(admin),
            "votes": [_vote_details(v) for v in votes_of(approval)],
            "taskId": approval.task_id,
        }),
    )


def stored_status(approval: records.Approval) -> str:
    """The status column of a row. An approved approval with stages is stored as allow_once,
    or allow_always when it made a grant (the column's values predate stages); it reads
    `approved` (`read_status`)."""
    if approval.status == "approved":
        return "allow_always" if approval.sticky and _all_always(approval) else "allow_once"
    return approval.status


def _all_always(approval: records.Approval) -> bool:
    votes = votes_of(approval)
    return approval.waiver is None and bool(votes) and all(
        vote.decision == "allow_always" for vote in votes)


def read_status(stored: str, staged: bool) -> str:
    """What a stored status reads as (`stored_status` undone)."""
    return "approved" if staged and stored in ("allow_once", "allow_always") else stored


# --- a decision, a vote or a waiver, as data -------------------------------------------
# What the store is asked to do to one approval, so an engine can load every row a batch
# of them touches at once and rule on each in turn (`rule_on`).


@dataclass(frozen=True, slots=True)
class ResolveRequest:
    approval_id: str
    decision: records.Decision
    resolved_by: str | None
    decider: principals.Principal
    sticky_ttl_ms: int
    grant_scope: records.GrantScope = "tool"


@dataclass(frozen=True, slots=True)
class VoteRequest:
    approval_id: str
    ballot: Ballot
    resolved_by: str | None
    voter: principals.Principal
    allow_self: bool | None  # None: the store reads allow_self_approval if it can matter
    sticky_ttl_ms: int
    grant_scope: records.GrantScope = "tool"


@dataclass(frozen=True, slots=True)
class WaiveRequest:
    approval_id: str
    reason: str
    resolved_by: str | None
    admin: principals.Principal


DecisionRequest = ResolveRequest | VoteRequest | WaiveRequest


def reads_setting(request: DecisionRequest, approval: records.Approval | None) -> bool:
    """Whether the store must read allow_self_approval before ruling on `request`."""
    return (isinstance(request, VoteRequest) and request.allow_self is None
            and needs_self_setting(approval, request.voter))


def rule_on(request: DecisionRequest, approval: records.Approval | None,
            allow_self_setting: bool, now: int, grant_id: str) -> Decided:
    """`decide`, `vote` or `waive`, as `request` says; `allow_self_setting` counts only where
    `reads_setting` said it must be read."""
    if isinstance(request, ResolveRequest):
        return decide(approval, None if approval is None else approval.requested_by_key,
                      request.approval_id, request.decision, request.resolved_by,
                      request.decider, request.sticky_ttl_ms, now, grant_id,
                      request.grant_scope)
    if isinstance(request, VoteRequest):
        allow_self = request.allow_self
        if allow_self is None:
            allow_self = needs_self_setting(approval, request.voter) and allow_self_setting
        return vote(approval, request.approval_id, request.ballot, request.resolved_by,
                    request.voter, allow_self, request.sticky_ttl_ms, now, grant_id,
                    request.grant_scope)
    return waive(approval, request.approval_id, request.reason, request.resolved_by,
                 request.admin, now)


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
