"""One description per route: what to send, whether it may be sent twice, how to read the answer.

Nothing here does I/O; the transports (aio, blocking) send a Call and hand
its answer back to `finish`.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar

from clawguard.client import errors, records

ACTOR_HEADER = "X-Clawguard-Actor"

Cents = Decimal | int

T = TypeVar("T")
R = TypeVar("R", bound=records.Record)


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[int, Any], T]
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    replayable: bool = True  # safe to send again after it may have arrived
    wait_s: float = 0.0  # a long-poll's wait, on top of the read timeout
    accept: frozenset[int] = frozenset()  # error statuses that parse() answers itself
    headers: Mapping[str, str] = field(default_factory=dict)

    def target(self, prefix: str) -> str:
        query = urllib.parse.urlencode(self.query)
        return f"{prefix}{self.path}?{query}" if query else f"{prefix}{self.path}"


def _json_text(value: object) -> str:
    """JSON with every Decimal written as its own digits (json.dumps would need a float)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a finite amount")
        return str(value)
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{_json_text(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json_text(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _body(fields: Mapping[str, object]) -> bytes:
    return _json_text({k: v for k, v in fields.items() if v is not None}).encode()


def cents(value: Cents) -> Cents:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"an amount is Decimal or int cents, not {type(value).__name__}")
    return value


def _query(**params: object) -> dict[str, str]:
    return {camel(k): str(v) for k, v in params.items() if v is not None}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _one(kind: type[R], key: str | None = None) -> Callable[[int, Any], R]:
    def parse(status: int, data: Any) -> R:
        return kind.model_validate(data if key is None else data[key])

    return parse


def _many(kind: type[R], key: str) -> Callable[[int, Any], list[R]]:
    def parse(status: int, data: Any) -> list[R]:
        return [kind.model_validate(item) for item in data[key]]

    return parse


def _nothing(status: int, data: Any) -> None:
    return None


def _is_ok(status: int, data: Any) -> bool:
    return status == 200


def _text(status: int, data: Any) -> str:
    return data if isinstance(data, str) else json.dumps(data)


def _document(status: int, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError("the OpenAPI document is not a JSON object")
    return data


# --- operations -------------------------------------------------------------------------


def healthz() -> Call[bool]:
    return Call("GET", "/healthz", _is_ok)


def readyz() -> Call[bool]:
    return Call("GET", "/readyz", _is_ok, accept=frozenset({503}))


def metrics() -> Call[str]:
    return Call("GET", "/metrics", _text)


def openapi() -> Call[dict[str, Any]]:
    return Call("GET", "/openapi.json", _document)


# --- budgets and spend --------------------------------------------------------------------


def list_budgets(scope: str | None, status: str | None) -> Call[list[records.Budget]]:
    return Call("GET", "/api/governance/budgets", _many(records.Budget, "budgets"),
                query=_query(scope=scope, status=status))


def set_budget(scope: str, scope_id: str, limit: int, mode: str | None) -> Call[records.Budget]:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError("limit_usd_cents is whole cents, an int")
    body = _body({"scope": scope, "scopeId": scope_id, "limitUsdCents": limit, "mode": mode})
    return Call("POST", "/api/governance/budgets", _one(records.Budget, "budget"), body=body)


def delete_budget(scope: str, scope_id: str) -> Call[None]:
    return Call("DELETE", f"/api/governance/budgets/{_segment(scope)}/{_segment(scope_id)}",
                _nothing, replayable=False)


def resume_budget(scope: str, scope_id: str, grace: int | None) -> Call[records.Resumed]:
    return Call("POST",
                f"/api/governance/budgets/{_segment(scope)}/{_segment(scope_id)}/resume",
                _one(records.Resumed), body=_body({"graceUsdCents": grace}), replayable=False)


def spend(cost: Cents, key: str | None, fields: Mapping[str, object]
          ) -> Call[records.SpendOutcome]:
    body = _body({**fields, "costUsdCents": cents(cost),
                  "idempotencyKey": key or new_idempotency_key()})
    return Call("POST", "/api/governance/spend", _one(records.SpendOutcome), body=body)


def spend_fields(scopes: Mapping[str, str | None], task_id: str | None, model: str | None,
                 input_tokens: int | None, output_tokens: int | None) -> dict[str, object]:
    return {**{camel(k): v for k, v in scopes.items()}, "taskId": task_id, "model": model,
            "inputTokens": input_tokens, "outputTokens": output_tokens}


def scopes(agent_id: str | None, mission_id: str | None, team_id: str | None,
           tenant_id: str | None) -> dict[str, str | None]:
    return {"agent_id": agent_id, "mission_id": mission_id, "team_id": team_id,
            "tenant_id": tenant_id}


def preflight(named: Mapping[str, str | None]) -> Call[records.Preflight]:
    return Call("GET", "/api/governance/preflight", _one(records.Preflight),
                query=_query(**named))


# --- holds ------------------------------------------------------------------------------


def create_hold(cost: Cents, key: str, fields: Mapping[str, object]) -> Call[records.Hold]:
    # Replayable: the idempotency key answers a retry with the same hold.
    return Call("POST", "/api/governance/holds", _one(records.Hold, "hold"),
                body=_body({**fields, "amountUsdCents": cents(cost), "idempotencyKey": key}))


def get_hold(hold_id: str) -> Call[records.Hold]:
    return Call("GET", f"/api/governance/holds/{_segment(hold_id)}", _one(records.Hold, "hold"))


def commit_hold(hold_id: str, cost: Cents, fields: Mapping[str, object]
                ) -> Call[records.SpendOutcome]:
    # Replayable: the same commit again replays its first answer (duplicate: true).
    return Call("POST", f"/api/governance/holds/{_segment(hold_id)}/commit",
                _one(records.SpendOutcome), body=_body({**fields, "costUsdCents": cents(cost)}))


def release_hold(hold_id: str) -> Call[records.Hold]:
    # Not replayable: a second release of the same hold is a 409.
    return Call("POST", f"/api/governance/holds/{_segment(hold_id)}/release",
                _one(records.Hold, "hold"), replayable=False)


# --- runs and quotas ---------------------------------------------------------------------


def start_run(fields: Mapping[str, object]) -> Call[records.Run]:
    # Replayable only with an idempotency key (the daemon answers a retry with the same run).
    return Call("POST", "/api/governance/runs", _one(records.Run, "run"), body=_body(fields),
                replayable=fields.get("idempotencyKey") is not None)


def list_runs(status: str | None, agent_id: str | None, limit: int | None
              ) -> Call[list[records.Run]]:
    return Call("GET", "/api/governance/runs", _many(records.Run, "runs"),
                query=_query(status=status, agent_id=agent_id, limit=limit))


def get_run(run_id: str) -> Call[records.Run]:
    return Call("GET", f"/api/governance/runs/{_segment(run_id)}", _one(records.Run, "run"))


def end_run(run_id: str) -> Call[records.Run]:
    # Ending twice answers the ended run, so a replay is harmless.
    return Call("POST", f"/api/governance/runs/{_segment(run_id)}/end", _one(records.Run, "run"))


def run_events(run_id: str, events: list[Mapping[str, object]]) -> Call[records.RunEvents]:
    # Not replayable: the counters would count the events twice.
    return Call("POST", f"/api/governance/runs/{_segment(run_id)}/events",
                _one(records.RunEvents), body=_json_text(list(events)).encode(),
                replayable=False)


def quota(tenant_id: str) -> Call[records.Quota]:
    return Call("GET", f"/api/tenants/{_segment(tenant_id)}/quota", _one(records.Quota))


def set_quota(tenant_id: str, overrides: Mapping[str, int | None]) -> Call[records.Quota]:
    # Absolute values: safe to send again.
    return Call("PATCH", f"/api/tenants/{_segment(tenant_id)}/quota", _one(records.Quota),
                body=_json_text(dict(overrides)).encode())


# --- audit ------------------------------------------------------------------------------


def audit(agent_id: str | None, event_type: str | None, since: int | None,
          limit: int | None) -> Call[list[records.AuditEntry]]:
    return Call("GET", "/api/governance/audit", _many(records.AuditEntry, "audit"),
                query=_query(agent_id=agent_id, event_type=event_type, since=since,
                             limit=limit))


def spend_summary(group_by: records.SpendGrouping, since: int | None, until: int | None
                  ) -> Call[list[records.SpendGroup]]:
    return Call("GET", "/api/governance/spend/summary", _many(records.SpendGroup, "groups"),
                query=_query(group_by=group_by, since=since, until=until))


def audit_head() -> Call[records.AuditHead]:
    return Call("GET", "/api/governance/audit/head", _one(records.AuditHead))


# --- approvals ----------------------------------------------------------------------------


def open_tool(fields: Mapping[str, object]) -> Call[records.Handshake]:
    return Call("POST", "/api/tools/approvals", _one(records.Handshake),
                body=_body({**fields, "waitMs": 0}), replayable=False)


def open_delegation(fields: Mapping[str, object]) -> Call[records.Handshake]:
    return Call("POST", "/api/governance/delegation-approval", _one(records.Handshake),
                body=_body({**fields, "waitMs": 0}), replayable=False)


def get_approval(approval_id: str, wait_ms: int | None) -> Call[records.Approval]:
    return Call("GET", f"/api/tools/approvals/{_segment(approval_id)}",
                _one(records.Approval, "approval"), query=_query(wait_ms=wait_ms),
                wait_s=(wait_ms or 0) / 1000)


def pending(every: bool, limit: int | None, cursor: str | None, reviewer_me: bool = False
            ) -> Call[records.ApprovalPage]:
    # all=true: every pending request, not only those the key may decide (a daemon that
    # does not narrow the queue by key ignores it). reviewer=me: only those it could vote
    # on now.
    return Call("GET", "/api/tools/approvals", _one(records.ApprovalPage),
                query={**_query(limit=limit, cursor=cursor), **({"all": "true"} if every else {}),
                       **({"reviewer": "me"} if reviewer_me else {})})


def resolve(approval_id: str, decision: str, by: str | None, grant_scope: str | None
            ) -> Call[records.Approval]:
    return Call("POST", f"/api/tools/approvals/{_segment(approval_id)}/resolve",
                _one(records.Approval, "approval"),
                body=_body({"decision": decision, "resolvedBy": by, "grantScope": grant_scope}),
                replayable=False)


def vote(approval_id: str, decision: str, comments: str | None, conditions: str | None,
         by: str | None) -> Call[records.Approval]:
    return Call("POST", f"/api/tools/approvals/{_segment(approval_id)}/resolve",
                _one(records.Approval, "approval"),
                body=_body({"decision": decision, "comments": comments,
                            "conditions": conditions, "resolvedBy": by}),
                replayable=False)


def waive(approval_id: str, reason: str) -> Call[records.Approval]:
    return Call("POST", f"/api/tools/approvals/{_segment(approval_id)}/waive",
                _one(records.Approval, "approval"), body=_body({"reason": reason}),
                replayable=False)


def grants(agent_id: str | None) -> Call[list[records.Grant]]:
    return Call("GET", "/api/tools/approvals/grants", _many(records.Grant, "grants"),
                query=_query(agent_id=agent_id))


def revoke(grant_id: str, by: str | None) -> Call[records.Grant]:
    return Call("DELETE", f"/api/tools/approvals/grants/{_segment(grant_id)}",
                _one(records.Grant, "grant"), replayable=False,
                headers={ACTOR_HEADER: by} if by else {})


def me() -> Call[records.Me]:
    return Call("GET", "/api/me", _one(records.Me))


def list_keys() -> Call[list[records.ApiKey]]:
    return Call("GET", "/api/keys", _many(records.ApiKey, "keys"))


def create_key(role: str, name: str | None, leads: list[str] | None,
               groups: list[str] | None, expires_in_ms: int | None) -> Call[records.KeyCreated]:
    # Not replayed: a second try that landed would make a second key.
    return Call("POST", "/api/keys", _one(records.KeyCreated), replayable=False,
                body=_body({"role": role, "name": name, "leads": leads, "groups": groups,
                            "expiresInMs": expires_in_ms}))


def revoke_key(key_id: str) -> Call[records.ApiKey]:
    return Call("DELETE", f"/api/keys/{_segment(key_id)}", _one(records.ApiKey, "apiKey"),
                replayable=False)


def history(agent_id: str | None, limit: int | None) -> Call[list[records.HistoryRecord]]:
    return Call("GET", "/api/approvals", _many(records.HistoryRecord, "records"),
                query=_query(agent_id=agent_id, limit=limit))


def record_history(agent_id: str, action: str, tool_name: str,
                   details: Mapping[str, Any] | None) -> Call[records.HistoryRecord]:
    body = _body({"agentId": agent_id, "action": action, "toolName": tool_name,
                  "details": details})
    return Call("POST", "/api/approvals", _one(records.HistoryRecord, "record"), body=body,
                replayable=False)


# --- answers ------------------------------------------------------------------------------


def decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def finish(call: Call[T], status: int, data: Any, request_id: str | None) -> T:
    """The answer read, or the typed error it means."""
    if status >= 400 and status not in call.accept:
        raise errors.from_response(status, data, request_id)
    try:
        return call.parse(status, data)
    except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise errors.ServerError(
            f"unexpected answer to {call.method} {call.path}: {exc}", status=status,
            code="unexpected_answer", request_id=request_id,
        ) from exc


# --- the action gate's documents (seed 002 and seed 000 wire formats, as JSON) ------------


def _snake_query(**params: object) -> dict[str, str]:
    return {k: str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in params.items() if v is not None}


def _items(key: str) -> Callable[[int, Any], list[dict[str, Any]]]:
    def parse(status: int, data: Any) -> list[dict[str, Any]]:
        return list(data[key])

    return parse


def list_guardrails(status: str | None, tool: str | None, limit: int | None,
                    cursor: str | None) -> Call[dict[str, Any]]:
    return Call("GET", "/api/guardrails", _document,
                query=_snake_query(status=status, tool=tool, limit=limit, cursor=cursor))


def get_guardrail(policy_id: str, version: int | None) -> Call[dict[str, Any]]:
    return Call("GET", f"/api/guardrails/{_segment(policy_id)}", _document,
                query=_snake_query(version=version))


def create_guardrail(document: Mapping[str, object], key: str) -> Call[dict[str, Any]]:
    # The Idempotency-Key makes a create safe to send again: the daemon answers the same policy.
    return Call("POST", "/api/guardrails", _document, body=_json_text(document).encode(),
                headers={"Idempotency-Key": key})


def evaluate_guardrails(request: Mapping[str, object]) -> Call[dict[str, Any]]:
    return Call("POST", "/api/guardrails/evaluate", _document,
                body=_json_text(request).encode())


def list_tools(include_archived: bool) -> Call[list[dict[str, Any]]]:
    return Call("GET", "/api/tools", _items("tools"),
                query=_snake_query(include_archived=include_archived or None))


def register_tool(name: str, categories: list[str], description: str | None
                  ) -> Call[dict[str, Any]]:
    body = _json_text({"name": name, "categories": categories, "description": description})
    return Call("POST", "/api/tools", _document, body=body.encode(), replayable=False)


def deprecate_tool(name: str, reason: str, replacement: str | None) -> Call[dict[str, Any]]:
    return Call("POST", f"/api/tools/{_segment(name)}/deprecate", _document,
                body=_body({"reason": reason, "replacement": replacement}), replayable=False)


def archive_tool(name: str) -> Call[dict[str, Any]]:
    return Call("POST", f"/api/tools/{_segment(name)}/archive", _document, replayable=False)


def update_guardrail(policy_id: str, changes: Mapping[str, object]) -> Call[dict[str, Any]]:
    return Call("PATCH", f"/api/guardrails/{_segment(policy_id)}", _document,
                body=_json_text(changes).encode(), replayable=False)


def delete_guardrail(policy_id: str) -> Call[dict[str, Any]]:
    return Call("DELETE", f"/api/guardrails/{_segment(policy_id)}", _document, replayable=False)


def guardrail_versions(policy_id: str) -> Call[list[dict[str, Any]]]:
    return Call("GET", f"/api/guardrails/{_segment(policy_id)}/versions", _items("versions"))


def rollback_guardrail(policy_id: str, version: int, message: str | None
                       ) -> Call[dict[str, Any]]:
    return Call("POST", f"/api/guardrails/{_segment(policy_id)}/versions/{int(version)}/rollback",
                _document, body=_body({"message": message}), replayable=False)


def list_tool_policies() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/api/tool-policies", _items("policies"))


def create_tool_policy(tool_name: str, allowed: bool, restrictions: Mapping[str, object] | None
                       ) -> Call[dict[str, Any]]:
    body = {"tool_name": tool_name, "allowed": allowed, "restrictions": restrictions}
    return Call("POST", "/api/tool-policies", _document, body=_body(body), replayable=False)


def delete_tool_policy(policy_id: str) -> Call[None]:
    return Call("DELETE", f"/api/tool-policies/{_segment(policy_id)}", _nothing,
                replayable=False)


def list_role_overrides() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/api/role-policy-overrides", _items("overrides"))


def create_role_override(role: str, tool_name: str, allowed: bool) -> Call[dict[str, Any]]:
    body = {"role": role, "tool_name": tool_name, "allowed": allowed}
    return Call("POST", "/api/role-policy-overrides", _document, body=_body(body),
                replayable=False)


def delete_role_override(override_id: str) -> Call[None]:
    return Call("DELETE", f"/api/role-policy-overrides/{_segment(override_id)}", _nothing,
                replayable=False)


# --- authorize, receipts, the approval settings, the enforcement check, reports ---------


def authorize(fields: Mapping[str, object], key: str, wait_ms: int) -> Call[records.Verdict]:
    # Always keyed, so a retry (or a re-ask after PENDING) answers the same receipt.
    body = _body({**fields, "idempotencyKey": key, "waitMs": wait_ms})
    return Call("POST", "/api/governance/authorize", _one(records.Verdict), body=body,
                wait_s=wait_ms / 1000)


def receipt(receipt_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/api/governance/receipts/{_segment(receipt_id)}", _document)


def approval_settings() -> Call[dict[str, Any]]:
    return Call("GET", "/api/governance/settings", _document)


def set_approval_settings(patch: Mapping[str, object]) -> Call[dict[str, Any]]:
    # Setting absolute values: sending it twice leaves the same settings.
    return Call("PATCH", "/api/governance/settings", _document,
                body=_json_text(patch).encode())


def enforcement_check(resource_type: str, resource_id: str) -> Call[dict[str, Any]]:
    return Call("GET", "/api/governance/enforcement/check", _document,
                query=_query(resource_type=resource_type, resource_id=resource_id))


def governance_report(period: str | None) -> Call[dict[str, Any]]:
    return Call("GET", "/api/governance/report", _document, query=_snake_query(period=period))


def approval_stats(period: str | None) -> Call[dict[str, Any]]:
    return Call("GET", "/api/governance/approval-stats", _document,
                query=_snake_query(period=period))
