"""What every request goes through: request ids, metrics, the one JSON error shape, and
authentication, in the route's own handler (`serve`), not an aiohttp middleware."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, NamedTuple, cast

from aiohttp import web

from clawguard.core import errors, principals
from clawguard.http import access, bodies, state
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
    translate: Translate | None = None, *, routed: bool = True, parks: bool = False,
) -> Handler:
    """The aiohttp handler of a route: `call` with what `parse` read, the request named
    (X-Request-Id) in its logs and its response, counted and timed by route template, its
    errors answered in the one JSON shape (through `translate`, if given), its key checked
    against access.PERMISSIONS.

    One coroutine, not an aiohttp middleware plus a parsing wrapper: each is a frame every
    request builds (aiohttp adds one more of its own when an app has middlewares), and a
    parked approval wait keeps all of them for as long as it waits. A route whose `call`
    may answer with a future (`parks`: the blocking approval routes) keeps not even that
    one while its caller waits: its handler is a `_Parking`, which runs the coroutine until
    it hands over the future, then waits on the future alone.
    """

    async def served(
        request: web.Request, parking: bool = False
    ) -> web.StreamResponse | _HandedOver:
        given = request.headers.get("X-Request-Id", "")
        rid = given if _REQUEST_ID.fullmatch(given) else f"{_ID_PREFIX}{next(_id_counter):x}"
        logs.name_request(rid)  # aiohttp serves each request in a task of its own
        route = request.match_info.route.resource.canonical if routed else None  # type: ignore[union-attr]
        # Routes that wait for people are not timed (None: no timestamp taken).
        started = time.perf_counter() if (request.method, route) not in WAITS_FOR_PEOPLE else None
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
                bodies.drop_read_buffer(request)
                if parking:  # _Parking waits on it: this frame ends now
                    return _HandedOver(response, rid, route, started)
                response = await response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = await _http_error_answer(request, exc)
        except Exception as exc:
            response = _failure_answer(request, exc, translate)
        return _finish(request, rid, route, started, response)

    if not parks:  # never parking: `served` answers every request itself
        return cast(Handler, served)

    def parking(request: web.Request) -> Awaitable[web.StreamResponse]:
        return _Parking(served(request, True), request, translate)

    return _as_coroutine_function(parking)


class _HandedOver(NamedTuple):
    """What `serve`'s coroutine hands `_Parking` when its call answered with a future."""

    future: asyncio.Future[web.Response]
    rid: str
    route: str | None
    started: float | None


def _as_coroutine_function(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> Handler:
    """`handler`, marked as a coroutine function: aiohttp wraps any other route handler in a
    coroutine of its own (a frame more, kept as long as the request), and awaits what it
    returns. inspect.markcoroutinefunction is Python 3.12's; 3.11's asyncio looks for the
    marker it sets (asyncio.coroutines._is_coroutine, which asyncio.iscoroutinefunction
    checks, as aiohttp does)."""
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:
        marked: Handler = mark(handler)
        return marked
    handler._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
    assert asyncio.iscoroutinefunction(handler)
    return handler


class _Parking(Generator[Any, None, web.StreamResponse]):
    """The awaitable a parking route's handler returns (aiohttp awaits it): `serve`'s
    coroutine, delegated to until it ends; when it ends by handing over a parked future,
    that future, awaited as `await future` would (asyncio.Future.__await__), then answered
    and counted as the coroutine would have.

    While the caller waits, this object (its slots: the future, the request, the request
    id, route and start) is all clawguard's HTTP layer keeps: the coroutine's frame (~330 B)
    is gone, and the future is awaited without an iterator of its own (bench/README.md,
    "Fourth pass").
    """

    __slots__ = ("_coroutine", "_future", "_request", "_rid", "_route", "_started",
                 "_translate")

    def __init__(self, coroutine: Coroutine[Any, Any, web.StreamResponse | _HandedOver],
                 request: web.Request, translate: Translate | None) -> None:
        self._coroutine: Coroutine[Any, Any, web.StreamResponse | _HandedOver] | None = coroutine
        self._future: asyncio.Future[web.Response] | None = None
        self._request = request
        self._translate = translate
        self._rid = ""
        self._route: str | None = None
        self._started: float | None = None

    def __await__(self) -> _Parking:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: None) -> Any:
        coroutine = self._coroutine
        if coroutine is not None:
            try:
                return coroutine.send(value)
            except StopIteration as stop:
                return self._ended(stop.value)
        future = self._future
        assert future is not None
        if not future.done():
            raise RuntimeError("await wasn't used with future")
        try:
            answer = future.result()
        except Exception as exc:  # asyncio's Task throws it in instead (throw, below)
            return self._failed(exc)
        return self._answered(answer)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        coroutine = self._coroutine
        if coroutine is None:  # the future's outcome: asyncio's Task throws its exception in
            exc = _exception(typ, val, tb)
            if not isinstance(exc, Exception):  # cancelled (shutdown past its timeout)
                raise exc
            return self._failed(exc)
        try:
            if val is None and tb is None:
                return coroutine.throw(typ)
            return coroutine.throw(typ, val, tb)
        except StopIteration as stop:
            return self._ended(stop.value)

    def close(self) -> None:
        coroutine, self._coroutine = self._coroutine, None
        if coroutine is not None:
            coroutine.close()

    def _ended(self, outcome: web.StreamResponse | _HandedOver) -> Any:
        self._coroutine = None
        if not isinstance(outcome, _HandedOver):
            raise StopIteration(outcome)  # answered without waiting: finished already
        future = self._future = outcome.future
        self._rid, self._route, self._started = outcome.rid, outcome.route, outcome.started
        if future.done():
            return self.send(None)
        future._asyncio_future_blocking = True  # the Task waits for it (Future.__await__)
        return future

    def _failed(self, exc: Exception) -> Any:
        """The future ended in an error: never a decision's (a decision, a deadline or a
        failure inside the handshake is an answer), so the answer could not be made."""
        return self._answered(_failure_answer(self._request, exc, self._translate))

    def _answered(self, answer: web.StreamResponse) -> Any:
        self._future = None
        raise StopIteration(_finish(self._request, self._rid, self._route, self._started,
                                    answer))


def _exception(typ: Any, val: Any, tb: Any) -> BaseException:
    """What throw(typ[, val[, tb]]) raises, as a generator's throw makes it."""
    exc: BaseException = (typ if isinstance(typ, BaseException) else val
                          if isinstance(val, BaseException) else typ() if val is None else typ(val))
    return exc if tb is None else exc.with_traceback(tb)


def _finish(request: web.Request, rid: str, route: str | None, started: float | None,
            response: web.StreamResponse) -> web.StreamResponse:
    request.app[state.METRICS].count_request(
        request.method, route or "unmatched", response.status,
        None if started is None else time.perf_counter() - started,
    )
    response.headers["X-Request-Id"] = rid
    return response


def _failure_answer(request: web.Request, exc: Exception, translate: Translate | None
                    ) -> web.Response:
    if isinstance(exc, errors.ClawguardError):
        return _error_answer(exc if translate is None else translate(exc))
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error")


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
