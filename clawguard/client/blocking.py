"""Client: the clawguard API for blocking code, made from the async one over http.client.

Each method of Client runs the same-named method of `api.Api` on a transport
whose I/O blocks. Such a coroutine never suspends, so it is driven to its end
with one `send(None)`, with no event loop: the methods, their signatures and
their docstrings exist once, in api.py.
"""

from __future__ import annotations

import functools
import http.client
import threading
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from clawguard.client import api, calls, settings

P = ParamSpec("P")
T = TypeVar("T")

# A kept-alive connection idle this long is not reused: the daemon cuts idle ones
# (server.client_timeout_ms, 30 s by default), and reusing one it cut costs a retry.
KEEPALIVE_S = 10.0


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends; RuntimeError if it tries to."""
    try:
        waited = coroutine.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coroutine.close()
    raise RuntimeError(f"the blocking client's coroutine waited for {waited!r}")


class _Driven(AbstractContextManager[T]):
    """An async context manager that never suspends, as a plain one."""

    def __init__(self, inner: AbstractAsyncContextManager[T]) -> None:
        self._inner = inner

    def __enter__(self) -> T:
        return drive(self._inner.__aenter__())

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> bool | None:
        return drive(self._inner.__aexit__(kind, exc, traceback))


def _blocking(method: Callable[Concatenate[api.Api, P], Coroutine[Any, Any, T]]
              ) -> Callable[Concatenate[Client, P], T]:
    @functools.wraps(method)
    def run(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return drive(method(self._api, *args, **kwargs))

    return run


def _blocking_context(method: Callable[Concatenate[api.Api, P],
                                       AbstractAsyncContextManager[T]]
                      ) -> Callable[Concatenate[Client, P], AbstractContextManager[T]]:
    @functools.wraps(method)
    def run(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> AbstractContextManager[T]:
        return _Driven(method(self._api, *args, **kwargs))

    return run


class _Transport(api.Api):
    """api.Api over http.client: one kept-alive connection per thread, for replayable calls."""

    def __init__(self, config: settings.Settings, sleep: Callable[[float], None]) -> None:
        super().__init__(config)
        self._sleeper = sleep
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()

    def close(self) -> None:
        with self._lock:
            conns, self._open = self._open, set()
        for conn in conns:
            conn.close()

    async def _sleep(self, seconds: float) -> None:
        self._sleeper(seconds)

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
        parts = self._settings.parts
        kind = (http.client.HTTPSConnection if parts.scheme == "https"
                else http.client.HTTPConnection)
        conn = kind(parts.hostname or "", parts.port, timeout=self._settings.timeout)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise api.Failed(sent=False) from exc
        with self._lock:
            self._open.add(conn)
        if keep:
            self._local.conn = conn
        return conn

    async def _exchange(self, call: calls.Call[Any], request_id: str
                        ) -> tuple[int, Any, str | None]:
        # A call unsafe to send twice gets a fresh connection, so a kept-alive one the daemon
        # has cut never makes it fail after it may have landed.
        keep = call.replayable
        conn = (self._kept() if keep else None) or self._connect(keep)
        try:
            if conn.sock is not None:
                conn.sock.settimeout(self._settings.timeout + call.wait_s)
            conn.request(call.method, call.target(self._settings.prefix), body=call.body,
                         headers=dict(self._settings.headers(call, request_id)))
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop(conn)
            raise api.Failed(sent=True) from exc
        if not keep or resp.will_close:
            self._drop(conn)
        else:
            self._local.used = time.monotonic()
        return resp.status, calls.decode(raw), resp.getheader("X-Request-Id")


class Client:
    """The clawguard API for blocking code, over the standard library's http.client.

    Arguments and methods as AsyncClient's (`sleep` blocks). Safe to share
    between threads: each thread keeps its own kept-alive connection.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 10.0, retry: settings.Retry = settings.DEFAULT_RETRY,
                 actor: str | None = None, sleep: Callable[[float], None] = time.sleep,
                 ride_out_s: float = settings.RIDE_OUT_S) -> None:
        self._api = _Transport(
            settings.Settings(url, api_key, timeout, retry, actor, ride_out_s), sleep)

    @property
    def url(self) -> str:
        return self._api.url

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._api.close()

    healthz = _blocking(api.Api.healthz)
    readyz = _blocking(api.Api.readyz)
    metrics = _blocking(api.Api.metrics)
    openapi = _blocking(api.Api.openapi)
    list_budgets = _blocking(api.Api.list_budgets)
    set_budget = _blocking(api.Api.set_budget)
    delete_budget = _blocking(api.Api.delete_budget)
    resume_budget = _blocking(api.Api.resume_budget)
    spend = _blocking(api.Api.spend)
    preflight = _blocking(api.Api.preflight)
    step = _blocking_context(api.Api.step)
    authorize = _blocking(api.Api.authorize)
    guarded = _blocking_context(api.Api.guarded)
    receipt = _blocking(api.Api.receipt)
    approval_settings = _blocking(api.Api.approval_settings)
    set_approval_settings = _blocking(api.Api.set_approval_settings)
    enforcement_check = _blocking(api.Api.enforcement_check)
    governance_report = _blocking(api.Api.governance_report)
    approval_stats = _blocking(api.Api.approval_stats)
    spend_summary = _blocking(api.Api.spend_summary)
    me = _blocking(api.Api.me)
    list_keys = _blocking(api.Api.list_keys)
    create_key = _blocking(api.Api.create_key)
    revoke_key = _blocking(api.Api.revoke_key)
    create_hold = _blocking(api.Api.create_hold)
    get_hold = _blocking(api.Api.get_hold)
    commit_hold = _blocking(api.Api.commit_hold)
    release_hold = _blocking(api.Api.release_hold)
    start_run = _blocking(api.Api.start_run)
    end_run = _blocking(api.Api.end_run)
    get_run = _blocking(api.Api.get_run)
    list_runs = _blocking(api.Api.list_runs)
    run_events = _blocking(api.Api.run_events)
    quota = _blocking(api.Api.quota)
    set_quota = _blocking(api.Api.set_quota)
    audit = _blocking(api.Api.audit)
    audit_head = _blocking(api.Api.audit_head)
    request_tool_approval = _blocking(api.Api.request_tool_approval)
    request_delegation_approval = _blocking(api.Api.request_delegation_approval)
    wait_for_approval = _blocking(api.Api.wait_for_approval)
    get_approval = _blocking(api.Api.get_approval)
    pending_page = _blocking(api.Api.pending_page)
    pending_approvals = _blocking(api.Api.pending_approvals)
    resolve_approval = _blocking(api.Api.resolve_approval)
    vote_approval = _blocking(api.Api.vote_approval)
    waive_approval = _blocking(api.Api.waive_approval)
    grants = _blocking(api.Api.grants)
    revoke_grant = _blocking(api.Api.revoke_grant)
    approval_history = _blocking(api.Api.approval_history)
    record_history = _blocking(api.Api.record_history)
    list_guardrails = _blocking(api.Api.list_guardrails)
    get_guardrail = _blocking(api.Api.get_guardrail)
    create_guardrail = _blocking(api.Api.create_guardrail)
    evaluate_guardrails = _blocking(api.Api.evaluate_guardrails)
    list_tools = _blocking(api.Api.list_tools)
    register_tool = _blocking(api.Api.register_tool)
    deprecate_tool = _blocking(api.Api.deprecate_tool)
    archive_tool = _blocking(api.Api.archive_tool)
    update_guardrail = _blocking(api.Api.update_guardrail)
    delete_guardrail = _blocking(api.Api.delete_guardrail)
    guardrail_versions = _blocking(api.Api.guardrail_versions)
    rollback_guardrail = _blocking(api.Api.rollback_guardrail)
    list_tool_policies = _blocking(api.Api.list_tool_policies)
    create_tool_policy = _blocking(api.Api.create_tool_policy)
    delete_tool_policy = _blocking(api.Api.delete_tool_policy)
    list_role_overrides = _blocking(api.Api.list_role_overrides)
    create_role_override = _blocking(api.Api.create_role_override)
    delete_role_override = _blocking(api.Api.delete_role_override)
