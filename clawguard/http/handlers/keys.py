"""API keys over HTTP (admin): make one (its value shown once), list them, revoke one."""

from __future__ import annotations

from aiohttp import web

from clawguard.core import principals
from clawguard.http import bodies, state, wire


def _names(names: list[str] | None) -> frozenset[str] | None:
    return None if names is None else frozenset(names)


async def create_key(request: web.Request, body: wire.KeyCreate) -> web.Response:
    expires_at = None
    if body.expires_in_ms is not None:
        expires_at = request.app[state.CLOCK]() + body.expires_in_ms
    principal = principals.make(body.role, body.name, _names(body.leads), _names(body.groups),
                                expires_at)
    key = principals.new_key()
    record = await request.app[state.STORE].add_key(principal, principals.hash_key(key))
    return bodies.respond(wire.KeyCreated(api_key=record, key=key), status=201)


async def list_keys(request: web.Request) -> web.Response:
    return bodies.respond(wire.KeyList(keys=await request.app[state.STORE].list_keys()))


async def revoke_key(request: web.Request, path: wire.ItemId) -> web.Response:
    return bodies.respond(wire.KeyOne(api_key=await request.app[state.STORE].revoke_key(path.id)))


async def me(request: web.Request) -> web.Response:
    """Who the key is (the console shows the views its role may use)."""
    principal = state.principal_of(request)
    return bodies.respond(wire.Me(
        key_id=principal.key_id, name=principal.name, role=principal.role,
        leads=None if principal.leads is None else sorted(principal.leads),
        groups=None if principal.groups is None else sorted(principal.groups),
        expires_at=principal.expires_at,
    ))
