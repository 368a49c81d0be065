"""The background sweep: every `approvals.sweep_ms`, expire the approval requests past their time.

The sweep writes what readers already see (a pending row past expiry reads
as expired), audits each expiry once and wakes the row's waiters. One sweep
also runs at start-up, before the daemon serves, for the rows that expired
while it was down. `sweep()` is public so tests drive it with a fake clock.
"""

from __future__ import annotations

import logging

from clawguard.runtime import metrics
from clawguard.services import handshake, periodic

log = logging.getLogger(__name__)


class Reaper:
    def __init__(
        self, handshake: handshake.Approvals, period_ms: int, counters: metrics.Metrics
    ) -> None:
        self._handshake = handshake
        self._metrics = counters
        self._loop = periodic.Periodic("approval sweep", period_ms / 1000, self.sweep)

    async def sweep(self) -> int:
        """One pass; how many rows it expired."""
        expired = await self._handshake.expire_due()
        self._metrics.reaper_sweeps.inc()
        self._metrics.expired.labels("approval").inc(expired)
        if expired:
            log.info("expired %d approval request(s)", expired)
        return expired

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
