"""The Python client of the clawguard API: `Client` (blocking) and `AsyncClient` (asyncio).

One typed method per route, answering the models of clawguard.models, and
one helper that wraps an agent step (`step()`): preflight, run, record the
cost, raise BudgetPaused when the kill-switch fires. Errors are the typed
exceptions of clawguard.client_errors, also reachable from here.

Retries are bounded (`Retry`: 3 tries, exponential backoff with jitter) and
happen only on connection failures, timeouts and 503, never on another
status. Every call is retried when its request surely never reached the
daemon (the connection could not be made) or when it answered 503 (its
store refused, nothing changed). After a failure that may have come after
the daemon acted (reset, dropped, timed out), only the calls that are safe
to send twice are retried:

- every GET, and `spend` (it carries an idempotency key, made here unless
  given and the same on every retry; the daemon replays the first answer
  with `duplicate: true` and charges nothing);
- `set_budget` (it sets an absolute limit; a replay may audit it twice).

Not after such a failure: `delete_budget` and `resolve_approval` (a replay
of one that landed answers 404 or 409), `resume_budget` (grace is relative
to spend at that moment), `revoke_grant`, `record_history` and opening an
approval request (a replay opens a second one). Those calls always use a
new connection, so a stale kept-alive one never makes them fail; their
failures raise Unreachable and the caller decides. Waiting for a decision
is safe: an approval request is opened without waiting, then waited on with
re-attachable long-polls (`wait_for_approval`).

Money: amounts are `Decimal` or `int` cents, written into the JSON from the
decimal digits, never through a float.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import random
import threading
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from clawguard import __version__, client_errors
from clawguard.core import records

if TYPE_CHECKING:
    import aiohttp

DEFAULT_URL = "http://127.0.0.1:18790"
URL_ENV, KEY_ENV = "CLAWGUARD_URL", "CLAWGUARD_API_KEY"
ACTOR_HEADER = "X-Clawguard-Actor"
# A kept-alive connection idle this long is not reused: the daemon cuts idle ones
# (server.client_timeout_ms, 30 s by default), and reusing one it cut costs a retry.
KEEPALIVE_S = 10.0
# One approval long-poll asks for at most this long; the daemon may cut it shorter.
LONG_POLL_MS = 60_000
# Pending answers that come back sooner than this are not re-asked sooner than this.
MIN_POLL_S = 0.5

Cents = Decimal | int

ClawguardError = client_errors.ClawguardError
InvalidRequest = client_errors.InvalidRequest
Unauthorized = client_errors.Unauthorized
Forbidden = client_errors.Forbidden
NotFound = client_errors.NotFound
Conflict = client_errors.Conflict
IdempotencyConflict = client_errors.IdempotencyConflict
Unprocessable = client_errors.Unprocessable
ServerError = client_errors.ServerError
Unavailable = client_errors.Unavailable
Unreachable = client_errors.Unreachable
BudgetPaused = client_errors.BudgetPaused
ApprovalDenied = client_errors.ApprovalDenied

T = TypeVar("T")
M = TypeVar("M", bound=records.Model)


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Retry:
    """Up to `attempts` tries; before try n+1 a wait of base * 2**(n-1), at most cap, of which
    the second half is random (so a retry never comes at once, and a crowd spreads out)."""

    attempts: int = 3
    base_s: float = 0.2
    cap_s: float = 2.0

    def delay(self, retry: int) -> float:
        ceiling = min(self.cap_s, self.base_s * 2.0**retry)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


# --- calls: what to send, whether it may be sent twice, how to read the answer ----------


@dataclass(frozen=True)
class _Call(Generic[T]):
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


class _Failed(Exception):
    """No answer; `sent` when the request may have reached the daemon."""

    def __init__(self, sent: bool) -> None:
        super().__init__()
        self.sent = sent


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


def _cents(value: Cents) -> Cents:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"an amount is Decimal or int cents, not {type(value).__name__}")
    return value


def _query(**params: object) -> dict[str, str]:
    return {_camel(k): str(v) for k, v in params.items() if v is not None}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _one(kind: type[M], key: str | None = None) -> Callable[[int, Any], M]:
    def parse(status: int, data: Any) -> M:
        return kind.model_validate(data if key is None else data[key])

    return parse


def _many(kind: type[M], key: str) -> Callable[[int, Any], list[M]]:
    def parse(status: int, data: Any) -> list[M]:
        return [kind.model_validate(item) for item in data[key]]

    return parse


def _nothing(status: int, data: Any) -> None:
    return None


def _is_ok(status: int, data: Any) -> bool:
    return status == 200


def _healthz() -> _Call[bool]:
    return _Call("GET", "/healthz", _is_ok)


def _readyz() -> _Call[bool]:
    return _Call("GET", "/readyz", _is_ok, accept=frozenset({503}))


def _text(status: int, data: Any) -> str:
    return data if isinstance(data, str) else json.dumps(data)


def _metrics() -> _Call[str]:
    return _Call("GET", "/metrics", _text)


def _document(status: int, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError("the OpenAPI document is not a JSON object")
    return data


def _openapi() -> _Call[dict[str, Any]]:
    return _Call("GET", "/openapi.json", _document)


def _list_budgets(scope: str | None, status: str | None) -> _Call[list[records.Budget]]:
    return _Call("GET", "/api/governance/budgets", _many(records.Budget, "budgets"),
                 query=_query(scope=scope, status=status))


def _set_budget(scope: str, scope_id: str, limit: int, mode: str | None) -> _Call[records.Budget]:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError("limit_usd_cents is whole cents, an int")
    body = _body({"scope": scope, "scopeId": scope_id, "limitUsdCents": limit, "mode": mode})
    return _Call("POST", "/api/governance/budgets", _one(records.Budget, "budget"), body=body)


def _delete_budget(scope: str, scope_id: str) -> _Call[None]:
    return _Call("DELETE", f"/api/governance/budgets/{_segment(scope)}/{_segment(scope_id)}",
                 _nothing, replayable=False)


def _resume_budget(scope: str, scope_id: str, grace: int | None) -> _Call[records.Resumed]:
    return _Call("POST",
                 f"/api/governance/budgets/{_segment(scope)}/{_segment(scope_id)}/resume",
                 _one(records.Resumed), body=_body({"graceUsdCents": grace}), replayable=False)


def _spend(cost: Cents, key: str | None, fields: Mapping[str, object]
           ) -> _Call[records.SpendOutcome]:
    body = _body({**fields, "costUsdCents": _cents(cost),
                  "idempotencyKey": key or new_idempotency_key()})
    return _Call("POST", "/api/governance/spend", _one(records.SpendOutcome), body=body)


def _preflight(scopes: Mapping[str, str | None]) -> _Call[records.Preflight]:
    return _Call("GET", "/api/governance/preflight", _one(records.Preflight),
                 query=_query(**scopes))


def _audit(agent_id: str | None, event_type: str | None, since: int | None,
           limit: int | None) -> _Call[list[records.AuditEntry]]:
    return _Call("GET", "/api/governance/audit", _many(records.AuditEntry, "audit"),
                 query=_query(agent_id=agent_id, event_type=event_type, since=since,
                              limit=limit))


def _audit_head() -> _Call[records.AuditHead]:
    return _Call("GET", "/api/governance/audit/head", _one(records.AuditHead))


def _open_tool(fields: Mapping[str, object]) -> _Call[records.Handshake]:
    return _Call("POST", "/api/tools/approvals", _one(records.Handshake),
                 body=_body({**fields, "waitMs": 0}), replayable=False)


def _open_delegation(fields: Mapping[str, object]) -> _Call[records.Handshake]:
    return _Call("POST", "/api/governance/delegation-approval", _one(records.Handshake),
                 body=_body({**fields, "waitMs": 0}), replayable=False)


def _get_approval(approval_id: str, wait_ms: int | None) -> _Call[records.Approval]:
    return _Call("GET", f"/api/tools/approvals/{_segment(approval_id)}",
                 _one(records.Approval, "approval"), query=_query(wait_ms=wait_ms),
                 wait_s=(wait_ms or 0) / 1000)


def _pending() -> _Call[list[records.Approval]]:
    return _Call("GET", "/api/tools/approvals", _many(records.Approval, "approvals"))


def _resolve(approval_id: str, decision: str, by: str | None) -> _Call[records.Approval]:
    return _Call("POST", f"/api/tools/approvals/{_segment(approval_id)}/resolve",
                 _one(records.Approval, "approval"),
                 body=_body({"decision": decision, "resolvedBy": by}), replayable=False)


def _grants(agent_id: str | None) -> _Call[list[records.Grant]]:
    return _Call("GET", "/api/tools/approvals/grants", _many(records.Grant, "grants"),
                 query=_query(agent_id=agent_id))


def _revoke(grant_id: str, by: str | None) -> _Call[records.Grant]:
    return _Call("DELETE", f"/api/tools/approvals/grants/{_segment(grant_id)}",
                 _one(records.Grant, "grant"), replayable=False,
                 headers={ACTOR_HEADER: by} if by else {})


def _history(agent_id: str | None, limit: int | None) -> _Call[list[records.HistoryRecord]]:
    return _Call("GET", "/api/approvals", _many(records.HistoryRecord, "records"),
                 query=_query(agent_id=agent_id, limit=limit))


def _record_history(agent_id: str, action: str, tool_name: str,
                    details: Mapping[str, Any] | None) -> _Call[records.HistoryRecord]:
    body = _body({"agentId": agent_id, "action": action, "toolName": tool_name,
                  "details": details})
    return _Call("POST", "/api/approvals", _one(records.HistoryRecord, "record"), body=body,
                 replayable=False)


def _finish(call: _Call[T], status: int, data: Any, request_id: str | None) -> T:
    if status >= 400 and status not in call.accept:
        raise client_errors.from_response(status, data, request_id)
    try:
        return call.parse(status, data)
    except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise client_errors.ServerError(
            f"unexpected answer to {call.method} {call.path}: {exc}", status=status,
            code="unexpected_answer", request_id=request_id,
        ) from exc


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class _Attempts:
    """Counts one call's tries and says how long to wait before the next, or None: give up."""

    def __init__(self, retry: Retry) -> None:
        self._retry = retry
        self._done = 0

    def next_delay(self, may_retry: bool) -> float | None:
        self._done += 1
        if not may_retry or self._done >= self._retry.attempts:
            return None
        return self._retry.delay(self._done - 1)


