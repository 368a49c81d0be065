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
import contextlib
import logging
import resource
import signal

from aiohttp import web as aioweb
from aiohttp.http_exceptions import HttpProcessingError

from clawguard.http import application
from clawguard.runtime import collector, config, systemd

log = logging.getLogger(__name__)


class MalformedRequests(logging.Filter):
    """aiohttp answers a request it cannot parse (a NUL in a header, a bare CR) with a 400 and
    logs it as an error with a traceback. The fault is the client's, not the daemon's: one
    warning line, so error-level lines stay for what an operator must look at."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            reason = (exc.message or type(exc).__name__).splitlines()[0].rstrip(":")
            record.msg, record.args = "%s: %s", (record.getMessage(), reason)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


_MALFORMED_REQUESTS = MalformedRequests()


async def serve(cfg: config.Config) -> None:
    notifier = systemd.Notifier()
    stopping = asyncio.Event()  # set by a signal from now on, even one sent during start-up
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    raise_open_files_limit()
    logging.getLogger("aiohttp.server").addFilter(_MALFORMED_REQUESTS)  # once: filters are a set
    app = application.create_app(cfg)
    # keepalive_timeout also cuts a connection that never completes its request headers.
    runner = aioweb.AppRunner(
        app, access_log=None, keepalive_timeout=cfg.server.client_timeout_ms / 1000,
        max_line_size=application.MAX_REQUEST_LINE_BYTES,
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
        # Start-up objects (modules, pydantic schemas, routes) and parked waits stay out
        # of full collections, whose pause would otherwise stall every request.
        connections = runner.server
        assert connections is not None
        with collector.governing(lambda: len(connections.connections)) as collecting:
            ticking = asyncio.create_task(collecting.run())
            try:
                notifier.notify("READY=1")
                async with notifier.watchdog():
                    await stopping.wait()
                    notifier.notify("STOPPING=1")
                    log.info("shutting down")
            finally:
                ticking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticking
    finally:
        await runner.cleanup()
    log.info("stopped")


# Beyond this an unlimited hard limit is not worth asking for (Linux's default nr_open).
_OPEN_FILES_CEILING = 1_048_576


def raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one: each parked approval wait holds a
    connection, and a soft limit of 1024 would refuse the 1000th waiting agent."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _OPEN_FILES_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %d: %s", soft, exc)
            return
        log.info("open files limit raised from %d to %d", soft, wanted)
