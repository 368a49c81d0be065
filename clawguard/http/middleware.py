"""What every request goes through: request ids, metrics, the one JSON error shape, and
authentication, in the route's own handler (`serve`), not an aiohttp middleware."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from clawguard.core import errors, principals
from clawguard.http import access, state
from clawguard.runtime import logs

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A route's own handler: its response, or the future of it (a parked approval wait's).
Call = Callable[..., Awaitable[web.StreamResponse | asyncio.Future[web.Response]]]
# What a route's Endpoint declares, parsed from the request and handed over by name.
Parse = Callable[[web.Request], Awaitable[dict[str, Any]]]
Translate = Callable[[errors.ClawguardError], errors.ClawguardError]
# The last route's name: every path and method no other route takes, answered 404 or 405.
_UNROUTED = "unrouted"
STATUS: dict[type[errors.ClawguardError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Unprocessable: 422,
    errors.RequestTimeout: 408,
    errors.QuotaExceeded: 429,
    errors.StoreUnavailable: 503,
}


def error_response(status: int, code: str, message: str, details: Any = None) -> web.Response:
    return web.json_response(
        {"error": code, "message": message, "details": details}, status=status
    )


def _status_of(exc: errors.ClawguardError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500


async def _allowed_methods(request: web.Request) -> set[str]:
    """The methods of the first route template that matches the path, in route-table order,
    from every resource aiohttp made for that template (one is made per run of adjacent
    routes). aiohttp's own Allow unites every matching template: /api/guardrails/evaluate
    would also offer the methods of /api/guardrails/{id}, which "evaluate" is not."""
    template: str | None = None
    methods: set[str] = set()
    for resource in request.app.router.resources():
        if (template is not None and resource.canonical != template) or (
                resource.name == _UNROUTED):
            continue
        _, allowed = await resource.resolve(request)
        if allowed:
            template = resource.canonical
            methods |= allowed
    return methods


_REQUEST_ID = re.compile(r"[\w.:/@+=-]{1,128}")


# Made-up ids: a random prefix per process and a counter (no syscall per request).
_ID_PREFIX = secrets.token_hex(4) + "-"
_id_counter = itertools.count(1)

# Routes that may wait for a person: their time is clawguard_approval_wait_seconds, and
# left out of the request latency, which would otherwise measure the humans, not the API.
# The event stream lasts as long as a console stays open.
WAITS_FOR_PEOPLE = frozenset({
    ("POST", "/api/governance/delegation-approval"),
    ("POST", "/api/tools/approvals"),
    ("GET", "/api/tools/approvals/{id}"),
    ("POST", "/api/governance/authorize"),  # an ALERT waits like delegation-approval
    ("GET", "/api/events"),
})


def serve(
    call: Call, parse: Parse | None = None,
    translate: Translate | None = None, *, routed: bool = True,
) -> Handler:
    """The aiohttp handler of a route: `call` with what `parse` read, the request named
    (X-Request-Id) in its logs and its response, counted and timed by route template, its
    errors answered in the one JSON shape (through `translate`, if given), its key checked
    against access.PERMISSIONS.

    One coroutine, not an aiohttp middleware plus a parsing wrapper: each is a frame every
    request builds (aiohttp adds one more of its own when an app has middlewares), and a
    parked approval wait keeps all of them for as long as it waits.
    """

    async def served(request: web.Request) -> web.StreamResponse:
        given = request.headers.get("X-Request-Id", "")
        rid = given if _REQUEST_ID.fullmatch(given) else f"{_ID_PREFIX}{next(_id_counter):x}"
        # No reset at the end: aiohttp serves each request in a task of its own, whose
        # context ends with it.
        logs.request_id.set(rid)
        route = request.match_info.route.resource.canonical if routed else None  # type: ignore[union-attr]
        timed = (request.method, route) not in WAITS_FOR_PEOPLE
        started = time.perf_counter() if timed else 0.0
        try:
            # 404 and 405 need no key to be told. auth.mode none stores no principal:
            # state.principal_of answers the anonymous admin (a request's first state
            # entry, ~140 B, would be kept by every parked wait).
            if route is not None and request.app[state.CONFIG].auth.mode != "none":
                method = "GET" if request.method == "HEAD" else request.method
                if not access.is_public(method, route):
                    request[state.PRINCIPAL] = await _authenticate(request, method, route)
            if parse is None:
                response = await call(request)
            else:
                response = await call(request, **await parse(request))
            if isinstance(response, asyncio.Future):  # a parked approval's answer, to come
                # Parked: aiohttp's idle-connection timer, which never cuts a request in
                # progress and is armed again once this one is answered, need not be kept
                # meanwhile (~250 B a wait; RequestHandler.keep_alive cancels it).
                request.protocol.keep_alive(True)
                response = await response
        except errors.ClawguardError as exc:
            response = _error_answer(exc if translate is None else translate(exc))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = await _http_error_answer(request, exc)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = error_response(500, "internal_error", "internal error")
        request.app[state.METRICS].count_request(
            request.method, route or "unmatched", response.status,
            time.perf_counter() - started if timed else None,
        )
        response.headers["X-Request-Id"] = rid
        return response

    return served


async def _unrouted(request: web.Request) -> web.StreamResponse:
    allowed = await _allowed_methods(request)
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def unrouted() -> web.RouteDef:
    """The route after every other: what no route takes is answered 404 (or 405, naming
    the methods of the path's template) in the one error shape."""
    return web.route("*", "/{path:.*}", serve(_unrouted, routed=False), name=_UNROUTED)


def _error_answer(exc: errors.ClawguardError) -> web.Response:
    response = error_response(_status_of(exc), exc.code, exc.message, exc.details)
    if isinstance(exc, errors.QuotaExceeded):  # whole seconds, rounded up
        response.headers["Retry-After"] = str(-(-exc.details["retryAfterMs"] // 1000))
    return response


async def _http_error_answer(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = exc.reason.lower().replace(" ", "_")
    response = error_response(exc.status, code, exc.reason)
    if "Allow" in exc.headers:  # a 405 says which methods would do
        response.headers["Allow"] = ",".join(sorted(await _allowed_methods(request)))
    return response


async def _authenticate(request: web.Request, method: str, route: str) -> principals.Principal:
    key = access.presented_key(request.headers.get("Authorization"),
                             request.headers.get("X-API-Key"))
    if key is None:
        _refuse(request, "missing_key", None)
        raise errors.Unauthorized("an API key is required (Authorization: Bearer <key>)")
    key_hash, now = principals.hash_key(key), request.app[state.CLOCK]()
    cache = request.app[state.KEY_CACHE]
    principal = cache.get(key_hash, now)
    if principal is None:
        principal = None if cache.unknown(key_hash, now) else (
            await request.app[state.STORE].find_key(key_hash, now))
        if principal is None:
            cache.put_unknown(key_hash, now)
            _refuse(request, "unknown_key", None)
            raise errors.Unauthorized("the API key is unknown or revoked")
        cache.put(key_hash, principal, now)
    request.app[state.KEY_USAGE].note(principal.key_id, now)
    if not access.may_call(principal, method, route):
        _refuse(request, "role_forbidden", principal)
        raise errors.Forbidden(f"a {principal.role} key may not call {method} {route}")
    return principal


def _refuse(
    request: web.Request, reason: str, principal: principals.Principal | None
) -> None:
    """Count a refused call, to be audited in a folded row (services/refusals.py): no write
    on a refused call's path."""
    request.app[state.REFUSALS].note(reason, principal, request.remote, request.method,
                                     request.path)
