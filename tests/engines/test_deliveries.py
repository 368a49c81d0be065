"""Webhook outbox verbs, run on every engine with the contract suite's fixtures: the audit
chain scanned into deliveries, claimed under a lease, retried, given up, delivered."""

from __future__ import annotations

import asyncio
from typing import Any

from clawguard.core import audit, events
from clawguard.store import contract

HOOK = "a" * 16
ALL = frozenset(events.EVENT_NAMES)
LEASE = 40_000


async def told(db: contract.Store, action: str = "approval.requested", agent: str = "a1"
               ) -> None:
    await db.audit_event(audit.Event("approval", action, agent, {"approvalId": "ap_x"}))


async def test_a_new_webhook_starts_at_the_head_then_gets_what_follows(
        store: contract.Store, clock: Any) -> None:
    await told(store)
    await told(store, "budget.paused")
    assert await store.queue_deliveries(HOOK, ALL, 100) == 0  # the cursor is set at the head
    assert (await store.delivery_backlog(HOOK)).depth == 0
    await told(store, "budget.set")  # not told
    await told(store, "budget.crossed_soft")
    clock.advance(5)
    assert await store.queue_deliveries(HOOK, ALL, 100) == 2
    assert await store.queue_deliveries(HOOK, ALL, 100) == 0  # nothing new: scanned once
    backlog = await store.delivery_backlog(HOOK)
    assert (backlog.depth, backlog.failed) == (1, 0)
    assert backlog.oldest_at == clock.now - 5 and backlog.next_due == clock.now
    [delivery] = await store.claim_deliveries(HOOK, LEASE, 10)
    assert delivery.row.action == "budget.crossed_soft" and delivery.attempts == 0
    assert delivery.seq == 4 and delivery.created_at == clock.now - 5
    assert events.from_row(delivery.row) is not None


async def test_a_claim_is_leased_retried_and_delivered(store: contract.Store, clock: Any
                                                       ) -> None:
    await store.queue_deliveries(HOOK, ALL, 100)
    await told(store)
    await store.queue_deliveries(HOOK, ALL, 100)
    [first] = await store.claim_deliveries(HOOK, LEASE, 10)
    assert await store.claim_deliveries(HOOK, LEASE, 10) == []  # leased
    clock.advance(LEASE)
    [again] = await store.claim_deliveries(HOOK, LEASE, 10)  # the lease lapsed: due again
    assert again.seq == first.seq
    await store.delivery_failed(HOOK, first.seq, "answered HTTP 500", clock.now + 2_000)
    assert (await store.delivery_backlog(HOOK)).next_due == clock.now + 2_000
    clock.advance(1_999)
    assert await store.claim_deliveries(HOOK, LEASE, 10) == []
    clock.advance(1)
    [retried] = await store.claim_deliveries(HOOK, LEASE, 10)
    assert retried.attempts == 1
    await store.delivery_done(HOOK, retried.seq)
    clock.advance(LEASE)
    assert await store.claim_deliveries(HOOK, LEASE, 10) == []
    backlog = await store.delivery_backlog(HOOK)
    assert (backlog.depth, backlog.oldest_at, backlog.next_due) == (0, None, None)


async def test_a_given_up_delivery_leaves_the_queue_and_is_kept(store: contract.Store,
                                                               clock: Any) -> None:
    await store.queue_deliveries(HOOK, ALL, 100)
    await told(store)
    await store.queue_deliveries(HOOK, ALL, 100)
    [delivery] = await store.claim_deliveries(HOOK, LEASE, 10)
    await store.delivery_failed(HOOK, delivery.seq, "no answer within 10000 ms", None)
    clock.advance(10 * LEASE)
    assert await store.claim_deliveries(HOOK, LEASE, 10) == []
    backlog = await store.delivery_backlog(HOOK)
    assert (backlog.depth, backlog.failed) == (0, 1)


async def test_each_webhook_gets_the_events_it_names(store: contract.Store) -> None:
    other = "b" * 16
    for hook in (HOOK, other):
        await store.queue_deliveries(hook, ALL, 100)
    await told(store)
    await told(store, "breaker.no-progress")
    assert await store.queue_deliveries(HOOK, {"approval.requested"}, 100) == 2
    assert await store.queue_deliveries(other, ALL, 100) == 2
    mine = await store.claim_deliveries(HOOK, LEASE, 10)
    theirs = await store.claim_deliveries(other, LEASE, 10)
    assert [d.row.action for d in mine] == ["approval.requested"]
    assert [d.row.action for d in theirs] == ["approval.requested", "breaker.no-progress"]


async def test_a_scan_is_bounded_and_resumes_where_it_stopped(store: contract.Store) -> None:
    await store.queue_deliveries(HOOK, ALL, 100)
    for _ in range(7):
        await told(store)
    assert [await store.queue_deliveries(HOOK, ALL, 3) for _ in range(4)] == [3, 3, 1, 0]
    claimed = await store.claim_deliveries(HOOK, LEASE, 100)
    assert [d.seq for d in claimed] == list(range(1, 8))


async def test_racing_claims_take_each_delivery_once(store: contract.Store) -> None:
    await store.queue_deliveries(HOOK, ALL, 100)
    for _ in range(20):
        await told(store)
    await store.queue_deliveries(HOOK, ALL, 100)
    claims = await asyncio.gather(*(store.claim_deliveries(HOOK, LEASE, 3) for _ in range(10)))
    seqs = [d.seq for claim in claims for d in claim]
    assert sorted(seqs) == list(range(1, 21))
