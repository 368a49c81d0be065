"""AsyncClient: the clawguard API for asyncio code, over aiohttp (the one module that imports it).

aiohttp is imported when the first request is sent, so that blocking users
(the CLI) never pay for importing it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from clawguard.client import api, calls, settings

if TYPE_CHECKING:
    import aiohttp

# A kept-alive connection idle this long is not reused: the daemon cuts idle ones
# (server.client_timeout_ms, 30 s by default), and reusing one it cut costs a retry.
KEEPALIVE_S = 10.0


class AsyncClient(api.Api):
    """The clawguard API for asyncio code, over aiohttp; use it from one event loop.

    `url` defaults to $CLAWGUARD_URL, else http://127.0.0.1:18790; `api_key`
    to $CLAWGUARD_API_KEY. `actor` (like `resolved_by` and `revoked_by`) names
    who decides or revokes when the daemon runs without keys; with keys the
    daemon records the key's name instead. `sleep` waits between retries.
    `ride_out_s`: how long a wait without a deadline of its own, and a step's
    spend, keep trying a daemon that cannot be reached (a restart).
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 10.0, retry: settings.Retry = settings.DEFAULT_RETRY,
                 actor: str | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 ride_out_s: float = settings.RIDE_OUT_S) -> None:
        super().__init__(settings.Settings(url, api_key, timeout, retry, actor, ride_out_s))
        self._sleeper = sleep
        self._pooled: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None  # one connection per request

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for session in (self._pooled, self._fresh):
            if session is not None:
                await session.close()
        self._pooled = self._fresh = None

    def _session(self, pooled: bool) -> aiohttp.ClientSession:
        import aiohttp

        if pooled:
            if self._pooled is None:
                self._pooled = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_S))
            return self._pooled
        if self._fresh is None:
            self._fresh = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True))
        return self._fresh

    async def _sleep(self, seconds: float) -> None:
        await self._sleeper(seconds)

    async def _exchange(self, call: calls.Call[Any], request_id: str
                        ) -> tuple[int, Any, str | None]:
        import aiohttp

        # A call unsafe to send twice gets a fresh connection, so a kept-alive one the daemon
        # has cut never makes it fail after it may have landed.
        session = self._session(pooled=call.replayable)
        url = self.url + call.target("")
        try:
            async with session.request(
                call.method, url, data=call.body,
                headers=self._settings.headers(call, request_id),
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout + call.wait_s),
            ) as resp:
                raw = await resp.read()
                return resp.status, calls.decode(raw), resp.headers.get("X-Request-Id")
        except aiohttp.ClientConnectorError as exc:
            raise api.Failed(sent=False) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise api.Failed(sent=True) from exc
