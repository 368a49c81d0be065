"""The route table: every URL, its handler and its Endpoint (parsing and OpenAPI in one)."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import pydantic
from aiohttp import web

from clawguard.core import commands, records
from clawguard.http import access, bodies, middleware, openapi, wire
from clawguard.http.handlers import approvals, audit, budgets, operations


class Route(NamedTuple):
    """One route: the handler is called with the models its Endpoint declares, parsed."""

    method: str
    path: str
    handler: Callable[..., Awaitable[web.StreamResponse]]
    endpoint: openapi.Endpoint

    def definition(self) -> web.RouteDef:
        return web.route(self.method, self.path, _parsing(self.handler, self.endpoint))


def _parsing(
    handler: Callable[..., Awaitable[web.StreamResponse]], ep: openapi.Endpoint
) -> middleware.Handler:
    """The aiohttp handler: parse what `ep` declares, hand it over by name."""
    if not (ep.path or ep.query or ep.body):
        return handler
    path, query, body, optional = ep.path, ep.query, ep.body, ep.optional_body
    if body is not None and path is None and query is None:  # the spend path: nothing more

        async def parse_the_body(request: web.Request) -> web.StreamResponse:
            return await handler(request, body=await bodies.parse_body(request, body, optional))

        return parse_the_body

    async def parse_all(request: web.Request) -> web.StreamResponse:
        parsed: dict[str, pydantic.BaseModel] = {}
        if path is not None:
            parsed["path"] = bodies.validate(path, dict(request.match_info))
        if query is not None:
            parsed["query"] = bodies.validate(query, dict(request.query))
        if body is not None:
            parsed["body"] = await bodies.parse_body(request, body, optional)
        return await handler(request, **parsed)

    return parse_all


Endpoint = openapi.Endpoint


# Path, query and body errors are implied by what an Endpoint declares; `errors` adds the rest.
ROUTES = [
    Route(
        "GET",
        "/healthz",
        operations.healthz,
        Endpoint("The process is up", wire.Ok, store=False, tag="operations"),
    ),
    Route(
        "GET",
        "/readyz",
        operations.readyz,
        Endpoint("The store is reachable and migrated", wire.Ok, tag="operations"),
    ),
    Route(
        "GET",
        "/metrics",
        operations.metrics_page,
        Endpoint("Prometheus metrics", media_type="text/plain", tag="operations"),
    ),
    Route(
        "GET",
        "/openapi.json",
        operations.openapi_document,
        Endpoint("This document", store=False, tag="operations"),
    ),
    Route(
        "GET",
        "/api/governance/budgets",
        budgets.list_budgets,
        Endpoint("List budgets", wire.BudgetList, query=wire.BudgetFilter),
    ),
    Route(
        "POST",
        "/api/governance/budgets",
        budgets.set_budget,
        Endpoint("Create or change a budget", wire.BudgetOne, body=commands.BudgetSet),
    ),
    Route(
        "DELETE",
        "/api/governance/budgets/{scope}/{scopeId}",
        budgets.delete_budget,
        Endpoint("Delete a budget", status=204, path=wire.BudgetKey, errors=(404,)),
    ),
    Route(
        "POST",
        "/api/governance/budgets/{scope}/{scopeId}/resume",
        budgets.resume_budget,
        Endpoint(
            "Resume a paused budget, optionally with grace",
            records.Resumed,
            path=wire.BudgetKey,
            body=wire.BudgetResume,
            optional_body=True,
            errors=(404,),
        ),
    ),
    Route(
        "POST",
        "/api/governance/spend",
        budgets.record_spend,
        Endpoint(
            "Record a spend (the kill-switch)",
            records.SpendOutcome,
            body=commands.SpendRequest,
            errors=(409, 422),
        ),
    ),
    Route(
        "GET",
        "/api/governance/preflight",
        budgets.preflight,
        Endpoint("May these scopes spend?", records.Preflight, query=commands.ScopeIds),
    ),
    Route(
        "GET",
        "/api/governance/audit",
        audit.list_audit,
        Endpoint("Read the audit trail", wire.AuditList, query=wire.AuditFilter),
    ),
    Route(
        "GET",
        "/api/governance/audit/head",
        audit.audit_head,
        Endpoint("The latest audit row's hash", records.AuditHead),
    ),
    Route(
        "POST",
        "/api/governance/delegation-approval",
        approvals.delegation_approval,
        Endpoint(
            "Ask a leader to approve a delegation; waits for the answer",
            records.Handshake,
            body=commands.DelegationApprovalRequest,
            tag="approvals",
        ),
    ),
    Route(
        "POST",
        "/api/tools/approvals",
        approvals.request_tool_approval,
        Endpoint(
            "Ask to run a tool; waits for the answer",
            records.Handshake,
            body=commands.ToolApprovalRequest,
            tag="approvals",
        ),
    ),
    Route(
        "GET",
        "/api/tools/approvals",
        approvals.list_tool_approvals,
        Endpoint("The pending approvals, a page at a time, newest first", wire.ApprovalList,
                 query=wire.PendingFilter, tag="approvals"),
    ),
    # before {id}: "grants" is no id
    Route(
        "GET",
        "/api/tools/approvals/grants",
        approvals.list_grants,
        Endpoint("The live sticky grants", wire.GrantList, query=wire.GrantFilter, tag="approvals"),
    ),
    Route(
        "DELETE",
        "/api/tools/approvals/grants/{id}",
        approvals.revoke_grant,
        Endpoint(
            "Revoke a sticky grant",
            wire.GrantOne,
            path=wire.ItemId,
            errors=(404, 409),
            tag="approvals",
        ),
    ),
    Route(
        "GET",
        "/api/tools/approvals/{id}",
        approvals.get_tool_approval,
        Endpoint(
            "One approval; with waitMs, first wait for its decision",
            wire.ApprovalOne,
            path=wire.ItemId,
            query=wire.ApprovalWait,
            errors=(404,),
            tag="approvals",
        ),
    ),
    Route(
        "POST",
        "/api/tools/approvals/{id}/resolve",
        approvals.resolve_tool_approval,
        Endpoint(
            "Decide an approval",
            wire.ApprovalOne,
            path=wire.ItemId,
            body=wire.ApprovalResolve,
            errors=(404, 409),
            tag="approvals",
        ),
    ),
    Route(
        "GET",
        "/api/approvals",
        approvals.list_history,
        Endpoint(
            "The approval history", wire.HistoryList, query=wire.HistoryFilter, tag="approvals"
        ),
    ),
    Route(
        "POST",
        "/api/approvals",
        approvals.append_history,
        Endpoint(
            "Append to the approval history",
            wire.HistoryOne,
            body=commands.HistoryAppend,
            tag="approvals",
        ),
    ),
]


@functools.cache  # ROUTES is fixed; building the schemas takes ~40 ms, once per process
def openapi_json() -> bytes:
    """The document for ROUTES, as served at /openapi.json."""
    doc = openapi.document(
        openapi.Operation(r.method, r.path, r.endpoint, access.is_public(r.method, r.path))
        for r in ROUTES
    )
    return json.dumps(doc, indent=1).encode()
