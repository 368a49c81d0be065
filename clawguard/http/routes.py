"""The route table: every URL, its handler and its Endpoint (parsing and OpenAPI in one)."""

from __future__ import annotations

import functools
import json
from typing import Any, NamedTuple

from aiohttp import web

from clawguard.core import authorize, commands, errors, guardrails, records
from clawguard.http import access, authorizewire, bodies, gatewire, middleware, openapi, wire
from clawguard.http.handlers import (
    approvals,
    audit,
    budgets,
    events,
    governance,
    holds,
    keys,
    operations,
    registry,
    runs,
)
from clawguard.http.handlers import guardrails as guardrail_routes


class Route(NamedTuple):
    """One route: the handler is called with the models its Endpoint declares, parsed."""

    method: str
    path: str
    handler: middleware.Call
    endpoint: openapi.Endpoint
    # The handler may answer with the future of its response (a blocking approval route):
    # nothing of serve's is kept while a caller waits on it (middleware.serve).
    parks: bool = False

    def definition(self) -> web.RouteDef:
        ep = self.endpoint
        return web.route(self.method, self.path, middleware.serve(
            self.handler, _parsing(ep), _seed_code if ep.seed_codes else None,
            parks=self.parks))


def _seed_code(exc: errors.ClawguardError) -> errors.ClawguardError:
    """Bad input as seed 002 names it: every 400 is `invalid_parameter` or `missing_parameter`."""
    if not isinstance(exc, errors.InvalidInput) or isinstance(
            exc, guardrails.InvalidParameter | guardrails.MissingParameter):
        return exc
    translated = guardrails.InvalidParameter(exc.message, exc.details)
    translated.__cause__ = exc
    return translated


