"""What the app holds, under typed AppKeys: config, clock, store, services and metrics."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from clawguard.core import principals
from clawguard.http import access
from clawguard.runtime import config, metrics
from clawguard.services import handshake, reaper, refusals, runs
from clawguard.store import contract

CONFIG = web.AppKey("config", config.Config)
CLOCK: web.AppKey[Callable[[], int]] = web.AppKey("clock")
STORE = web.AppKey("store", contract.Store)
KEY_CACHE = web.AppKey("key_cache", access.KeyCache)
PRINCIPAL = web.RequestKey("principal", principals.Principal)
APPROVALS = web.AppKey("approvals", handshake.Approvals)
REAPER = web.AppKey("reaper", reaper.Reaper)
REFUSALS = web.AppKey("refusals", refusals.Refusals)
METRICS = web.AppKey("metrics", metrics.Metrics)
RUNS = web.AppKey("runs", runs.Runs)
OPENAPI = web.AppKey("openapi", bytes)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000

