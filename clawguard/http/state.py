"""What the app holds, under typed AppKeys: config, clock, store, services and metrics."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from clawguard.core import principals
from clawguard.http import access
from clawguard.runtime import config, metrics
from clawguard.services import gate, handshake, reaper
from clawguard.store import contract

CONFIG = web.AppKey("config", config.Config)
CLOCK: web.AppKey[Callable[[], int]] = web.AppKey("clock")
STORE = web.AppKey("store", contract.Store)
KEY_CACHE = web.AppKey("key_cache", access.KeyCache)
PRINCIPAL = web.RequestKey("principal", principals.Principal)
APPROVALS = web.AppKey("approvals", handshake.Approvals)
GATE = web.AppKey("gate", gate.Gate)
REAPER = web.AppKey("reaper", reaper.Reaper)
METRICS = web.AppKey("metrics", metrics.Metrics)
OPENAPI = web.AppKey("openapi", bytes)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000

