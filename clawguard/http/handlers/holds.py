"""Hold routes: place, read, commit (a spend), release (README: Holds)."""

from __future__ import annotations

from aiohttp import web

from clawguard.core import commands, records
from clawguard.http import bodies, state, wire


async def place_hold(request: web.Request, body: commands.HoldRequest) -> web.Response:
    owner = state.principal_of(request).key_id
    hold = await request.app[state.HOLDS].place(body, owner)
    return bodies.respond(records.HoldOne(hold=hold), status=201)


async def get_hold(request: web.Request, path: wire.ItemId) -> web.Response:
    return bodies.respond(records.HoldOne(hold=await request.app[state.HOLDS].get(path.id)))


async def commit_hold(
    request: web.Request, path: wire.ItemId, body: commands.HoldCommit
) -> web.Response:
    return bodies.respond(await request.app[state.HOLDS].commit(path.id, body))


async def release_hold(request: web.Request, path: wire.ItemId) -> web.Response:
    return bodies.respond(records.HoldOne(hold=await request.app[state.HOLDS].release(path.id)))
