"""Webhook delivery in the background: each webhook's events read off the audit chain into
its outbox, POSTed, and retried until a 2xx answers or their time is up (README:
Notifications).

Nothing here runs inside a request: the store says a commit appended audit rows (`nudge`,
here or, by NOTIFY, on another instance) and each webhook's loop
wakes, scans its outbox and starts each POST on a task of its own. A slow or dead
receiver so delays only its own deliveries, never a request and never another webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

import aiohttp

from clawguard.core import errors, events, webhooks
from clawguard.runtime import config, metrics
from clawguard.store import contract

log = logging.getLogger(__name__)

# The longest a loop sleeps unwoken: it then looks again for events written by another
# instance on the same database and for leases left by an instance that died.
POLL_S = 1.0
# A burst of commits wakes a loop once per this much, so the spend path's batches never
# turn into one scan each.
MIN_GAP_S = 0.05
SCAN_LIMIT = 500  # audit rows scanned into the outbox per transaction
CLAIM_LIMIT = 32  # POSTs under way at once per webhook
# A claimed delivery is due again this long after its try's timeout if its outcome was
# never written (the daemon died mid-try): at least once, never lost.
LEASE_SLACK_MS = 5_000
CONTENT_TYPE = "application/json"


class Webhook:
    """One webhook's loop: scan, claim, POST, write the outcome; sleep until woken or due."""

    def __init__(self, store: contract.Store, hook: config.WebhookConfig,
                 settings: config.NotifyConfig, console_url: str, clock: Callable[[], int],
                 counters: metrics.Metrics, rand: Callable[[], float]) -> None:
        self._store, self._hook, self._settings = store, hook, settings
        self._console_url, self._clock, self._rand = console_url, clock, rand
        self.id = hook.id
        self._names = frozenset(hook.events)
        self._backoff = settings.backoff()
        self._lease_ms = settings.timeout_ms + LEASE_SLACK_MS
        self._wake = asyncio.Event()
        self._next_due: int | None = None
        self._sent = counters.webhook_deliveries.labels(self.id, "sent")
        self._retried = counters.webhook_deliveries.labels(self.id, "retried")
        self._failed = counters.webhook_deliveries.labels(self.id, "failed")
        self._task: asyncio.Task[None] | None = None
        self._trying: set[asyncio.Task[None]] = set()  # POSTs under way, CLAIM_LIMIT at most

    def nudge(self) -> None:
        self._wake.set()

    def start(self, session: aiohttp.ClientSession) -> None:
        self._task = asyncio.create_task(self._run(session), name=f"clawguard webhook {self.id}")

    async def stop(self) -> None:
        """Stop the loop and the tries under way (their leases lapse: tried again later)."""
        tasks = [task for task in (self._task, *self._trying) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    async def queue(self) -> None:
        """Scan everything new on the chain into this webhook's outbox."""
        while await self._store.queue_deliveries(self.id, self._names, SCAN_LIMIT) == SCAN_LIMIT:
            pass

    async def _run(self, session: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            started = loop.time()
            try:
                busy = await self.deliver_due(session)
            except errors.StoreUnavailable as exc:
                log.warning("webhook %s: cannot read its outbox, retrying: %s", self.id,
                            exc.message)
                busy = False
            except Exception:
                log.exception("webhook %s: delivery failed", self.id)
                busy = False
            if busy:
                continue
            wait = POLL_S
            if self._next_due is not None:
                wait = min(wait, max(self._next_due - self._clock(), 0) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            await asyncio.sleep(max(MIN_GAP_S - (loop.time() - started), 0))

    async def deliver_due(self, session: aiohttp.ClientSession) -> bool:
        """One round: queue what is new, start trying what is due (each try on its own task,
        so a slow receiver holds up none of the others); whether any try was started."""
        await self.queue()
        # Reads first: a claim is a write, and on SQLite a write joins the spends' batch.
        self._next_due = (await self._store.delivery_backlog(self.id)).next_due
        if self._next_due is None or self._next_due > self._clock():
            return False
        room = CLAIM_LIMIT - len(self._trying)
        if room <= 0:
            self._next_due = None  # due, but no room: the next try to end wakes the loop
            return False
        claimed = await self._store.claim_deliveries(self.id, self._lease_ms, room)
        for delivery in claimed:
            task = asyncio.create_task(self._try(session, delivery))
            self._trying.add(task)
            task.add_done_callback(self._tried)
        return bool(claimed)

    def _tried(self, task: asyncio.Task[None]) -> None:
        self._trying.discard(task)
        self._wake.set()

    async def _try(self, session: aiohttp.ClientSession, delivery: webhooks.Delivery) -> None:
        try:
            await self._deliver(session, delivery)
        except errors.StoreUnavailable as exc:  # its lease lapses and it is tried again
            log.warning("webhook %s: cannot write the outcome of event %d: %s", self.id,
                        delivery.seq, exc.message)
        except Exception:
            log.exception("webhook %s: event %d failed", self.id, delivery.seq)

    def body(self, event: events.PublicEvent) -> bytes:
        if self._hook.format == "slack":
            return webhooks.slack_body(event, self._console_url)
        return events.encode(event)

    async def _deliver(self, session: aiohttp.ClientSession, delivery: webhooks.Delivery
                       ) -> None:
        event = events.from_row(delivery.row)
        if event is None:  # only told rows are queued; nothing to say for another
            await self._store.delivery_done(self.id, delivery.seq)
            return
        error = await self.post(session, event)
        if error is None:
            await self._store.delivery_done(self.id, delivery.seq)
            self._sent.inc()
            return
        retry_at = webhooks.retry_at(self._backoff, delivery.attempts + 1, delivery.created_at,
                                     self._clock(), self._rand)
        await self._store.delivery_failed(self.id, delivery.seq, error, retry_at)
        if retry_at is None:
            self._failed.inc()
            log.warning("webhook %s: gave up event %d after %d tries: %s", self.id,
                        delivery.seq, delivery.attempts + 1, error)
        else:
            self._retried.inc()
            log.info("webhook %s: event %d failed (%s), next try in %d ms", self.id,
                     delivery.seq, error, retry_at - self._clock())

    async def post(self, session: aiohttp.ClientSession, event: events.PublicEvent
                   ) -> str | None:
        """POST the event once; None when a 2xx answered, else why not."""
        body = self.body(event)
        headers = {"Content-Type": CONTENT_TYPE, webhooks.EVENT_ID_HEADER: str(event.id)}
        if self._hook.secret is not None:
            headers[webhooks.SIGNATURE_HEADER] = webhooks.signature(
                self._hook.secret.get_secret_value(), body)
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_ms / 1000)
        try:
            async with session.post(self._hook.url, data=body, headers=headers,
                                    timeout=timeout, allow_redirects=False) as answer:
                if 200 <= answer.status < 300:
                    return None
                return f"answered HTTP {answer.status}"
        except TimeoutError:
            return f"no answer within {self._settings.timeout_ms} ms"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"


class Notifier:
    """Every configured webhook's loop, their HTTP session, and the nudge that wakes them."""

    def __init__(self, store: contract.Store, cfg: config.Config, clock: Callable[[], int],
                 counters: metrics.Metrics, rand: Callable[[], float] = random.random) -> None:
        self._store, self._clock, self._counters = store, clock, counters
        self.webhooks = [
            Webhook(store, hook, cfg.notify, cfg.console_url, clock, counters, rand)
            for hook in cfg.notify.webhooks
        ]
        self._session: aiohttp.ClientSession | None = None

    def nudge(self) -> None:
        """A transaction committed: it may have appended events."""
        for webhook in self.webhooks:
            webhook.nudge()

    async def start(self) -> None:
        """Give a new webhook its cursor at the head before any request is served (it is
        told what happens from now on), then start the loops."""
        for webhook in self.webhooks:
            try:
                await webhook.queue()
            except errors.StoreUnavailable as exc:  # the loop tries again
                log.warning("webhook %s: cannot read its outbox: %s", webhook.id, exc.message)
        self._session = aiohttp.ClientSession()
        for webhook in self.webhooks:
            webhook.start(self._session)

    async def stop(self) -> None:
        for webhook in self.webhooks:
            await webhook.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def observe(self) -> None:
        """Refresh the queue depth and oldest-age gauges (at a /metrics scrape)."""
        now = self._clock()
        for webhook in self.webhooks:
            backlog = await self._store.delivery_backlog(webhook.id)
            age = 0.0 if backlog.oldest_at is None else max(now - backlog.oldest_at, 0) / 1000
            self._counters.set_webhook_backlog(webhook.id, backlog.depth, age)