def _unreachable(base: str, call: _Call[Any], exc: BaseException | None) -> Unreachable:
    cause = exc.__cause__ if exc is not None else None
    why = f"{type(cause).__name__}: {cause}" if cause is not None else "no answer"
    return client_errors.Unreachable(
        f"no answer from {base} to {call.method} {call.path} ({why})", code="unreachable"
    )


def _settled(approval: records.Approval) -> records.Approval:
    """The decided row, or ApprovalDenied: deny, expired, or still pending (timeout)."""
    if approval.status in ("allow_once", "allow_always"):
        return approval
    resolution = "timeout" if approval.status == "pending" else approval.status
    raise client_errors.ApprovalDenied(resolution, approval.id)


def _allowed(handshake: records.Handshake) -> bool:
    if handshake.resolution in ("allow_once", "allow_always"):
        return True
    if handshake.resolution == "timeout" and handshake.approval_id is not None:
        return False  # pending: wait for it
    raise client_errors.ApprovalDenied(handshake.resolution, handshake.approval_id)


def _next_wait_ms(deadline: float | None) -> int:
    if deadline is None:
        return LONG_POLL_MS
    return max(0, min(LONG_POLL_MS, int((deadline - time.monotonic()) * 1000)))


def _check_preflight(preflight: records.Preflight) -> None:
    if preflight.allowed:
        return
    if preflight.reason == "store_unavailable":
        raise client_errors.Unavailable(
            "the daemon cannot record spend now, so no step may start",
            code="store_unavailable",
        )
    paused = [state.scope for state in preflight.scopes if state.status == "paused"]
    reason = f"budget_paused:{paused[0]}" if paused else (preflight.reason or "not_allowed")
    raise client_errors.BudgetPaused(reason, preflight.scopes)


