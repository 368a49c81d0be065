"""A real webhook receiver for tests: an aiohttp server on 127.0.0.1 (port 0) that records
every POST and answers with the status (and after the delay) a test sets."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def signed_by(self, secret: str) -> bool:
        """What a receiver does: HMAC the raw body and compare in constant time."""
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("X-Clawguard-Signature", ""))


@dataclass
class Receiver:
    status: int = 200
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    refused: int = 0  # POSTs answered with a non-2xx
    started: int = 0  # POSTs read, answered or not yet
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.started += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if 200 <= self.status < 300:
            self.received.append(Received(dict(request.headers), body))
        else:
            self.refused += 1
        return web.Response(status=self.status)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def until(self, count: int, within: float = 10.0) -> list[Received]:
        """Wait (yielding) until `count` deliveries arrived; a synchronisation, not a clock."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(self.received) < count:
            assert loop.time() < deadline, (
                f"{len(self.received)} of {count} delivered: {[r.body for r in self.received]}")
            await asyncio.sleep(0.01)
        return self.received
