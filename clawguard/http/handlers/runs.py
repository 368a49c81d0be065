"""Run routes: start, end, read, breaker events; tenant quotas."""

from __future__ import annotations

from aiohttp import web

from clawguard.core import commands, records
from clawguard.http import bodies, state, wire


async def start_run(request: web.Request, body: commands.RunStart) -> web.Response:
    run = await request.app[state.RUNS].start(body)
    return bodies.respond(records.RunOne(run=run), status=201)


async def list_runs(request: web.Request, query: wire.RunFilter) -> web.Response:
    rows = await request.app[state.RUNS].list(query.status, query.agent_id, query.limit)
    return bodies.respond(wire.RunList(runs=rows))


async def get_run(request: web.Request, path: wire.ItemId) -> web.Response:
    return bodies.respond(records.RunOne(run=await request.app[state.RUNS].get(path.id)))


async def end_run(request: web.Request, path: wire.ItemId) -> web.Response:
    return bodies.respond(records.RunOne(run=await request.app[state.RUNS].end(path.id)))


async def run_events(
    request: web.Request, path: wire.ItemId, body: list[commands.RunEvent]
) -> web.Response:
    return bodies.respond(await request.app[state.RUNS].events(path.id, body))


async def get_quota(request: web.Request, path: wire.TenantKey) -> web.Response:
    return bodies.respond(await request.app[state.RUNS].quota(path.tenant_id))


async def set_quota(
    request: web.Request, path: wire.TenantKey, body: wire.QuotaPatch
) -> web.Response:
    return bodies.respond(await request.app[state.RUNS].set_quota(path.tenant_id, body.patch()))
