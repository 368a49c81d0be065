"""The Store contract's approval decisions, each made one request (core.approvals
DecisionRequest) that an engine takes in `_decide`, so a batch of them can be loaded and
ruled on together."""

from __future__ import annotations

from clawguard.core import approvals, principals, records


class DecisionVerbs:
    """resolve_approval, vote_approval and waive_approval (store/contract.py), for an engine
    that implements `_decide`."""

    async def _decide(self, request: approvals.DecisionRequest) -> records.Approval:
        raise NotImplementedError

    async def resolve_approval(
        self, approval_id: str, decision: records.Decision, resolved_by: str | None,
        sticky_ttl_ms: int, decider: principals.Principal,
        grant_scope: records.GrantScope = "tool",
    ) -> records.Approval:
        return await self._decide(approvals.ResolveRequest(
            approval_id, decision, resolved_by, decider, sticky_ttl_ms, grant_scope))

    async def vote_approval(
        self, approval_id: str, ballot: approvals.Ballot, resolved_by: str | None,
        voter: principals.Principal, allow_self: bool | None, sticky_ttl_ms: int,
        grant_scope: records.GrantScope = "tool",
    ) -> records.Approval:
        return await self._decide(approvals.VoteRequest(
            approval_id, ballot, resolved_by, voter, allow_self, sticky_ttl_ms, grant_scope))

    async def waive_approval(
        self, approval_id: str, reason: str, resolved_by: str | None,
        admin: principals.Principal,
    ) -> records.Approval:
        return await self._decide(approvals.WaiveRequest(approval_id, reason, resolved_by,
                                                         admin))
