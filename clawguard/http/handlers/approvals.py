"""Approval routes: the handshake, re-attach, decisions, sticky grants and history."""

from __future__ import annotations

import asyncio

from aiohttp import web

from clawguard.core import approvals as approval_rules
from clawguard.core import commands, errors, principals
from clawguard.http import bodies, state, wire

# Who resolved or revoked, when auth.mode is none: the body's `resolvedBy`, else this header.
# With keys, it is always the key's name.
ACTOR_HEADER = "X-Clawguard-Actor"


def actor_of(request: web.Request, given: str | None = None) -> str | None:
    """Who decides or revokes: with keys, the key's name (a claim cannot override it);
    without, as the caller says (body, else header)."""
    principal = state.principal_of(request)
    if principal is not principals.ANONYMOUS:
        return principal.name
    actor = given or request.headers.get(ACTOR_HEADER) or None
    if actor is not None and len(actor) > 200:
        raise errors.InvalidInput(f"{ACTOR_HEADER} must be 1 to 200 characters")
    return actor


# The blocking routes answer with the future of their response, which middleware.serve's
# _Parking awaits (their Routes say parks=True): no frame of these handlers (nor their
# parsed body), nor of serve's, is kept while a caller waits.


async def delegation_approval(
    request: web.Request, body: commands.DelegationApprovalRequest
) -> asyncio.Future[web.Response]:
    return await request.app[state.APPROVALS].ask_delegation(
        body, state.principal_of(request), bodies.respond)


async def request_tool_approval(
    request: web.Request, body: commands.ToolApprovalRequest
) -> asyncio.Future[web.Response]:
    return await request.app[state.APPROVALS].ask_tool(
        body, state.principal_of(request), bodies.respond)


async def list_tool_approvals(request: web.Request, query: wire.PendingFilter) -> web.Response:
    # `?all=true` (which a client may send) is no way out of a leader's own agents.
    service = request.app[state.APPROVALS]
    listing = service.reviews if query.reviewer == "me" else service.pending
    pending, last = await listing(
        state.principal_of(request), query.limit, wire.pending_key(query.cursor)
    )
    next_cursor = None if last is None else wire.pending_cursor(last)
    return bodies.respond(wire.ApprovalList(approvals=pending, next_cursor=next_cursor))


async def get_tool_approval(
    request: web.Request, path: wire.ItemId, query: wire.ApprovalWait
) -> web.Response:
    approval = await request.app[state.APPROVALS].get(
        path.id, state.principal_of(request), query.wait_ms
    )
    return bodies.respond(wire.ApprovalOne(approval=approval))


async def resolve_tool_approval(
    request: web.Request, path: wire.ItemId, body: wire.ApprovalResolve
) -> web.Response:
    ballot = approval_rules.Ballot(body.decision, body.comments, body.conditions)
    approval = await request.app[state.APPROVALS].vote(
        path.id, ballot, actor_of(request, body.resolved_by), state.principal_of(request),
        body.grant_scope,
    )
    return bodies.respond(wire.ApprovalOne(approval=approval))


async def waive_tool_approval(
    request: web.Request, path: wire.ItemId, body: wire.ApprovalWaive
) -> web.Response:
    approval = await request.app[state.APPROVALS].waive(
        path.id, body.reason, actor_of(request), state.principal_of(request)
    )
    return bodies.respond(wire.ApprovalOne(approval=approval))


async def list_grants(request: web.Request, query: wire.GrantFilter) -> web.Response:
    return bodies.respond(
        wire.GrantList(grants=await request.app[state.APPROVALS].grants(
            state.principal_of(request), query.agent_id))
    )


async def revoke_grant(request: web.Request, path: wire.ItemId) -> web.Response:
    grant = await request.app[state.APPROVALS].revoke(
        path.id, actor_of(request), state.principal_of(request)
    )
    return bodies.respond(wire.GrantOne(grant=grant))


async def list_history(request: web.Request, query: wire.HistoryFilter) -> web.Response:
    records = await request.app[state.APPROVALS].history(
        state.principal_of(request), query.agent_id, query.limit
    )
    return bodies.respond(wire.HistoryList(records=records))


async def append_history(request: web.Request, body: commands.HistoryAppend) -> web.Response:
    record = await request.app[state.APPROVALS].record(body, state.principal_of(request))
    return bodies.respond(wire.HistoryOne(record=record))
