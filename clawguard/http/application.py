"""create_app(): the one place the pieces are wired, the engine chosen, lifecycles ordered."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from clawguard.core import errors, principals
from clawguard.http import access, console, middleware, routes, state
from clawguard.runtime import config, metrics
from clawguard.services import (
    authorize,
    checkpoints,
    events,
    gate,
    handshake,
    holds,
    notify,
    periodic,
    reaper,
    refusals,
    runs,
)
from clawguard.store import engines

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# The longest request line the API admits: preflight with four 200-character ids, each
# character 4 UTF-8 bytes percent-encoded (~9.7 KB). aiohttp's 8190 would answer such a
# request with its parser's text/plain 400, outside the one error shape.
MAX_REQUEST_LINE_BYTES = 16 * 1024


def create_app(
    cfg: config.Config, clock: Callable[[], int] = state.wall_clock_ms
) -> web.Application:
    # No aiohttp middleware: each route's handler is middleware.serve's (fewer frames a
    # request, and a parked wait keeps them all).
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[state.CONFIG] = cfg
    app[state.CLOCK] = clock
    app[state.METRICS] = metrics.Metrics()
    app[state.KEY_CACHE] = access.KeyCache(cfg.auth.cache_ms)
    app[state.KEY_USAGE] = access.KeyUsage()
    app[state.PRICES] = cfg.price_table()
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_notify_ctx)
    app.cleanup_ctx.append(_key_usage_ctx)
    app.cleanup_ctx.append(_events_ctx)
    app.on_startup.append(_first_admin_key)
    app.cleanup_ctx.append(_runs_ctx)
    app.cleanup_ctx.append(_refusals_ctx)
    app.cleanup_ctx.append(_checkpoints_ctx)
    app.cleanup_ctx.append(_approvals_ctx)
    app.cleanup_ctx.append(_authorizer_ctx)
    app.on_shutdown.append(_answer_parked_waits)
    app.on_shutdown.append(_end_event_streams)
    app[state.OPENAPI] = routes.openapi_json()
    app.router.add_routes([route.definition() for route in routes.ROUTES])
    app.router.add_routes(console.ROUTES)
    app.router.add_routes([middleware.unrouted()])  # last: what no route above takes
    return app


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    db = engines.open_store(app[state.CONFIG].storage, app[state.CLOCK])
    db.batch_observer = app[state.METRICS].observe_batch
    await db.open()
    app[state.STORE] = db
    app[state.GATE] = gate.Gate(db)
    yield
    await db.close()


async def _notify_ctx(app: web.Application) -> AsyncIterator[None]:
    """Webhooks deliver in the background, woken by every commit that appends audit rows
    (README: Notifications)."""
    db = app[state.STORE]
    notifier = notify.Notifier(db, app[state.CONFIG], app[state.CLOCK], app[state.METRICS])
    app[state.NOTIFIER] = notifier
    if not notifier.webhooks:
        yield
        return
    db.watch_audit(lambda _seq: notifier.nudge())
    await notifier.start()
    yield
    await notifier.stop()


async def flush_key_usage(app: web.Application) -> None:
    """Write the keys' lastUsedAt noted since the last flush, in one store write."""
    used = app[state.KEY_USAGE].take()
    if not used:
        return
    try:
        await app[state.STORE].touch_keys(used)
    except errors.StoreUnavailable as exc:
        app[state.KEY_USAGE].give_back(used)
        log.warning("could not record when keys were last used: %s", exc.message)


async def _key_usage_ctx(app: web.Application) -> AsyncIterator[None]:
    period_s = app[state.CONFIG].auth.last_used_flush_ms / 1000
    flushing = periodic.Periodic("key use flush", period_s, lambda: flush_key_usage(app))
    flushing.start()
    yield
    await flushing.stop()
    await flush_key_usage(app)  # the store is still open: it closes after this


async def _first_admin_key(app: web.Application) -> None:
    """On first start with no key, make an admin key and leave it where only the owner reads it."""
    cfg, db = app[state.CONFIG], app[state.STORE]
    if cfg.auth.mode != "keys" or await db.has_keys():
        return
    key = principals.new_key()
    path = cfg.admin_key_file
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # also when the file was already there
        out.write(key + "\n")
    first = principals.Principal(key_id=principals.new_key_id(), name="first-admin", role="admin")
    await db.add_key(first, principals.hash_key(key))
    log.warning("no API key existed: created an admin key in %s (readable by its owner only)",
                path)


async def _events_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = events.Events(app[state.STORE], app[state.CLOCK])
    app[state.EVENTS] = hub
    hub.start()
    yield
    await hub.stop()


async def _runs_ctx(app: web.Application) -> AsyncIterator[None]:
    app[state.RUNS] = runs.Runs(app[state.STORE], app[state.CONFIG], app[state.CLOCK],
                                app[state.METRICS])
    app[state.HOLDS] = holds.Holds(app[state.STORE], app[state.CONFIG].holds, app[state.CLOCK],
                                   app[state.METRICS])
    yield


async def _checkpoints_ctx(app: web.Application) -> AsyncIterator[None]:
    writer = checkpoints.Checkpoints(
        app[state.STORE], app[state.CLOCK], app[state.CONFIG].storage.ledger_checkpoint_ms
    )
    app[state.CHECKPOINTS] = writer
    writer.start()
    yield
    await writer.stop()


async def _refusals_ctx(app: web.Application) -> AsyncIterator[None]:
    tally = refusals.Refusals(
        app[state.STORE], app[state.CLOCK], app[state.CONFIG].auth.refusal_audit_ms
    )
    app[state.REFUSALS] = tally
    tally.start()
    yield
    await tally.stop()  # after the drain: the last refusals are written before the store closes


async def _approvals_ctx(app: web.Application) -> AsyncIterator[None]:
    approvals = handshake.Approvals(
        app[state.STORE], app[state.CONFIG].approvals, app[state.CLOCK], app[state.METRICS],
        app.get(state.SELF_APPROVAL),
    )
    app[state.STORE].watch_decisions(approvals.heard)
    sweeper = reaper.Reaper(approvals, app[state.CONFIG].approvals.sweep_ms, app[state.METRICS],
                            app[state.STORE], app[state.CLOCK])
    await sweeper.sweep()  # what expired while the daemon was down, before serving
    app[state.APPROVALS], app[state.REAPER] = approvals, sweeper
    sweeper.start()
    yield
    await sweeper.stop()
    approvals.close()


async def _authorizer_ctx(app: web.Application) -> AsyncIterator[None]:
    app[state.AUTHORIZER] = authorize.Authorizer(
        app[state.STORE], app[state.GATE], app[state.APPROVALS], app[state.HOLDS],
        app[state.CONFIG], app[state.CLOCK], app[state.METRICS])
    yield


async def _answer_parked_waits(app: web.Application) -> None:
    # on_shutdown runs before in-flight handlers are awaited: parked long-polls
    # answer `timeout` now instead of holding the drain for their whole wait.
    if state.APPROVALS in app:
        app[state.APPROVALS].close()


async def _end_event_streams(app: web.Application) -> None:
    # An open stream would hold the drain for server.shutdown_timeout_ms: end them now.
    if state.EVENTS in app:
        app[state.EVENTS].close()
