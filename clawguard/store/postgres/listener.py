"""LISTEN/NOTIFY: decisions and expiries made on one instance wake waiters parked on another,
and every instance hears when the audit chain grows (the event stream's live reads).

A write that decides or expires an approval sends `pg_notify` inside its
transaction, so the notification leaves only if the decision commits. Each
store keeps one extra connection that LISTENs and hands every payload to a
callback on the event loop; no polling. When that connection drops it is
reopened with a short backoff, and the callback learns when it listened
again (`on_listening`) so it can catch up on what was sent in between.

A payload is the sending instance's id and the decided row itself (its JSON),
so a daemon whose callers wait on it answers them without reading the row
back through a pool the decisions themselves queue on; a row too long for a
notification is announced by its id alone, and read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg

from clawguard.core import records
from clawguard.store.postgres import connection

log = logging.getLogger(__name__)

CHANNEL = "clawguard_approvals"
# A payload `audit:<seq>` says the audit chain grew to seq; any other is `<instance>:<id>`
# of a decided approval (an instance is 8 hex digits, never "audit").
AUDIT_PREFIX = "audit:"
# A silent network drop sends nothing; a ping this often notices it.
PING_S = 5.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.05, 2.0


# PostgreSQL refuses a payload of 8,000 bytes or more.
PAYLOAD_MAX_BYTES = 7_999


def decided(instance: str, approval: records.Approval) -> str:
    """The payload announcing `approval`'s decision or expiry (README: "Running several
    instances": every instance on a database runs the same version, which reads it)."""
    payload = f"{instance}:{approval.to_json_bytes().decode()}"
    if len(payload.encode()) > PAYLOAD_MAX_BYTES:
        return f"{instance}:{approval.id}"
    return payload


def read(payload: str) -> tuple[str, str, records.Approval | None]:
    """(sending instance, approval id, the decided row when the payload carries it)."""
    instance, _, announced = payload.partition(":")
    if announced.startswith("{"):
        approval = records.Approval.model_validate_json(announced)
        return instance, approval.id, approval
    return instance, announced, None


async def notify(conn: connection.Connection, payload: str) -> None:
    """Queue a notification in the open transaction: delivered at its commit, else never."""
    await conn.execute("SELECT pg_notify('clawguard_approvals', %s)", (payload,))


class Listener:
    """One LISTENing connection, reopened after a drop, feeding payloads to `on_payload`."""

    def __init__(
        self, url: str, on_payload: Callable[[str], None],
        on_listening: Callable[[int], None] | None = None,
    ) -> None:
        self._url = url
        self._on_payload = on_payload
        self._on_listening = on_listening  # called with how many times it listened before
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.connects = 0

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def start(self, wait_s: float = connection.CONNECT_TIMEOUT_S) -> None:
        """Start listening; wait up to `wait_s` for the first LISTEN (it retries after that)."""
        self._task = asyncio.create_task(self._run(), name="clawguard-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), wait_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as exc:
                if self._listening.is_set():  # it was up: try again soon
                    log.warning("the LISTEN connection dropped, reconnecting: %s",
                                connection.unavailable(exc, "listened to").message)
                    backoff = BACKOFF_MIN_S
                self._listening.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _listen(self) -> None:
        conninfo = connection.conninfo(self._url)
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await conn.execute("LISTEN clawguard_approvals")
            before, self.connects = self.connects, self.connects + 1
            self._listening.set()
            if self._on_listening is not None:
                self._on_listening(before)
            while True:
                async for note in conn.notifies(timeout=PING_S):
                    try:
                        self._on_payload(note.payload)
                    except Exception:
                        log.exception("a notification could not be handled: %r", note.payload)
                await conn.execute("SELECT 1")
