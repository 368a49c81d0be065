"""The live event stream's fan-out: new audit rows read once, told to every subscriber.

The store says when the audit chain grew (`watch_audit`: after a local commit,
or through LISTEN/NOTIFY from another daemon on the same PostgreSQL database).
One reader then reads the new rows, however many consoles listen, turns those
that tell something into public events (core.events) and offers each to the
subscribers whose key may read it. With no subscriber nothing is read.
Spends are told too (`spent`), live only and only on the daemon that charged
them: a spend writes no audit row, so it has no event id to resume from.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from clawguard.core import commands, errors, events, principals, records
from clawguard.store import contract

log = logging.getLogger(__name__)

# Rows read at once, live or replaying; a reader catches up in pages of this size.
PAGE = 500
# Items a subscriber may have waiting; a client that falls this far behind is cut off, and
# resumes from its Last-Event-ID when it reconnects (the audit chain keeps everything).
BACKLOG = 1_000
# How long a failed read waits before the reader tries again.
RETRY_S = 1.0
SPEND_READERS = frozenset({"operator", "admin"})


@dataclass(frozen=True, slots=True)
class Item:
    """One message of the stream: `event:` name, `id:` (None for spends) and `data:` JSON."""

    name: str
    id: int | None
    data: bytes


def told(event: events.PublicEvent) -> Item:
    return Item(event.type, event.id, events.encode(event))


def visible(principal: principals.Principal, event: events.PublicEvent) -> bool:
    """A key sees an event its role may read, about an agent it may act for (a leader made
    with --leads hears only of its agents, as the approvals routes show it only them)."""
    if not events.may_read(principal.role, event.type):
        return False
    agent = event.data.get("agentId")
    return not isinstance(agent, str) or principal.may_act_for(agent)


class Subscription:
    """One client's queue. `next()` gives the next item, None when `within_s` passed with
    none (time for a heartbeat), and raises Closed once the stream is over for it."""

    class Closed(Exception):
        pass

    def __init__(self, principal: principals.Principal, head: int) -> None:
        self.principal = principal
        self.head = head  # the last seq the reader had read when this subscribed
        self.reason: str | None = None  # why it was closed
        self._items: collections.deque[Item] = collections.deque()
        self._ready = asyncio.Event()

    def offer(self, item: Item) -> None:
        if self.reason is not None:
            return
        if len(self._items) >= BACKLOG:
            self.close("fell behind")
            return
        self._items.append(item)
        self._ready.set()

    def close(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self._ready.set()

    async def next(self, within_s: float) -> Item | None:
        if not self._items and self.reason is None:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), within_s)
        if self._items:
            return self._items.popleft()
        if self.reason is not None:
            raise Subscription.Closed(self.reason)
        return None


class Events:
    """The reader and its subscribers, for one daemon."""

    def __init__(self, db: contract.Store, clock: Callable[[], int]) -> None:
        self._db = db
        self._clock = clock
        self._subscribers: set[Subscription] = set()
        self._spend_readers = 0
        self._head: int | None = None  # the last seq read; None while no one listens
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._db.watch_audit(self.heard)
        self._task = asyncio.create_task(self._read_loop(), name="clawguard-events")

    async def stop(self) -> None:
        self.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def close(self) -> None:
        """End every stream (shutdown): their handlers return, so the drain is not held."""
        for subscription in list(self._subscribers):
            subscription.close("shutting down")

    def heard(self, seq: int) -> None:
        """The chain grew to `seq` (0: maybe, somewhere): read on, if anyone listens."""
        if self._head is not None and (seq == 0 or seq > self._head):
            self._wake.set()

    @contextlib.asynccontextmanager
    async def subscribe(self, principal: principals.Principal) -> AsyncIterator[Subscription]:
        """A subscription that receives what is appended after its `head`, until it leaves."""
        async with self._lock:
            if self._head is None:
                self._head = (await self._db.audit_head()).seq
            subscription = Subscription(principal, self._head)
            self._subscribers.add(subscription)
            self._spend_readers += principal.role in SPEND_READERS
        self._wake.set()  # rows appended while no one listened were announced to no one
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
            self._spend_readers -= principal.role in SPEND_READERS
            if not self._subscribers:
                self._wake.set()  # the reader stops following the chain

    async def replay(self, subscription: Subscription, after: int) -> AsyncIterator[Item]:
        """What `subscription` may read of the rows after `after`, up to its head, in order."""
        while after < subscription.head:
            rows = await self._db.audit_after(after, min(PAGE, subscription.head - after))
            if not rows:
                return
            for row in rows:
                event = events.from_row(row)
                if event is not None and visible(subscription.principal, event):
                    yield told(event)
            after = rows[-1].seq

    def spent(self, request: commands.SpendRequest, outcome: records.SpendOutcome) -> None:
        """Tell operators and admins listening here of a charged spend (not of a replay)."""
        if not self._spend_readers or outcome.spend.duplicate:
            return
        data: dict[str, Any] = {
            "agentId": request.agent_id, "missionId": request.mission_id,
            "teamId": request.team_id, "tenantId": request.tenant_id,
            "costUsdMicros": outcome.spend.cost_usd_micros, "model": request.model,
            "stop": outcome.stop, "stopReason": outcome.stop_reason,
            "scopes": [scope.to_json() for scope in outcome.scopes],
        }
        body = {"type": "spend", "createdAt": self._clock(), "data": data}
        item = Item("spend", None, json.dumps(body, separators=(",", ":"),
                                              ensure_ascii=False).encode())
        for subscription in self._subscribers:
            if subscription.principal.role in SPEND_READERS:
                subscription.offer(item)

    async def _read_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                async with self._lock:
                    await self._read_new()
            except errors.StoreUnavailable as exc:
                log.warning("the event stream cannot read the audit log: %s", exc.message)
                await asyncio.sleep(RETRY_S)
                self._wake.set()

    async def _read_new(self) -> None:
        if not self._subscribers:
            self._head = None  # the next subscriber starts from the head it reads
            return
        while self._head is not None:
            rows = await self._db.audit_after(self._head, PAGE)
            for row in rows:
                self._head = row.seq
                event = events.from_row(row)
                if event is None:
                    continue
                item = told(event)
                for subscription in self._subscribers:
                    if visible(subscription.principal, event):
                        subscription.offer(item)
            if len(rows) < PAGE:
                return
