"""Full garbage collections kept off the hot path, and parked waits that end are freed."""

from __future__ import annotations

import asyncio
import gc
import resource
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from clawguard.http import application, state
from clawguard.runtime import collector, config, server

TOOLS = "/api/tools/approvals"


class Node:
    """Something that can sit in a reference cycle and be watched by a weakref."""

    def __init__(self) -> None:
        self.other: Any = self


def tracked() -> int:
    """Every object the collector tracks, frozen or not."""
    return len(gc.get_objects()) + gc.get_freeze_count()


def rss_kb() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() // 1024


def test_inside_automatic_full_collections_are_off_and_restored_after() -> None:
    before = gc.get_threshold()
    with collector.governing(lambda: 0):
        assert gc.get_threshold()[:2] == before[:2]
        assert gc.get_threshold()[2] >= 1 << 30
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


class Moment:
    """Open connections and monotonic seconds, as a test sets them."""

    def __init__(self, connections: int) -> None:
        self.connections, self.now = connections, 0.0

    def busy(self) -> int:
        return self.connections

    def clock(self) -> float:
        return self.now


def test_busy_ticks_freeze_survivors_and_a_quiet_moment_frees_cycles_frozen_meanwhile() -> None:
    moment = Moment(connections=5000)
    with collector.governing(moment.busy, moment.clock) as collecting:
        cycle = Node()
        gone = weakref.ref(cycle)
        collecting.tick()  # busy: frozen, so no full collection walks it
        frozen = gc.get_freeze_count()
        del cycle
        gc.collect()  # what anyone may run: it does not see the frozen cycle
        moment.connections = collector.QUIET_CONNECTIONS
        collecting.tick()  # quiet, but a full collection only so often
        assert gone() is not None
        assert collecting.full_collections == 0
        moment.now += collector.QUIET_FULL_S
        collecting.tick()  # quiet: everything is walked once, the garbage goes
        assert gone() is None
        assert collecting.full_collections == 1
        assert gc.get_freeze_count() < frozen


@pytest.mark.parametrize(
    ("connections", "since_full", "pause"),
    [
        (10_000, 0.0, collector.BUSY_TICK_S),  # froze: again soon, the young stay few
        (collector.QUIET_CONNECTIONS + 1, 0.0, collector.BUSY_TICK_S),
        (collector.QUIET_CONNECTIONS, 0.0, collector.TICK_S),  # collected what is young
        (0, 0.0, collector.TICK_S),
        (10_000, collector.FULL_EVERY_S, collector.TICK_S),  # the full collection
    ],
)
def test_a_busy_daemon_ticks_ten_times_as_often(
    connections: int, since_full: float, pause: float
) -> None:
    moment = Moment(connections)
    gc.disable()  # no automatic collection moves them meanwhile: only the tick
    try:
        with collector.governing(moment.busy, moment.clock) as collecting:
            moment.now += since_full
            young = {id(node): node for node in (Node() for _ in range(100))}

            def in_young_generations() -> int:
                return sum(id(o) in young for o in gc.get_objects(0) + gc.get_objects(1))

            assert in_young_generations() == 100
            assert collecting.tick() == pause
            # Frozen or collected: none is left for the next young collection to walk.
            assert in_young_generations() == 0
    finally:
        gc.enable()


def test_a_daemon_never_quiet_still_collects_fully_now_and_then() -> None:
    moment = Moment(connections=10_000)
    with collector.governing(moment.busy, moment.clock) as collecting:
        cycle = Node()
        gone = weakref.ref(cycle)
        collecting.tick()
        del cycle
        moment.now += collector.FULL_EVERY_S - 1
        collecting.tick()
        assert gone() is not None
        moment.now += 1
        collecting.tick()
        assert gone() is None


@pytest.fixture
def cfg(cfg: config.Config) -> config.Config:
    # An hour of waiting: every wait ends by its decision.
    return cfg.model_copy(update={"approvals": cfg.approvals.model_copy(
        update={"ttl_ms": 3_600_000, "wait_ms": 3_600_000})})


@pytest.fixture
async def daemon(cfg: config.Config) -> AsyncIterator[tuple[web.AppRunner, str]]:
    server.raise_open_files_limit()
    runner = web.AppRunner(application.create_app(cfg), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)  # a round connects at once
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield runner, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def a_round(
    app: web.Application, base: str, waits: int, collecting: collector.Collector, moment: Moment
) -> int:
    """Park `waits` waits through HTTP, tick while they are parked, resolve them all, tick once
    they have ended; the objects tracked at the peak."""
    db = app[state.STORE]
    opening = db.open_approval
    all_open = asyncio.Event()
    opened = 0

    async def counted(*args: Any) -> Any:
        nonlocal opened
        result = await opening(*args)
        opened += 1
        if opened == waits:
            all_open.set()
        return result

    db.open_approval = counted  # type: ignore[method-assign]
    # A new connection each, closed after its answer, as agents on other machines would.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def wait(n: int) -> str:
            body = {"toolName": "t.deploy", "agentId": f"agent-{n}"}
            async with session.post(base + TOOLS, json=body) as resp:
                answer = await resp.json()
            assert answer["resolution"] == "allow_once", answer
            return str(answer["approvalId"])

        waiting = [asyncio.create_task(wait(n)) for n in range(waits)]
        await asyncio.wait_for(all_open.wait(), 60)
        del db.open_approval
        assert app[state.APPROVALS].parked == waits
        collecting.tick()  # busy: the parked waits are frozen
        peak = tracked()
        pending = await db.list_pending_approvals(app[state.CLOCK](), waits)
        gate = asyncio.Semaphore(64)

        async def resolve(approval_id: str) -> None:
            async with gate, session.post(f"{base}{TOOLS}/{approval_id}/resolve",
                                          json={"decision": "allow_once"}) as resp:
                assert resp.status == 200

        await asyncio.gather(*(resolve(row.id) for row in pending))
        answered = await asyncio.gather(*waiting)
    assert sorted(answered) == sorted(row.id for row in pending)
    del pending, answered, waiting
    assert app[state.APPROVALS].parked == 0
    assert app[state.APPROVALS].watched == 0
    moment.now += collector.QUIET_FULL_S
    collecting.tick()  # quiet: the one full collection
    return peak


async def test_parked_waits_that_end_are_freed_round_after_round(
    daemon: tuple[web.AppRunner, str],
) -> None:
    runner, base = daemon
    app, connections = runner.app, runner.server
    assert connections is not None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Rounds of 500 keep it to seconds (bench/approvals.py parks 10,000).
    waits = min(500, (soft - 200) // 2)  # a client and a server socket each
    moment = Moment(0)
    with collector.governing(lambda: len(connections.connections), moment.clock) as collecting:
        await a_round(app, base, waits, collecting, moment)  # builds once, heap at its peak
        objects, rss = tracked(), rss_kb()
        peaks = [await a_round(app, base, waits, collecting, moment) for _ in range(3)]
        grown_objects, grown_rss = tracked() - objects, rss_kb() - rss
        full_collections = collecting.full_collections
    # 60-odd objects a parked wait at the peak (and the client's), and none left after.
    assert min(peaks) - objects > 60 * waits
    assert grown_objects < waits // 2, grown_objects  # a leak of one object a wait: 1,500
    # Coarser (the heap keeps some pages): leaked waits would hold 15 KB each, 45 KB a wait
    # over 3 rounds.
    assert grown_rss < 6 * waits, f"{grown_rss} KB more after 3 rounds"
    assert full_collections == 4
