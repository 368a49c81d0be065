"""Operations routes: health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from clawguard.http import middleware, state, wire
from clawguard.runtime import metrics

_OK = wire.Ok().to_json_bytes()


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=_OK, content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    if await request.app[state.STORE].ready():
        return web.Response(body=_OK, content_type="application/json")
    return middleware.error_response(503, "not_ready", "the store is unreachable or not migrated")


async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=request.app[state.OPENAPI], content_type="application/json")


async def metrics_page(request: web.Request) -> web.Response:
    """Prometheus text; budget and approval gauges are read from the store now, not kept live."""
    counters, db = request.app[state.METRICS], request.app[state.STORE]
    counters.set_budgets(await db.budget_levels())
    counters.pending_approvals.set(await db.count_pending_approvals(request.app[state.CLOCK]()))
    counters.runs_running.set(await db.count_running_runs(request.app[state.CLOCK]()))
    holds, held = await db.count_live_holds(request.app[state.CLOCK]())
    counters.holds_outstanding.set(holds)
    counters.held_micros.set(held)
    await request.app[state.NOTIFIER].observe()
    return web.Response(body=counters.render(),
                        headers={"Content-Type": metrics.CONTENT_TYPE})

