"""Audit routes: the trail and its head."""

from __future__ import annotations

from aiohttp import web

from clawguard.http import bodies, state, wire


async def list_audit(request: web.Request, query: wire.AuditFilter) -> web.Response:
    rows = await request.app[state.STORE].list_audit(query.agent_id, query.event_type, query.since,
                                               query.limit)
    return bodies.respond(wire.AuditList(audit=rows))


async def audit_head(request: web.Request) -> web.Response:
    return bodies.respond(await request.app[state.STORE].audit_head())

