"""The HTTP surface: handlers, the route table, the error middleware and create_app().

Handlers are thin: parse with pydantic, call the domain, serialise. Every
error leaves through one middleware in one JSON shape:
`{"error": code, "message": text, "details": ...}`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

import pydantic
from aiohttp import web

from clawguard import (
    approvals,
    auth,
    budgets,
    config,
    errors,
    logs,
    metrics,
    models,
    openapi,
    reaper,
    sqlite,
    store,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# The longest request line the API admits: preflight with four 200-character ids, each
# character 4 UTF-8 bytes percent-encoded (~9.7 KB). aiohttp's 8190 would answer such a
# request with its parser's text/plain 400, outside the one error shape.
MAX_REQUEST_LINE_BYTES = 16 * 1024

CONFIG = web.AppKey("config", config.Config)
CLOCK: web.AppKey[Callable[[], int]] = web.AppKey("clock")
STORE = web.AppKey("store", store.Store)
KEY_CACHE = web.AppKey("key_cache", auth.KeyCache)
PRINCIPAL = web.RequestKey("principal", auth.Principal)
APPROVALS = web.AppKey("approvals", approvals.Approvals)
REAPER = web.AppKey("reaper", reaper.Reaper)
METRICS = web.AppKey("metrics", metrics.Metrics)
OPENAPI = web.AppKey("openapi", bytes)
# Who resolved or revoked, when auth.mode is none: the body's `resolvedBy`, else this header.
# With keys, it is always the key's name.
ACTOR_HEADER = "X-Clawguard-Actor"

M = TypeVar("M", bound=pydantic.BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATUS: dict[type[errors.ClawguardError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Unprocessable: 422,
    errors.RequestTimeout: 408,
    errors.StoreUnavailable: 503,
}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


# --- errors ---------------------------------------------------------------------


def error_response(status: int, code: str, message: str, details: Any = None) -> web.Response:
    return web.json_response(
        {"error": code, "message": message, "details": details}, status=status
    )


def _status_of(exc: errors.ClawguardError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.ClawguardError as exc:
        return error_response(_status_of(exc), exc.code, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        response = error_response(exc.status, code, exc.reason)
        if "Allow" in exc.headers:  # a 405 says which methods would do
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error")


# --- request ids ---------------------------------------------------------------------

_REQUEST_ID = re.compile(r"[\w.:/@+=-]{1,128}")
# Made-up ids: a random prefix per process and a counter (no syscall per request).
_ID_PREFIX = secrets.token_hex(4) + "-"
_id_counter = itertools.count(1)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Name every request (the caller's X-Request-Id if sane) in its logs and its response."""
    given = request.headers.get("X-Request-Id", "")
    rid = given if _REQUEST_ID.fullmatch(given) else f"{_ID_PREFIX}{next(_id_counter):x}"
    token = logs.request_id.set(rid)
    try:
        response = await handler(request)
    finally:
        logs.request_id.reset(token)
    response.headers["X-Request-Id"] = rid
    return response


# --- metrics -------------------------------------------------------------------------


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every answer by route template (never the raw path: bounded labels) and time it."""
    started = time.perf_counter()
    response = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    request.app[METRICS].count_request(
        request.method, route, response.status, time.perf_counter() - started
    )
    return response


async def metrics_page(request: web.Request) -> web.Response:
    """Prometheus text; budget and approval gauges are read from the store now, not kept live."""
    counters, db = request.app[METRICS], request.app[STORE]
    counters.set_budgets(await db.budget_levels())
    counters.pending_approvals.set(await db.count_pending_approvals(request.app[CLOCK]()))
    return web.Response(body=counters.render(),
                        headers={"Content-Type": metrics.CONTENT_TYPE})


# --- authentication ----------------------------------------------------------------


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Find the caller's key and check its role against auth.PERMISSIONS."""
    match = request.match_info
    if match.http_exception is not None:  # 404 and 405 need no key to be told
        return await handler(request)
    method = "GET" if request.method == "HEAD" else request.method
    route = match.route.resource.canonical if match.route.resource else request.path
    if request.app[CONFIG].auth.mode == "none":
        request[PRINCIPAL] = auth.ANONYMOUS
    elif not auth.is_public(method, route):
        request[PRINCIPAL] = await _authenticate(request, method, route)
    return await handler(request)


