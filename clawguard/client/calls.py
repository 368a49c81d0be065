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


# --- audit ------------------------------------------------------------------------------


def audit(agent_id: str | None, event_type: str | None, since: int | None,
          limit: int | None) -> Call[list[records.AuditEntry]]:
    return Call("GET", "/api/governance/audit", _many(records.AuditEntry, "audit"),
                query=_query(agent_id=agent_id, event_type=event_type, since=since,
                             limit=limit))


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


def pending(every: bool, limit: int | None, cursor: str | None
            ) -> Call[records.ApprovalPage]:
    # all=true: every pending request, not only those the key may decide (a daemon that
    # does not narrow the queue by key ignores it).
    return Call("GET", "/api/tools/approvals", _one(records.ApprovalPage),
                query={**_query(limit=limit, cursor=cursor), **({"all": "true"} if every else {})})


def resolve(approval_id: str, decision: str, by: str | None) -> Call[records.Approval]:
    return Call("POST", f"/api/tools/approvals/{_segment(approval_id)}/resolve",
                _one(records.Approval, "approval"),
                body=_body({"decision": decision, "resolvedBy": by}), replayable=False)


def grants(agent_id: str | None) -> Call[list[records.Grant]]:
    return Call("GET", "/api/tools/approvals/grants", _many(records.Grant, "grants"),
                query=_query(agent_id=agent_id))


def revoke(grant_id: str, by: str | None) -> Call[records.Grant]:
    return Call("DELETE", f"/api/tools/approvals/grants/{_segment(grant_id)}",
                _one(records.Grant, "grant"), replayable=False,
                headers={ACTOR_HEADER: by} if by else {})


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
