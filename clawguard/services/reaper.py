"""The background sweep: every `approvals.sweep_ms`, expire the approval requests, holds and run
leases past their time.

The sweep writes what readers already see (a pending row, a hold or a
running run past its expiry reads as expired and counts no longer), audits
each approval's expiry once and wakes the row's waiters. One sweep also runs
at start-up, before the daemon serves, for the rows that expired while it
was down. `sweep()` is public so tests drive it with a fake clock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from clawguard.runtime import metrics
from clawguard.services import handshake, periodic
from clawguard.store import contract

log = logging.getLogger(__name__)

# Holds or runs written per store transaction; a backlog takes several in one sweep.
BATCH = 500


class Reaper:
    def __init__(
        self, handshake: handshake.Approvals, period_ms: int, counters: metrics.Metrics,
        db: contract.Store | None = None, clock: Callable[[], int] | None = None,
    ) -> None:
        self._handshake = handshake
        self._db, self._clock = db, clock
        self._metrics = counters
        self._loop = periodic.Periodic("approval sweep", period_ms / 1000, self.sweep)

    async def sweep(self) -> int:
        """One pass; how many approval requests it expired."""
        expired = await self._handshake.expire_due()
        self._metrics.reaper_sweeps.inc()
        self._metrics.expired.labels("approval").inc(expired)
        if expired:
            log.info("expired %d approval request(s)", expired)
        if self._db is not None and self._clock is not None:
            # A read first, as for approvals: a sweep with nothing due takes no write lock.
            holds_due, runs_due = await self._db.expiries_due(self._clock())
            if holds_due:
                await self._drain("hold", self._db.expire_holds)
            if runs_due:
                await self._drain("run", self._db.expire_runs)
        return expired

    async def _drain(self, kind: str, expire: Callable[[int], Awaitable[int]]) -> None:
        total = 0
        while (done := await expire(BATCH)) > 0:
            total += done
            if done < BATCH:
                break
        if total:
            self._metrics.expired.labels(kind).inc(total)
            log.info("expired %d %s(s)", total, kind)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