async def _authenticate(request: web.Request, method: str, route: str) -> auth.Principal:
    key = auth.presented_key(request.headers.get("Authorization"),
                             request.headers.get("X-API-Key"))
    if key is None:
        await _refuse(request, "missing_key", None)
        raise errors.Unauthorized("an API key is required (Authorization: Bearer <key>)")
    key_hash, now = auth.hash_key(key), request.app[CLOCK]()
    cache = request.app[KEY_CACHE]
    principal = cache.get(key_hash, now)
    if principal is None:
        principal = await request.app[STORE].find_key(key_hash)
        if principal is None:
            await _refuse(request, "unknown_key", None)
            raise errors.Unauthorized("the API key is unknown or revoked")
        cache.put(key_hash, principal, now)
    if not principal.may_call(method, route):
        await _refuse(request, "role_forbidden", principal)
        raise errors.Forbidden(f"a {principal.role} key may not call {method} {route}")
    return principal


async def _refuse(request: web.Request, reason: str, principal: auth.Principal | None) -> None:
    """Audit a refused call; never the key itself, only which key it was, if known."""
    details: dict[str, Any] = {"method": request.method, "path": request.path, "reason": reason,
                               "remote": request.remote}
    if principal is not None:
        details |= {"keyId": principal.key_id, "keyName": principal.name,
                    "role": principal.role}
    try:
        await request.app[STORE].audit_event("verification", "auth.refused", None, details)
    except errors.StoreUnavailable:
        log.warning("could not audit a refused call: %s", details)


# --- parsing ----------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


