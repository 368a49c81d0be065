"""A job run every period in the background (the reaper, ledger checkpoints, refusal and key
use flushes): started and stopped by the app's lifecycle. A store outage logs one line a
period, anything else a traceback, and the loop goes on either way."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from clawguard.core import errors

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, what: str, period_s: float, job: Callable[[], Awaitable[object]]) -> None:
        self._what, self._period, self._job = what, period_s, job
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"clawguard {self._what}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            try:
                await self._job()
            except errors.StoreUnavailable as exc:  # an outage: one line a period, no trace
                log.warning("%s failed, retrying: %s", self._what, exc.message)
            except Exception:
                log.exception("%s failed", self._what)
