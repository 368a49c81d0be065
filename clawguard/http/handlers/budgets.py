"""Budget routes: set, list, delete, resume; spend and preflight (the kill-switch)."""

from __future__ import annotations

from aiohttp import web

from clawguard.core import commands
from clawguard.http import bodies, state, wire
from clawguard.services import spending


async def list_budgets(request: web.Request, query: wire.BudgetFilter) -> web.Response:
    rows = await request.app[state.STORE].list_budgets(query.scope, query.status)
    return bodies.respond(wire.BudgetList(budgets=rows))


async def set_budget(request: web.Request, body: commands.BudgetSet) -> web.Response:
    budget = await request.app[state.STORE].set_budget(body, state.principal_of(request))
    return bodies.respond(wire.BudgetOne(budget=budget))


async def delete_budget(request: web.Request, path: wire.BudgetKey) -> web.Response:
    await request.app[state.STORE].delete_budget(
        path.scope, path.scope_id, state.principal_of(request)
    )
    return web.Response(status=204)


async def resume_budget(
    request: web.Request, path: wire.BudgetKey, body: wire.BudgetResume
) -> web.Response:
    return bodies.respond(await request.app[state.STORE].resume_budget(
        path.scope, path.scope_id, body.grace_usd_cents, state.principal_of(request)
    ))


async def record_spend(request: web.Request, body: commands.SpendRequest) -> web.Response:
    app = request.app
    owner = state.principal_of(request).key_id
    outcome = await spending.record_spend(
        app[state.STORE], body, owner, app[state.METRICS], app[state.PRICES]
    )
    app[state.EVENTS].spent(body, outcome)  # nothing to do unless a console listens
    return bodies.respond(outcome)


async def spend_summary(request: web.Request, query: wire.SpendSummaryQuery) -> web.Response:
    groups = await request.app[state.STORE].spend_summary(query.group_by, query.since, query.until)
    return bodies.respond(wire.SpendSummary(groups=groups))


async def preflight(request: web.Request, query: commands.ScopeIds) -> web.Response:
    return bodies.respond(await spending.preflight(request.app[state.STORE], query))
