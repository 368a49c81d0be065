"""The ledger's running digest: every `storage.ledger_checkpoint_ms`, one audit row covering the
spends recorded since the last one (core.ledger.checkpoint), so `clawguard ledger verify`
can prove that no ledger row was deleted, added or edited since.

Two daemons on one database may both write a checkpoint for the same spends: both are
valid, and verification accepts either. `checkpoint()` is public so tests drive it with a
fake clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from clawguard.core import ledger
from clawguard.services import periodic
from clawguard.store import contract

log = logging.getLogger(__name__)

BATCH = 10_000  # spends one checkpoint covers at the most; the next takes the rest


class Checkpoints:
    def __init__(self, db: contract.Store, clock: Callable[[], int], period_ms: int) -> None:
        self._db = db
        self._clock = clock
        self._loop = periodic.Periodic("ledger checkpoint", period_ms / 1000, self.checkpoint)

    async def checkpoint(self) -> int:
        """Cover the settled spends since the last checkpoint; how many were covered."""
        last = await self._db.last_checkpoint()
        rows = await self._db.settled_spends(
            0 if last is None else last[0], self._clock() - ledger.SETTLE_MS, BATCH
        )
        event = ledger.checkpoint(last, rows)
        if event is not None:
            await self._db.audit_event(event)
        return len(rows)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