def _check_outcome(outcome: records.SpendOutcome) -> None:
    if outcome.stop:
        raise client_errors.BudgetPaused(outcome.stop_reason or "budget_paused",
                                         outcome.scopes, outcome)


@dataclass
class Step:
    """One agent step between its preflight and its spend: say what it cost with `cost()`.

    A step that names no cost records nothing. After the step, `outcome` is the
    recorded spend.
    """

    idempotency_key: str
    scopes: dict[str, str | None]
    task_id: str | None = None
    cents: Cents | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    outcome: records.SpendOutcome | None = None

    def cost(self, cents: Cents, *, model: str | None = None, input_tokens: int | None = None,
             output_tokens: int | None = None) -> None:
        self.cents = _cents(cents)
        self.model, self.input_tokens, self.output_tokens = model, input_tokens, output_tokens

    def _call(self) -> _Call[records.SpendOutcome]:
        assert self.cents is not None
        return _spend(self.cents, self.idempotency_key, _spend_fields(
            self.scopes, self.task_id, self.model, self.input_tokens, self.output_tokens))


def _spend_fields(scopes: Mapping[str, str | None], task_id: str | None, model: str | None,
                  input_tokens: int | None, output_tokens: int | None) -> dict[str, object]:
    return {**{_camel(k): v for k, v in scopes.items()}, "taskId": task_id, "model": model,
            "inputTokens": input_tokens, "outputTokens": output_tokens}