def _parsing(ep: openapi.Endpoint) -> middleware.Parse | None:
    """What `ep` declares, parsed, by the name its handler takes it under."""
    if not (ep.path or ep.query or ep.body):
        return None
    path, query, body, optional = ep.path, ep.query, ep.body, ep.optional_body
    if ep.many:
        assert body is not None and query is None

        async def parse_many(request: web.Request) -> dict[str, Any]:
            parsed_path = None if path is None else bodies.validate(path, dict(request.match_info))
            items = await bodies.parse_many(request, body, commands.RUN_EVENTS_MAX)
            return {"path": parsed_path, "body": items}

        return parse_many
    if body is not None and path is None and query is None:  # the spend path: nothing more

        async def parse_the_body(request: web.Request) -> dict[str, Any]:
            return {"body": await bodies.parse_body(request, body, optional)}

        return parse_the_body

    async def parse_all(request: web.Request) -> dict[str, Any]:
        parsed: dict[str, Any] = {}
        if path is not None:
            parsed["path"] = bodies.validate(path, dict(request.match_info))
        if query is not None:
            parsed["query"] = bodies.validate(query, dict(request.query))
        if body is not None:
            parsed["body"] = await bodies.parse_body(request, body, optional)
        return parsed

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
        "/api/governance/spend/summary",
        budgets.spend_summary,
        Endpoint("Spend grouped by scope or model, largest first", wire.SpendSummary,
                 query=wire.SpendSummaryQuery),
    ),
    Route(
        "GET",
        "/api/governance/preflight",
        budgets.preflight,
        Endpoint("May these scopes spend?", records.Preflight, query=commands.ScopeIds,
                 errors=(404,)),  # 404: an unknown runId
    ),
    Route(
        "POST",
        "/api/governance/holds",
        holds.place_hold,
        Endpoint(
            "Reserve an estimate under the caps before a step runs",
            records.HoldOne,
            status=201,
            body=commands.HoldRequest,
            errors=(404, 409),  # 404: an unknown runId
            tag="holds",
        ),
    ),
    Route(
        "GET",
        "/api/governance/holds/{id}",
        holds.get_hold,
        Endpoint("One hold", records.HoldOne, path=wire.ItemId, errors=(404,), tag="holds"),
    ),
    Route(
        "POST",
        "/api/governance/holds/{id}/commit",
        holds.commit_hold,
        Endpoint(
            "Charge a hold's actual cost as a spend, and free it",
            records.SpendOutcome,
            path=wire.ItemId,
            body=commands.HoldCommit,
            errors=(404, 409, 422),
            tag="holds",
        ),
    ),
    Route(
        "POST",
        "/api/governance/holds/{id}/release",
        holds.release_hold,
        Endpoint("Free a hold without spending", records.HoldOne, path=wire.ItemId,
                 errors=(404, 409), tag="holds"),
    ),
    Route(
        "POST",
        "/api/governance/runs",
        runs.start_run,
        Endpoint(
            "Start a run (quotas and delegation caps apply)",
            records.RunOne,
            status=201,
            body=commands.RunStart,
            errors=(404, 409, 429),
            tag="runs",
        ),
    ),
    Route(
        "GET",
        "/api/governance/runs",
        runs.list_runs,
        Endpoint("List runs, newest first", wire.RunList, query=wire.RunFilter, tag="runs"),
    ),
    Route(
        "GET",
        "/api/governance/runs/{id}",
        runs.get_run,
        Endpoint("One run", records.RunOne, path=wire.ItemId, errors=(404,), tag="runs"),
    ),
    Route(
        "POST",
        "/api/governance/runs/{id}/end",
        runs.end_run,
        Endpoint("End a run", records.RunOne, path=wire.ItemId, errors=(404, 409), tag="runs"),
    ),
    Route(
        "POST",
        "/api/governance/runs/{id}/events",
        runs.run_events,
        Endpoint(
            "Report a run's tool calls, results, costs and denials (circuit breakers)",
            records.RunEvents,
            path=wire.ItemId,
            body=commands.RunEvent,
            many=True,
            errors=(404, 409),
            tag="runs",
        ),
    ),
    Route(
        "GET",
        "/api/tenants/{tenantId}/quota",
        runs.get_quota,
        Endpoint("A tenant's run quota", records.Quota, path=wire.TenantKey, tag="runs"),
    ),
    Route(
        "PATCH",
        "/api/tenants/{tenantId}/quota",
        runs.set_quota,
        Endpoint(
            "Set or remove a tenant's quota overrides",
            records.Quota,
            path=wire.TenantKey,
            body=wire.QuotaPatch,
            errors=(422,),
            tag="runs",
        ),
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
        parks=True,
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
        parks=True,
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
            "Decide an approval, or vote on one with stages",
            wire.ApprovalOne,
            path=wire.ItemId,
            body=wire.ApprovalResolve,
            errors=(403, 404, 409),
            tag="approvals",
        ),
    ),
    Route(
        "POST",
        "/api/tools/approvals/{id}/waive",
        approvals.waive_tool_approval,
        Endpoint(
            "Approve an approval with stages without its votes (admin, with a reason)",
            wire.ApprovalOne,
            path=wire.ItemId,
            body=wire.ApprovalWaive,
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
    Route(
        "POST",
        "/api/keys",
        keys.create_key,
        Endpoint("Make an API key; its value is in this answer only", wire.KeyCreated,
                 status=201, body=wire.KeyCreate, tag="keys"),
    ),
    Route("GET", "/api/me", keys.me, Endpoint("The calling key: id, name, role, leads, groups",
                                             wire.Me, tag="keys")),
    Route("GET", "/api/keys", keys.list_keys, Endpoint("Every API key, never its value",
                                                        wire.KeyList, tag="keys")),
    Route(
        "DELETE",
        "/api/keys/{id}",
        keys.revoke_key,
        Endpoint("Revoke an API key", wire.KeyOne, path=wire.ItemId, errors=(404, 409),
                 tag="keys"),
    ),
    Route(
        "GET",
        "/api/events",
        events.stream,
        Endpoint(
            "Server-sent events the key's role may read (approvals, budgets, runs, spends);"
            " Last-Event-ID resumes after that event",
            media_type="text/event-stream",
            errors=(400,),  # a Last-Event-ID that is no event id
            tag="events",
        ),
    ),
    Route(
        "GET",
        "/api/guardrails",
        guardrail_routes.list_guardrails,
        Endpoint("List guardrail policies, newest first", gatewire.GuardrailList,
                 query=gatewire.GuardrailFilter, tag="guardrails", seed_codes=True),
    ),
    Route(
        "POST",
        "/api/guardrails",
        guardrail_routes.create_guardrail,
        Endpoint("Create a guardrail policy at version 1 (Idempotency-Key honoured)",
                 gatewire.Guardrail, status=201, body=gatewire.GuardrailCreate, errors=(409,),
                 tag="guardrails", seed_codes=True),
    ),
    # before {id}: "evaluate" is no id
    Route(
        "POST",
        "/api/guardrails/evaluate",
        guardrail_routes.evaluate,
        Endpoint("Dry run: what the policies would say about an action; records nothing",
                 gatewire.GuardrailEvaluation, body=gatewire.GuardrailEvaluate, errors=(404,),
                 tag="guardrails", seed_codes=True),
    ),
    Route(
        "GET",
        "/api/guardrails/{id}",
        guardrail_routes.get_guardrail,
        Endpoint("One guardrail policy; with ?version=N, that version verbatim",
                 gatewire.Guardrail, path=wire.ItemId, query=gatewire.GuardrailVersionQuery,
                 errors=(404,), tag="guardrails", seed_codes=True),
    ),
    Route(
        "PATCH",
        "/api/guardrails/{id}",
        guardrail_routes.update_guardrail,
        Endpoint("Change rules (a new version), description or status", gatewire.Guardrail,
                 path=wire.ItemId, body=gatewire.GuardrailUpdate, errors=(404,),
                 tag="guardrails", seed_codes=True),
    ),
    Route(
        "DELETE",
        "/api/guardrails/{id}",
        guardrail_routes.delete_guardrail,
        Endpoint("Remove a guardrail policy from evaluation; its versions stay readable",
                 gatewire.GuardrailDeleted, path=wire.ItemId, errors=(404,), tag="guardrails",
                 seed_codes=True),
    ),
    Route(
        "GET",
        "/api/guardrails/{id}/versions",
        guardrail_routes.list_versions,
        Endpoint("A guardrail policy's versions, newest first", gatewire.GuardrailVersions,
                 path=wire.ItemId, errors=(404,), tag="guardrails", seed_codes=True),
    ),
    Route(
        "POST",
        "/api/guardrails/{id}/versions/{n}/rollback",
        guardrail_routes.rollback,
        Endpoint("A new version with version n's rules", gatewire.GuardrailRolledBack,
                 path=gatewire.GuardrailVersionPath, body=gatewire.GuardrailRollback,
                 optional_body=True, errors=(404,), tag="guardrails", seed_codes=True),
    ),
    Route(
        "GET",
        "/api/tools",
        registry.list_tools,
        Endpoint("The tool registry", gatewire.ToolList, query=gatewire.ToolFilter, tag="tools"),
    ),
    Route(
        "POST",
        "/api/tools",
        registry.register_tool,
        Endpoint("Register a tool", gatewire.Tool, status=201, body=gatewire.ToolCreate,
                 errors=(409,), tag="tools"),
    ),
    Route(
        "POST",
        "/api/tools/{name}/deprecate",
        registry.deprecate_tool,
        Endpoint("Deprecate a tool (it still runs, with a warning)", gatewire.Tool,
                 path=gatewire.ToolKey, body=gatewire.ToolDeprecate, errors=(404, 409, 422),
                 tag="tools"),
    ),
    Route(
        "POST",
        "/api/tools/{name}/archive",
        registry.archive_tool,
        Endpoint("Archive a tool, for good", gatewire.Tool, path=gatewire.ToolKey,
                 errors=(404, 409), tag="tools"),
    ),
    Route(
        "GET",
        "/api/tool-policies",
        registry.list_tool_policies,
        Endpoint("Tool policies", gatewire.ToolPolicyList, tag="tools"),
    ),
    Route(
        "POST",
        "/api/tool-policies",
        registry.create_tool_policy,
        Endpoint("Set a registered tool's policy (one per tool)", gatewire.ToolPolicy,
                 status=201, body=gatewire.ToolPolicyCreate, errors=(409, 422), tag="tools"),
    ),
    Route(
        "DELETE",
        "/api/tool-policies/{id}",
        registry.delete_tool_policy,
        Endpoint("Delete a tool policy", status=204, path=gatewire.ItemKey, errors=(404,),
                 tag="tools"),
    ),
    Route(
        "GET",
        "/api/role-policy-overrides",
        registry.list_role_overrides,
        Endpoint("Role overrides", gatewire.RoleOverrideList, tag="tools"),
    ),
    Route(
        "POST",
        "/api/role-policy-overrides",
        registry.create_role_override,
        Endpoint("Allow or deny a registered tool to a role", gatewire.RoleOverride,
                 status=201, body=gatewire.RoleOverrideCreate, errors=(409, 422), tag="tools"),
    ),
    Route(
        "DELETE",
        "/api/role-policy-overrides/{id}",
        registry.delete_role_override,
        Endpoint("Delete a role override", status=204, path=gatewire.ItemKey, errors=(404,),
                 tag="tools"),
    ),
    Route(
        "POST",
        "/api/governance/authorize",
        governance.authorize_action,
        Endpoint("May this action run? ALLOW, BLOCK or PENDING, with its receipt",
                 authorizewire.Verdict, body=authorize.Request, errors=(404, 409),
                 tag="authorize"),
    ),
    Route(
        "GET",
        "/api/governance/receipts/{id}",
        governance.get_receipt,
        Endpoint("One receipt: everything behind a verdict", authorizewire.Receipt,
                 path=wire.ItemId, errors=(404,), tag="authorize"),
    ),
    Route(
        "GET",
        "/api/governance/settings",
        governance.get_settings,
        Endpoint("The approval settings", authorizewire.Settings, tag="authorize"),
    ),
    Route(
        "PATCH",
        "/api/governance/settings",
        governance.patch_settings,
        Endpoint("Change the approval settings (category_flags merge key by key)",
                 authorizewire.Settings, body=authorizewire.SettingsPatch, errors=(422,),
                 tag="authorize"),
    ),
    Route(
        "GET",
        "/api/governance/enforcement/check",
        governance.enforcement_check,
        Endpoint("What holds an agent, mission, team or tenant back now",
                 authorizewire.Enforcement, query=authorizewire.EnforcementQuery,
                 tag="authorize"),
    ),
    Route(
        "GET",
        "/api/governance/report",
        governance.report,
        Endpoint("Governance report: verdicts and approvals over a period",
                 authorizewire.Report, query=authorizewire.PeriodQuery, tag="authorize"),
    ),
    Route(
        "GET",
        "/api/governance/approval-stats",
        governance.approval_stats,
        Endpoint("Approvals by tool and by category over a period",
                 authorizewire.ApprovalStats, query=authorizewire.PeriodQuery, tag="authorize"),
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
