"""What the app holds, under typed AppKeys: config, clock, store, services and metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from aiohttp import web

from clawguard.core import pricing, principals
from clawguard.http import access
from clawguard.runtime import config, metrics
from clawguard.services import (
    authorize,
    checkpoints,
    events,
    gate,
    handshake,
    holds,
    notify,
    reaper,
    refusals,
    runs,
)
from clawguard.store import contract

CONFIG = web.AppKey("config", config.Config)
CLOCK: web.AppKey[Callable[[], int]] = web.AppKey("clock")
STORE = web.AppKey("store", contract.Store)
KEY_CACHE = web.AppKey("key_cache", access.KeyCache)
PRINCIPAL = web.RequestKey("principal", principals.Principal)
APPROVALS = web.AppKey("approvals", handshake.Approvals)
# Reads allow_self_approval when a vote is cast; absent: the stored approval settings' (set in
# application._approvals_ctx). Tests may set their own.
SELF_APPROVAL: web.AppKey[handshake.SelfApproval] = web.AppKey("self_approval")
GATE = web.AppKey("gate", gate.Gate)
REAPER = web.AppKey("reaper", reaper.Reaper)
REFUSALS = web.AppKey("refusals", refusals.Refusals)
CHECKPOINTS = web.AppKey("checkpoints", checkpoints.Checkpoints)
METRICS = web.AppKey("metrics", metrics.Metrics)
RUNS = web.AppKey("runs", runs.Runs)
AUTHORIZER = web.AppKey("authorizer", authorize.Authorizer)
HOLDS = web.AppKey("holds", holds.Holds)
OPENAPI = web.AppKey("openapi", bytes)
PRICES: web.AppKey[Mapping[str, pricing.Price]] = web.AppKey("prices")
KEY_USAGE = web.AppKey("key_usage", access.KeyUsage)
NOTIFIER = web.AppKey("notifier", notify.Notifier)
EVENTS = web.AppKey("events", events.Events)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000



def principal_of(request: web.Request) -> principals.Principal:
    """Who is calling: the request's key, or the anonymous admin when auth.mode is none."""
    principal: principals.Principal = request.get(PRINCIPAL, principals.ANONYMOUS)
    return principal
