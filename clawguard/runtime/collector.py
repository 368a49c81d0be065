"""Keeps full garbage collections off the hot path while thousands of approval waits are parked.

A full collection walks every object the collector tracks, and a parked wait
holds some 60 of them (its connection, request, tasks and coroutines): with
10,000 parked, CPython's automatic full collections stall the loop for a
quarter of a second or more, and every request with it. Those objects are
not garbage and need no walking: a wait that ends leaves no reference cycle
behind, so reference counting frees it, frozen or not.

So automatic full collections are off (the oldest generation's threshold is
out of reach; the young generations are collected as usual), and a tick

- while many connections are open, every `BUSY_TICK_S`, freezes what is not
  frozen yet (`gc.freeze()` splices two lists: no walk, no pause; a
  collection first, even of the young generations alone, walked 8-18 ms of
  CPU there). Often, because a wait that ends leaves its connection open for
  the agent's next request, and that idle connection's new objects (~15) live
  on in the young generations: with a tick each second, 2,000 decisions a
  second left ~30,000 of them there, and every collection of the middle
  generation walked them all, a 10-20 ms pause twice a second
  (bench/README.md, "Young collections");
- at a quiet moment (few are open), each `TICK_S`, collects what is not
  frozen (little),
  and at most every `QUIET_FULL_S` unfreezes everything for one full
  collection (then a walk of the start-up objects and the few connections),
  which frees the cycles that became garbage while frozen (connections cut
  off mid-way leave some: an exception's traceback), then freezes the
  survivors again.

A daemon never quiet still gets a full collection every `FULL_EVERY_S`: one
pause of a quarter-second or so at 10,000 parked waits, the price of never
leaking.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

TICK_S = 1.0
BUSY_TICK_S = 0.1
# At most this many open connections makes a quiet moment.
QUIET_CONNECTIONS = 100
QUIET_FULL_S = 60.0
FULL_EVERY_S = 600.0
# The oldest generation's threshold counts young collections: this many never come.
_NEVER = 1 << 30


class Collector:
    """The tick's policy; `busy()` says how many connections are open now."""

    def __init__(self, busy: Callable[[], int], clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._busy = busy
        self._clock = clock
        self._last_full = clock()
        self._frozen_since_full = False
        self.full_collections = 0

    def tick(self) -> float:
        """One tick's work; the seconds until the next one."""
        quiet = self._busy() <= QUIET_CONNECTIONS
        since_full = self._clock() - self._last_full
        if since_full >= FULL_EVERY_S or (
                quiet and self._frozen_since_full and since_full >= QUIET_FULL_S):
            self.collect_fully()
        elif quiet:
            gc.collect()  # walks only what is not frozen: little, when few are connected
        else:
            gc.freeze()
            self._frozen_since_full = True
            return BUSY_TICK_S
        return TICK_S

    def collect_fully(self) -> int:
        """One collection over everything, frozen or not, then the survivors frozen again;
        how many objects were unreachable."""
        gc.unfreeze()
        started = time.perf_counter()
        found = gc.collect()
        took = time.perf_counter() - started
        gc.freeze()
        if took > 0.05:
            log.info("full garbage collection took %.0f ms (%d unreachable)", took * 1000, found)
        self._frozen_since_full = False
        self._last_full = self._clock()
        self.full_collections += 1
        return found

    async def run(self) -> None:
        pause = TICK_S
        while True:
            await asyncio.sleep(pause)
            pause = self.tick()


@contextmanager
def governing(
    busy: Callable[[], int], clock: Callable[[], float] = time.monotonic
) -> Iterator[Collector]:
    """Freeze what exists now (start-up), take over full collections from CPython while
    inside; afterwards the thresholds are as they were and nothing is left frozen."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(thresholds[0], thresholds[1], _NEVER)
    try:
        yield Collector(busy, clock)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
