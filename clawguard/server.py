"""Runs the app as a daemon: bind, say where, wait for SIGTERM or SIGINT, drain, close.

systemd hears READY=1 once the store is migrated and the socket listens,
watchdog pings while the loop runs, and STOPPING=1 when the drain begins.

A signal only sets an event; the drain then runs in order: stop accepting
connections, let in-flight requests finish (bounded by
server.shutdown_timeout_ms), then the cleanup contexts flush the write queue
and close the store.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web as aioweb

from clawguard import config, systemd, web

log = logging.getLogger(__name__)


async def serve(cfg: config.Config) -> None:
    # The writer thread holds the GIL while it runs Python between SQLite calls; every
    # socket syscall of the event loop gives the GIL away, and waiting the default 5 ms
    # to get it back would dominate each request's latency.
    sys.setswitchinterval(0.0005)
    notifier = systemd.Notifier()
    stopping = asyncio.Event()  # set by a signal from now on, even one sent during start-up
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    app = web.create_app(cfg)
    # keepalive_timeout also cuts a connection that never completes its request headers.
    runner = aioweb.AppRunner(
        app, access_log=None, keepalive_timeout=cfg.server.client_timeout_ms / 1000
    )
    await runner.setup()  # opens and migrates the store
    try:
        site = aioweb.TCPSite(
            runner, cfg.server.host, cfg.server.port,
            shutdown_timeout=cfg.server.shutdown_timeout_ms / 1000,
        )
        await site.start()
        for host, port, *_ in runner.addresses:
            log.info("listening on http://%s:%d", host, port)
        notifier.notify("READY=1")
        async with notifier.watchdog():
            await stopping.wait()
            notifier.notify("STOPPING=1")
            log.info("shutting down")
    finally:
        await runner.cleanup()
    log.info("stopped")
