"""Authorize, receipts, the approval settings, the enforcement check and the reports."""

from __future__ import annotations

from aiohttp import web

from clawguard.core import authorize
from clawguard.http import authorizewire, bodies, state, wire


async def authorize_action(request: web.Request, body: authorize.Request) -> web.Response:
    answer = await request.app[state.AUTHORIZER].decide(body, state.principal_of(request))
    return bodies.respond_document(answer)


async def get_receipt(request: web.Request, path: wire.ItemId) -> web.Response:
    return bodies.respond_document(await request.app[state.AUTHORIZER].receipt(path.id))


async def get_settings(request: web.Request) -> web.Response:
    return bodies.respond_document((await request.app[state.AUTHORIZER].settings()).wire())


async def patch_settings(request: web.Request, body: authorizewire.SettingsPatch
                         ) -> web.Response:
    settings = await request.app[state.AUTHORIZER].set_settings(
        body.fields(), state.principal_of(request))
    return bodies.respond_document(settings.wire())


async def enforcement_check(request: web.Request, query: authorizewire.EnforcementQuery
                            ) -> web.Response:
    return bodies.respond_document(await request.app[state.AUTHORIZER].enforcement(
        query.resource_type, query.resource_id))


async def report(request: web.Request, query: authorizewire.PeriodQuery) -> web.Response:
    return bodies.respond_document(await request.app[state.AUTHORIZER].report(query.period))


async def approval_stats(request: web.Request, query: authorizewire.PeriodQuery
                         ) -> web.Response:
    return bodies.respond_document(
        await request.app[state.AUTHORIZER].approval_stats(query.period))
