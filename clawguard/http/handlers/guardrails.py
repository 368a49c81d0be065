"""Guardrail routes (seed 002's wire format): CRUD, versions, rollback and the dry run."""

from __future__ import annotations

from aiohttp import web

from clawguard.core import documents, gate, guardrails
from clawguard.http import bodies, gatewire, state, wire

IDEMPOTENCY_HEADER = "Idempotency-Key"


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not 1 <= len(key) <= 200:
        raise guardrails.InvalidParameter(f"{IDEMPOTENCY_HEADER} must be 1 to 200 characters",
                                          {"field": IDEMPOTENCY_HEADER})
    return key


async def list_guardrails(request: web.Request, query: gatewire.GuardrailFilter) -> web.Response:
    stored = await request.app[state.STORE].list_guardrails()
    page = guardrails.page(stored, query.status, query.tool, query.cursor, query.limit)
    return bodies.respond_document({
        "object": "list", "data": [s.wire() for s in page.data], "has_more": page.has_more,
        "next_cursor": page.next_cursor,
    })


async def create_guardrail(request: web.Request, body: gatewire.GuardrailCreate) -> web.Response:
    try:
        draft = gate.validate_create(body.fields())
    except gate.InvalidPolicy as exc:
        raise guardrails.refusal(exc) from None
    stored, _ = await request.app[state.STORE].create_guardrail(
        draft, _idempotency_key(request), state.principal_of(request))
    return bodies.respond_document(stored.wire(), 201)


async def get_guardrail(
    request: web.Request, path: wire.ItemId, query: gatewire.GuardrailVersionQuery
) -> web.Response:
    found = await request.app[state.STORE].get_guardrail(path.id, query.version)
    return bodies.respond_document(guardrails.readable(found, path.id, query.version).wire())


async def update_guardrail(
    request: web.Request, path: wire.ItemId, body: gatewire.GuardrailUpdate
) -> web.Response:
    try:
        patch = gate.validate_update(body.fields())
    except gate.InvalidPolicy as exc:
        raise guardrails.refusal(exc) from None
    stored = await request.app[state.STORE].update_guardrail(
        path.id, patch, state.principal_of(request))
    return bodies.respond_document(stored.wire())


async def delete_guardrail(request: web.Request, path: wire.ItemId) -> web.Response:
    await request.app[state.STORE].delete_guardrail(path.id, state.principal_of(request))
    return bodies.respond_document({"id": path.id, "object": "guardrail_policy", "deleted": True})


async def list_versions(request: web.Request, path: wire.ItemId) -> web.Response:
    versions = guardrails.history(
        await request.app[state.STORE].guardrail_versions(path.id), path.id)
    return bodies.respond_document({"versions": [
        {"version": v.version, "created_at": documents.rfc3339(v.created_at),
         "created_by": v.created_by, "message": v.message}
        for v in versions
    ]})


async def rollback(
    request: web.Request, path: gatewire.GuardrailVersionPath, body: gatewire.GuardrailRollback
) -> web.Response:
    done = await request.app[state.STORE].rollback_guardrail(
        path.id, path.n, body.message, state.principal_of(request))
    return bodies.respond_document({
        "new_version": done.new_version, "rolled_back_from": done.rolled_back_from,
        "deployed_at": documents.rfc3339(done.deployed_at),
    })


async def evaluate(request: web.Request, body: gatewire.GuardrailEvaluate) -> web.Response:
    dry_run = guardrails.dry_run(body.action, body.policies, body.principal, body.context,
                                 body.operator_id)
    verdict = await request.app[state.GATE].dry_run(dry_run)
    return bodies.respond_document(guardrails.evaluation(verdict))