# One decoder for every body: json.loads(..., parse_float=...) would build one per call.
_JSON = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def _validation_details(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(part) for part in err["loc"]), "problem": err["msg"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise errors.InvalidInput("invalid request", _validation_details(exc)) from exc


async def parse_body(request: web.Request, model: type[M], optional: bool = False) -> M:
    """The JSON body as `model`; numbers are read as Decimal, never through a float."""
    if request.content.is_eof():  # the whole body came with the headers: no wait, no timer
        raw = await request.read()
    else:
        try:
            async with asyncio.timeout(request.app[CONFIG].server.client_timeout_ms / 1000):
                raw = await request.read()
        except TimeoutError as exc:
            raise errors.RequestTimeout("the request body did not arrive in time") from exc
    if not raw.strip() and optional:
        return validate(model, {})
    try:
        data = _JSON.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (ValueError, ArithmeticError, RecursionError) as exc:  # 1e999999999, [[[[...
        raise errors.InvalidInput("the body is not valid JSON", str(exc)) from exc
    if not isinstance(data, dict):
        raise errors.InvalidInput("the body must be a JSON object")
    return validate(model, data)


def _json(model: models.Model, status: int = 200) -> web.Response:
    return web.Response(body=model.to_json_bytes(), status=status, content_type="application/json")


# --- handlers -----------------------------------------------------------------------


_OK = models.Ok().to_json_bytes()


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=_OK, content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    if await request.app[STORE].ready():
        return web.Response(body=_OK, content_type="application/json")
    return error_response(503, "not_ready", "the store is unreachable or not migrated")


async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


async def list_budgets(request: web.Request, query: models.BudgetFilter) -> web.Response:
    rows = await request.app[STORE].list_budgets(query.scope, query.status)
    return _json(models.BudgetList(budgets=rows))


async def set_budget(request: web.Request, body: models.BudgetSet) -> web.Response:
    return _json(models.BudgetOne(budget=await request.app[STORE].set_budget(body)))


async def delete_budget(request: web.Request, path: models.BudgetKey) -> web.Response:
    await request.app[STORE].delete_budget(path.scope, path.scope_id)
    return web.Response(status=204)


async def resume_budget(
    request: web.Request, path: models.BudgetKey, body: models.BudgetResume
) -> web.Response:
    return _json(await request.app[STORE].resume_budget(path.scope, path.scope_id,
                                                        body.grace_usd_cents))


async def record_spend(request: web.Request, body: models.SpendRequest) -> web.Response:
    return _json(await budgets.record_spend(request.app[STORE], body, request.app[METRICS]))


async def preflight(request: web.Request, query: models.ScopeIds) -> web.Response:
    return _json(await budgets.preflight(request.app[STORE], query))


async def list_audit(request: web.Request, query: models.AuditFilter) -> web.Response:
    rows = await request.app[STORE].list_audit(query.agent_id, query.event_type, query.since,
                                               query.limit)
    return _json(models.AuditList(audit=rows))


async def audit_head(request: web.Request) -> web.Response:
    return _json(await request.app[STORE].audit_head())


# --- approvals (SPEC section 4) -----------------------------------------------------


def _principal(request: web.Request) -> auth.Principal:
    principal: auth.Principal = request.get(PRINCIPAL, auth.ANONYMOUS)
    return principal


def _actor(request: web.Request, given: str | None = None) -> str | None:
    """Who decides or revokes: with keys, the key's name (a claim cannot override it);
    without, as the caller says (body, else header)."""
    principal = _principal(request)
    if principal is not auth.ANONYMOUS:
        return principal.name
    actor = given or request.headers.get(ACTOR_HEADER) or None
    if actor is not None and len(actor) > 200:
        raise errors.InvalidInput(f"{ACTOR_HEADER} must be 1 to 200 characters")
    return actor


# The two blocking handlers hold nothing but their arguments while they wait: every
# object a parked wait keeps is one more for each full garbage collection to walk.


async def delegation_approval(
    request: web.Request, body: models.DelegationApprovalRequest
) -> web.Response:
    return _json(await request.app[APPROVALS].request_delegation(body, _principal(request)))


async def request_tool_approval(
    request: web.Request, body: models.ToolApprovalRequest
) -> web.Response:
    return _json(await request.app[APPROVALS].request_tool(body, _principal(request)))


async def list_tool_approvals(request: web.Request) -> web.Response:
    return _json(models.ApprovalList(approvals=await request.app[APPROVALS].pending()))


async def get_tool_approval(
    request: web.Request, path: models.ItemId, query: models.ApprovalWait
) -> web.Response:
    approval = await request.app[APPROVALS].get(path.id, query.wait_ms)
    return _json(models.ApprovalOne(approval=approval))


async def resolve_tool_approval(
    request: web.Request, path: models.ItemId, body: models.ApprovalResolve
) -> web.Response:
    approval = await request.app[APPROVALS].resolve(
        path.id, body.decision, _actor(request, body.resolved_by), _principal(request)
    )
    return _json(models.ApprovalOne(approval=approval))


async def list_grants(request: web.Request, query: models.GrantFilter) -> web.Response:
    return _json(models.GrantList(grants=await request.app[APPROVALS].grants(query.agent_id)))


async def revoke_grant(request: web.Request, path: models.ItemId) -> web.Response:
    grant = await request.app[APPROVALS].revoke(path.id, _actor(request), _principal(request))
    return _json(models.GrantOne(grant=grant))


async def list_history(request: web.Request, query: models.HistoryFilter) -> web.Response:
    records = await request.app[APPROVALS].history(query.agent_id, query.limit)
    return _json(models.HistoryList(records=records))


async def append_history(request: web.Request, body: models.HistoryAppend) -> web.Response:
    return _json(models.HistoryOne(record=await request.app[APPROVALS].record(body)))


# --- the route table ------------------------------------------------------------------


class Route(NamedTuple):
    """One route: the handler is called with the models its Endpoint declares, parsed."""

    method: str
    path: str
    handler: Callable[..., Awaitable[web.StreamResponse]]
    endpoint: openapi.Endpoint

    def definition(self) -> web.RouteDef:
        return web.route(self.method, self.path, _parsing(self.handler, self.endpoint))


def _parsing(handler: Callable[..., Awaitable[web.StreamResponse]],
             ep: openapi.Endpoint) -> Handler:
    """The aiohttp handler: parse what `ep` declares, hand it over by name."""
    if not (ep.path or ep.query or ep.body):
        return handler
    path, query, body, optional = ep.path, ep.query, ep.body, ep.optional_body
    if body is not None and path is None and query is None:  # the spend path: nothing more
        async def parse_the_body(request: web.Request) -> web.StreamResponse:
            return await handler(request, body=await parse_body(request, body, optional))
        return parse_the_body

    async def parse_all(request: web.Request) -> web.StreamResponse:
        parsed: dict[str, pydantic.BaseModel] = {}
        if path is not None:
            parsed["path"] = validate(path, dict(request.match_info))
        if query is not None:
            parsed["query"] = validate(query, dict(request.query))
        if body is not None:
            parsed["body"] = await parse_body(request, body, optional)
        return await handler(request, **parsed)
    return parse_all


Endpoint = openapi.Endpoint
# Path, query and body errors are implied by what an Endpoint declares; `errors` adds the rest.
ROUTES = [
    Route("GET", "/healthz", healthz, Endpoint(
        "The process is up", models.Ok, store=False, tag="operations")),
    Route("GET", "/readyz", readyz, Endpoint(
        "The store is reachable and migrated", models.Ok, tag="operations")),
    Route("GET", "/metrics", metrics_page, Endpoint(
        "Prometheus metrics", media_type="text/plain", tag="operations")),
    Route("GET", "/openapi.json", openapi_document, Endpoint(
        "This document", store=False, tag="operations")),
    Route("GET", "/api/governance/budgets", list_budgets, Endpoint(
        "List budgets", models.BudgetList, query=models.BudgetFilter)),
    Route("POST", "/api/governance/budgets", set_budget, Endpoint(
        "Create or change a budget", models.BudgetOne, body=models.BudgetSet)),
    Route("DELETE", "/api/governance/budgets/{scope}/{scopeId}", delete_budget, Endpoint(
        "Delete a budget", status=204, path=models.BudgetKey, errors=(404,))),
    Route("POST", "/api/governance/budgets/{scope}/{scopeId}/resume", resume_budget, Endpoint(
        "Resume a paused budget, optionally with grace", models.Resumed,
        path=models.BudgetKey, body=models.BudgetResume, optional_body=True, errors=(404,))),
    Route("POST", "/api/governance/spend", record_spend, Endpoint(
        "Record a spend (the kill-switch)", models.SpendOutcome, body=models.SpendRequest,
        errors=(409, 422))),
    Route("GET", "/api/governance/preflight", preflight, Endpoint(
        "May these scopes spend?", models.Preflight, query=models.ScopeIds)),
    Route("GET", "/api/governance/audit", list_audit, Endpoint(
        "Read the audit trail", models.AuditList, query=models.AuditFilter)),
    Route("GET", "/api/governance/audit/head", audit_head, Endpoint(
        "The latest audit row's hash", models.AuditHead)),
    Route("POST", "/api/governance/delegation-approval", delegation_approval, Endpoint(
        "Ask a leader to approve a delegation; waits for the answer", models.Handshake,
        body=models.DelegationApprovalRequest, tag="approvals")),
    Route("POST", "/api/tools/approvals", request_tool_approval, Endpoint(
        "Ask to run a tool; waits for the answer", models.Handshake,
        body=models.ToolApprovalRequest, tag="approvals")),
    Route("GET", "/api/tools/approvals", list_tool_approvals, Endpoint(
        "The pending approvals", models.ApprovalList, tag="approvals")),
    # before {id}: "grants" is no id
    Route("GET", "/api/tools/approvals/grants", list_grants, Endpoint(
        "The live sticky grants", models.GrantList, query=models.GrantFilter, tag="approvals")),
    Route("DELETE", "/api/tools/approvals/grants/{id}", revoke_grant, Endpoint(
        "Revoke a sticky grant", models.GrantOne, path=models.ItemId, errors=(404, 409),
        tag="approvals")),
    Route("GET", "/api/tools/approvals/{id}", get_tool_approval, Endpoint(
        "One approval; with waitMs, first wait for its decision", models.ApprovalOne,
        path=models.ItemId, query=models.ApprovalWait, errors=(404,), tag="approvals")),
    Route("POST", "/api/tools/approvals/{id}/resolve", resolve_tool_approval, Endpoint(
        "Decide an approval", models.ApprovalOne, path=models.ItemId,
        body=models.ApprovalResolve, errors=(404, 409), tag="approvals")),
    Route("GET", "/api/approvals", list_history, Endpoint(
        "The approval history", models.HistoryList, query=models.HistoryFilter,
        tag="approvals")),
    Route("POST", "/api/approvals", append_history, Endpoint(
        "Append to the approval history", models.HistoryOne, body=models.HistoryAppend,
        tag="approvals")),
]


@functools.cache  # ROUTES is fixed; building the schemas takes ~40 ms, once per process
def openapi_json() -> bytes:
    """The document for ROUTES, as served at /openapi.json."""
    doc = openapi.document(
        openapi.Operation(r.method, r.path, r.endpoint, auth.is_public(r.method, r.path))
        for r in ROUTES
    )
    return json.dumps(doc, indent=1).encode()


# --- the application -------------------------------------------------------------------


def create_app(cfg: config.Config, clock: Callable[[], int] = wall_clock_ms) -> web.Application:
    app = web.Application(
        middlewares=[request_id_middleware, metrics_middleware, error_middleware,
                     auth_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[CONFIG] = cfg
    app[CLOCK] = clock
    app[METRICS] = metrics.Metrics()
    app[KEY_CACHE] = auth.KeyCache(cfg.auth.cache_ms)
    app.cleanup_ctx.append(_store_ctx)
    app.on_startup.append(_first_admin_key)
    app.cleanup_ctx.append(_approvals_ctx)
    app.on_shutdown.append(_answer_parked_waits)
    app[OPENAPI] = openapi_json()
    app.router.add_routes([route.definition() for route in ROUTES])
    return app


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    db = sqlite.SQLiteStore(app[CONFIG].storage, app[CLOCK])
    db.batch_observer = app[METRICS].observe_batch
    await db.open()
    app[STORE] = db
    yield
    await db.close()


async def _first_admin_key(app: web.Application) -> None:
    """On first start with no key, make an admin key and leave it where only the owner reads it."""
    cfg, db = app[CONFIG], app[STORE]
    if cfg.auth.mode != "keys" or await db.has_keys():
        return
    key = auth.new_key()
    path = cfg.admin_key_file
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # also when the file was already there
        out.write(key + "\n")
    await db.add_key(auth.Principal(key_id=auth.new_key_id(), name="first-admin", role="admin"),
                     auth.hash_key(key))
    log.warning("no API key existed: created an admin key in %s (readable by its owner only)",
                path)


async def _approvals_ctx(app: web.Application) -> AsyncIterator[None]:
    handshake = approvals.Approvals(
        app[STORE], app[CONFIG].approvals, app[CLOCK], app[METRICS]
    )
    sweeper = reaper.Reaper(handshake, app[CONFIG].approvals.sweep_ms, app[METRICS])
    await sweeper.sweep()  # what expired while the daemon was down, before serving
    app[APPROVALS], app[REAPER] = handshake, sweeper
    sweeper.start()
    yield
    await sweeper.stop()
    handshake.close()


async def _answer_parked_waits(app: web.Application) -> None:
    # on_shutdown runs before in-flight handlers are awaited: parked long-polls
    # answer `timeout` now instead of holding the drain for their whole wait.
    if APPROVALS in app:
        app[APPROVALS].close()