def _scopes(agent_id: str | None, mission_id: str | None, team_id: str | None,
            tenant_id: str | None) -> dict[str, str | None]:
    return {"agent_id": agent_id, "mission_id": mission_id, "team_id": team_id,
            "tenant_id": tenant_id}


def _note_unrecorded(exc: BaseException, failed: ClawguardError) -> None:
    exc.add_note(f"clawguard: the failed step's cost was not recorded: {failed}")


class _Base:
    """What both clients share: where the daemon is, who calls, how patiently."""

    def __init__(self, url: str | None, api_key: str | None, timeout: float, retry: Retry,
                 actor: str | None) -> None:
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {self.url!r}")
        self._parts = parts
        self.prefix = parts.path
        self.timeout = timeout
        self.retry = retry
        key = api_key if api_key is not None else os.environ.get(KEY_ENV)
        self._headers = {"Accept": "application/json",
                         "User-Agent": f"clawguard-client/{__version__}"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        if actor:
            self._headers[ACTOR_HEADER] = actor

    def headers(self, call: _Call[Any], request_id: str) -> dict[str, str]:
        """One request id for a call and all its retries, so the daemon's logs join them."""
        headers = {**self._headers, **call.headers, "X-Request-Id": request_id}
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def connection(self) -> http.client.HTTPConnection:
        kind = (http.client.HTTPSConnection if self._parts.scheme == "https"
                else http.client.HTTPConnection)
        return kind(self._parts.hostname or "", self._parts.port, timeout=self.timeout)


def _request_id() -> str:
    return "cgc-" + uuid.uuid4().hex[:16]


# --- the asyncio client -------------------------------------------------------------------


class AsyncClient:
    """The clawguard API for asyncio code, over aiohttp; use it from one event loop.

    `url` defaults to $CLAWGUARD_URL, else http://127.0.0.1:18790; `api_key`
    to $CLAWGUARD_API_KEY. `actor` (like `resolved_by` and `revoked_by`) names
    who decides or revokes when the daemon runs without keys; with keys the
    daemon records the key's name instead. `sleep` waits between retries.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 10.0, retry: Retry = Retry(), actor: str | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._base = _Base(url, api_key, timeout, retry, actor)
        self._sleep = sleep
        self._pooled: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None  # one connection per request

    @property
    def url(self) -> str:
        return self._base.url

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for session in (self._pooled, self._fresh):
            if session is not None:
                await session.close()
        self._pooled = self._fresh = None

    def _session(self, pooled: bool) -> aiohttp.ClientSession:
        import aiohttp  # here, so that blocking users (the CLI) never pay for importing it

        if pooled:
            if self._pooled is None:
                self._pooled = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_S))
            return self._pooled
        if self._fresh is None:
            self._fresh = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True))
        return self._fresh

    async def _exchange(self, call: _Call[Any], request_id: str
                        ) -> tuple[int, Any, str | None]:
        import aiohttp

        session = self._session(pooled=call.replayable)
        url = self._base.url + call.target("")
        try:
            async with session.request(
                call.method, url, data=call.body, headers=self._base.headers(call, request_id),
                timeout=aiohttp.ClientTimeout(total=self._base.timeout + call.wait_s),
            ) as resp:
                raw = await resp.read()
                return resp.status, _decode(raw), resp.headers.get("X-Request-Id")
        except aiohttp.ClientConnectorError as exc:
            raise _Failed(sent=False) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Failed(sent=True) from exc

    async def _run(self, call: _Call[T]) -> T:
        attempts, request_id = _Attempts(self._base.retry), _request_id()
        while True:
            try:
                status, data, answered_id = await self._exchange(call, request_id)
            except _Failed as failed:
                delay = attempts.next_delay(call.replayable or not failed.sent)
                if delay is None:
                    raise _unreachable(self._base.url, call, failed) from failed.__cause__
            else:
                delay = None
                if status == 503 and 503 not in call.accept:
                    delay = attempts.next_delay(True)
                if delay is None:
                    return _finish(call, status, data, answered_id)
            await self._sleep(delay)

    # --- operations -------------------------------------------------------------------

    async def healthz(self) -> bool:
        return await self._run(_healthz())

    async def readyz(self) -> bool:
        """True when the store answers and is migrated; False on the daemon's 503."""
        return await self._run(_readyz())

    async def metrics(self) -> str:
        """The Prometheus text of GET /metrics (an operator's key)."""
        return await self._run(_metrics())

    async def openapi(self) -> dict[str, Any]:
        """The daemon's OpenAPI 3.1 document (GET /openapi.json, no key needed)."""
        return await self._run(_openapi())

    # --- budgets (operator) -----------------------------------------------------------

    async def list_budgets(self, *, scope: records.Scope | None = None,
                           status: records.Status | None = None) -> list[records.Budget]:
        return await self._run(_list_budgets(scope, status))

    async def set_budget(self, scope: records.Scope, scope_id: str, limit_usd_cents: int, *,
                         mode: records.Mode | None = None) -> records.Budget:
        return await self._run(_set_budget(scope, scope_id, limit_usd_cents, mode))

    async def delete_budget(self, scope: records.Scope, scope_id: str) -> None:
        await self._run(_delete_budget(scope, scope_id))

    async def resume_budget(self, scope: records.Scope, scope_id: str, *,
                            grace_usd_cents: int | None = None) -> records.Resumed:
        return await self._run(_resume_budget(scope, scope_id, grace_usd_cents))

    # --- spend (executor) -------------------------------------------------------------

    async def spend(self, cost_usd_cents: Cents, *, agent_id: str | None = None,
                    mission_id: str | None = None, team_id: str | None = None,
                    tenant_id: str | None = None, idempotency_key: str | None = None,
                    task_id: str | None = None, model: str | None = None,
                    input_tokens: int | None = None, output_tokens: int | None = None
                    ) -> records.SpendOutcome:
        """Record a cost; `stop` in the answer means a cap fired (this does not raise)."""
        return await self._run(_spend(cost_usd_cents, idempotency_key, _spend_fields(
            _scopes(agent_id, mission_id, team_id, tenant_id), task_id, model, input_tokens,
            output_tokens)))

    async def preflight(self, *, agent_id: str | None = None, mission_id: str | None = None,
                        team_id: str | None = None, tenant_id: str | None = None
                        ) -> records.Preflight:
        return await self._run(_preflight(_scopes(agent_id, mission_id, team_id, tenant_id)))

    @contextlib.asynccontextmanager
    async def step(self, *, agent_id: str | None = None, mission_id: str | None = None,
                   team_id: str | None = None, tenant_id: str | None = None,
                   task_id: str | None = None, idempotency_key: str | None = None
                   ) -> AsyncIterator[Step]:
        """Preflight (BudgetPaused if refused), run the block, record `step.cost(...)`, and
        raise BudgetPaused if that spend stopped the scope. The money is recorded even when
        the block fails: it was spent."""
        scopes = _scopes(agent_id, mission_id, team_id, tenant_id)
        _check_preflight(await self.preflight(**scopes))
        step = Step(idempotency_key or new_idempotency_key(), scopes, task_id)
        try:
            yield step
        except BaseException as exc:
            if step.cents is not None:
                try:
                    step.outcome = await self._run(step._call())
                except ClawguardError as failed:
                    _note_unrecorded(exc, failed)
            raise
        if step.cents is not None:
            step.outcome = await self._run(step._call())
            _check_outcome(step.outcome)

    # --- audit (operator) -------------------------------------------------------------

    async def audit(self, *, agent_id: str | None = None, event_type: str | None = None,
                    since: int | None = None, limit: int | None = None
                    ) -> list[records.AuditEntry]:
        """Newest first; `since` in epoch ms (inclusive)."""
        return await self._run(_audit(agent_id, event_type, since, limit))

    async def audit_head(self) -> records.AuditHead:
        return await self._run(_audit_head())

    # --- approvals --------------------------------------------------------------------

    async def request_tool_approval(
        self, tool_name: str, agent_id: str, *, args: Mapping[str, Any] | None = None,
        reason: str | None = None, task_id: str | None = None, tenant_id: str | None = None,
        wait_ms: int | None = None,
    ) -> records.Handshake:
        """Ask, and wait up to `wait_ms` (None: until the request expires) for a decision.

        Returns on allow_once or allow_always; raises ApprovalDenied on deny,
        expired or timeout (its `approval_id` can be waited on again).
        """
        opened = await self._run(_open_tool({
            "toolName": tool_name, "agentId": agent_id, "args": args, "reason": reason,
            "taskId": task_id, "tenantId": tenant_id}))
        return await self._await_handshake(opened, wait_ms)

    async def request_delegation_approval(
        self, leader_agent_id: str, *, kind: str | None = None,
        target_agent_name: str | None = None, task: str | None = None,
        task_id: str | None = None, tenant_id: str | None = None, wait_ms: int | None = None,
    ) -> records.Handshake:
        """As request_tool_approval, for a leader delegating `kind` work (default code)."""
        opened = await self._run(_open_delegation({
            "leaderAgentId": leader_agent_id, "kind": kind,
            "targetAgentName": target_agent_name, "task": task, "taskId": task_id,
            "tenantId": tenant_id}))
        return await self._await_handshake(opened, wait_ms)

    async def _await_handshake(self, opened: records.Handshake, wait_ms: int | None
                               ) -> records.Handshake:
        if _allowed(opened):
            return opened
        assert opened.approval_id is not None
        decided = await self.wait_for_approval(opened.approval_id, wait_ms=wait_ms)
        return records.Handshake(resolution=decided.status, approval_id=decided.id)

    async def wait_for_approval(self, approval_id: str, *, wait_ms: int | None = None
                                ) -> records.Approval:
        """Wait up to `wait_ms` (None: until it expires) for a decision, re-attaching after a
        dropped connection; the allowing row, or ApprovalDenied."""
        deadline = None if wait_ms is None else time.monotonic() + wait_ms / 1000
        while True:
            chunk, asked = _next_wait_ms(deadline), time.monotonic()
            approval = await self.get_approval(approval_id, wait_ms=chunk)
            if approval.status != "pending" or chunk == 0:
                return _settled(approval)
            pause = MIN_POLL_S - (time.monotonic() - asked)
            if pause > 0:
                await self._sleep(pause)

    async def get_approval(self, approval_id: str, *, wait_ms: int | None = None
                           ) -> records.Approval:
        """One request as it is now; with `wait_ms`, after waiting that long for a decision."""
        return await self._run(_get_approval(approval_id, wait_ms))

    async def pending_approvals(self) -> list[records.Approval]:
        return await self._run(_pending())

    async def resolve_approval(self, approval_id: str, decision: records.Decision, *,
                               resolved_by: str | None = None) -> records.Approval:
        return await self._run(_resolve(approval_id, decision, resolved_by))

    async def grants(self, *, agent_id: str | None = None) -> list[records.Grant]:
        return await self._run(_grants(agent_id))

    async def revoke_grant(self, grant_id: str, *, revoked_by: str | None = None
                           ) -> records.Grant:
        return await self._run(_revoke(grant_id, revoked_by))

    async def approval_history(self, *, agent_id: str | None = None, limit: int | None = None
                               ) -> list[records.HistoryRecord]:
        return await self._run(_history(agent_id, limit))

    async def record_history(self, agent_id: str, action: records.HistoryAction,
                             tool_name: str, *, details: Mapping[str, Any] | None = None
                             ) -> records.HistoryRecord:
        return await self._run(_record_history(agent_id, action, tool_name, details))


# --- the blocking client ---------------------------------------------------------------------


class Client:
    """The clawguard API for blocking code, over the standard library's http.client.

    Arguments as AsyncClient's. Safe to share between threads: each thread
    keeps its own kept-alive connection.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 10.0, retry: Retry = Retry(), actor: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._base = _Base(url, api_key, timeout, retry, actor)
        self._sleep = sleep
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()

    @property
    def url(self) -> str:
        return self._base.url

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            conns, self._open = self._open, set()
        for conn in conns:
            conn.close()

    def _kept(self) -> http.client.HTTPConnection | None:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and (conn not in self._open
                                 or time.monotonic() - self._local.used > KEEPALIVE_S):
            self._drop(conn)
            conn = None
        return conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        with self._lock:
            self._open.discard(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    def _connect(self, keep: bool) -> http.client.HTTPConnection:
        conn = self._base.connection()
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise _Failed(sent=False) from exc
        with self._lock:
            self._open.add(conn)
        if keep:
            self._local.conn = conn
        return conn

    def _exchange(self, call: _Call[Any], request_id: str) -> tuple[int, Any, str | None]:
        keep = call.replayable
        conn = (self._kept() if keep else None) or self._connect(keep)
        try:
            if conn.sock is not None:
                conn.sock.settimeout(self._base.timeout + call.wait_s)
            conn.request(call.method, call.target(self._base.prefix), body=call.body,
                         headers=self._base.headers(call, request_id))
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop(conn)
            raise _Failed(sent=True) from exc
        if not keep or resp.will_close:
            self._drop(conn)
        else:
            self._local.used = time.monotonic()
        return resp.status, _decode(raw), resp.getheader("X-Request-Id")

    def _run(self, call: _Call[T]) -> T:
        attempts, request_id = _Attempts(self._base.retry), _request_id()
        while True:
            try:
                status, data, answered_id = self._exchange(call, request_id)
            except _Failed as failed:
                delay = attempts.next_delay(call.replayable or not failed.sent)
                if delay is None:
                    raise _unreachable(self._base.url, call, failed) from failed.__cause__
            else:
                delay = None
                if status == 503 and 503 not in call.accept:
                    delay = attempts.next_delay(True)
                if delay is None:
                    return _finish(call, status, data, answered_id)
            self._sleep(delay)

    # --- operations -------------------------------------------------------------------

    def healthz(self) -> bool:
        return self._run(_healthz())

    def readyz(self) -> bool:
        """True when the store answers and is migrated; False on the daemon's 503."""
        return self._run(_readyz())

    def metrics(self) -> str:
        """The Prometheus text of GET /metrics (an operator's key)."""
        return self._run(_metrics())

    def openapi(self) -> dict[str, Any]:
        """As AsyncClient.openapi."""
        return self._run(_openapi())

    # --- budgets (operator) -----------------------------------------------------------

    def list_budgets(self, *, scope: records.Scope | None = None,
                     status: records.Status | None = None) -> list[records.Budget]:
        return self._run(_list_budgets(scope, status))

    def set_budget(self, scope: records.Scope, scope_id: str, limit_usd_cents: int, *,
                   mode: records.Mode | None = None) -> records.Budget:
        return self._run(_set_budget(scope, scope_id, limit_usd_cents, mode))

    def delete_budget(self, scope: records.Scope, scope_id: str) -> None:
        self._run(_delete_budget(scope, scope_id))

    def resume_budget(self, scope: records.Scope, scope_id: str, *,
                      grace_usd_cents: int | None = None) -> records.Resumed:
        return self._run(_resume_budget(scope, scope_id, grace_usd_cents))

    # --- spend (executor) -------------------------------------------------------------

    def spend(self, cost_usd_cents: Cents, *, agent_id: str | None = None,
              mission_id: str | None = None, team_id: str | None = None,
              tenant_id: str | None = None, idempotency_key: str | None = None,
              task_id: str | None = None, model: str | None = None,
              input_tokens: int | None = None, output_tokens: int | None = None
              ) -> records.SpendOutcome:
        """Record a cost; `stop` in the answer means a cap fired (this does not raise)."""
        return self._run(_spend(cost_usd_cents, idempotency_key, _spend_fields(
            _scopes(agent_id, mission_id, team_id, tenant_id), task_id, model, input_tokens,
            output_tokens)))

    def preflight(self, *, agent_id: str | None = None, mission_id: str | None = None,
                  team_id: str | None = None, tenant_id: str | None = None) -> records.Preflight:
        return self._run(_preflight(_scopes(agent_id, mission_id, team_id, tenant_id)))

    @contextlib.contextmanager
    def step(self, *, agent_id: str | None = None, mission_id: str | None = None,
             team_id: str | None = None, tenant_id: str | None = None,
             task_id: str | None = None, idempotency_key: str | None = None) -> Iterator[Step]:
        """As AsyncClient.step."""
        scopes = _scopes(agent_id, mission_id, team_id, tenant_id)
        _check_preflight(self.preflight(**scopes))
        step = Step(idempotency_key or new_idempotency_key(), scopes, task_id)
        try:
            yield step
        except BaseException as exc:
            if step.cents is not None:
                try:
                    step.outcome = self._run(step._call())
                except ClawguardError as failed:
                    _note_unrecorded(exc, failed)
            raise
        if step.cents is not None:
            step.outcome = self._run(step._call())
            _check_outcome(step.outcome)

    # --- audit (operator) -------------------------------------------------------------

    def audit(self, *, agent_id: str | None = None, event_type: str | None = None,
              since: int | None = None, limit: int | None = None) -> list[records.AuditEntry]:
        """Newest first; `since` in epoch ms (inclusive)."""
        return self._run(_audit(agent_id, event_type, since, limit))

    def audit_head(self) -> records.AuditHead:
        return self._run(_audit_head())

    # --- approvals --------------------------------------------------------------------

    def request_tool_approval(
        self, tool_name: str, agent_id: str, *, args: Mapping[str, Any] | None = None,
        reason: str | None = None, task_id: str | None = None, tenant_id: str | None = None,
        wait_ms: int | None = None,
    ) -> records.Handshake:
        """As AsyncClient.request_tool_approval."""
        opened = self._run(_open_tool({
            "toolName": tool_name, "agentId": agent_id, "args": args, "reason": reason,
            "taskId": task_id, "tenantId": tenant_id}))
        return self._await_handshake(opened, wait_ms)

    def request_delegation_approval(
        self, leader_agent_id: str, *, kind: str | None = None,
        target_agent_name: str | None = None, task: str | None = None,
        task_id: str | None = None, tenant_id: str | None = None, wait_ms: int | None = None,
    ) -> records.Handshake:
        """As AsyncClient.request_delegation_approval."""
        opened = self._run(_open_delegation({
            "leaderAgentId": leader_agent_id, "kind": kind,
            "targetAgentName": target_agent_name, "task": task, "taskId": task_id,
            "tenantId": tenant_id}))
        return self._await_handshake(opened, wait_ms)

    def _await_handshake(self, opened: records.Handshake, wait_ms: int | None
                         ) -> records.Handshake:
        if _allowed(opened):
            return opened
        assert opened.approval_id is not None
        decided = self.wait_for_approval(opened.approval_id, wait_ms=wait_ms)
        return records.Handshake(resolution=decided.status, approval_id=decided.id)

    def wait_for_approval(self, approval_id: str, *, wait_ms: int | None = None
                          ) -> records.Approval:
        """As AsyncClient.wait_for_approval."""
        deadline = None if wait_ms is None else time.monotonic() + wait_ms / 1000
        while True:
            chunk, asked = _next_wait_ms(deadline), time.monotonic()
            approval = self.get_approval(approval_id, wait_ms=chunk)
            if approval.status != "pending" or chunk == 0:
                return _settled(approval)
            pause = MIN_POLL_S - (time.monotonic() - asked)
            if pause > 0:
                self._sleep(pause)

    def get_approval(self, approval_id: str, *, wait_ms: int | None = None) -> records.Approval:
        return self._run(_get_approval(approval_id, wait_ms))

    def pending_approvals(self) -> list[records.Approval]:
        return self._run(_pending())

    def resolve_approval(self, approval_id: str, decision: records.Decision, *,
                         resolved_by: str | None = None) -> records.Approval:
        return self._run(_resolve(approval_id, decision, resolved_by))

    def grants(self, *, agent_id: str | None = None) -> list[records.Grant]:
        return self._run(_grants(agent_id))

    def revoke_grant(self, grant_id: str, *, revoked_by: str | None = None) -> records.Grant:
        return self._run(_revoke(grant_id, revoked_by))

    def approval_history(self, *, agent_id: str | None = None, limit: int | None = None
                         ) -> list[records.HistoryRecord]:
        return self._run(_history(agent_id, limit))

    def record_history(self, agent_id: str, action: records.HistoryAction, tool_name: str, *,
                       details: Mapping[str, Any] | None = None) -> records.HistoryRecord:
        return self._run(_record_history(agent_id, action, tool_name, details))
