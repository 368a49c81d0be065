"""Where the daemon is, who calls it, and how patiently: what both clients share."""

from __future__ import annotations

import os
import random
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clawguard import __version__
from clawguard.client import calls

DEFAULT_URL = "http://127.0.0.1:18790"
URL_ENV, KEY_ENV = "CLAWGUARD_URL", "CLAWGUARD_API_KEY"
# How long a wait that has no deadline of its own, and a step's spend, keep trying a daemon
# that cannot be reached: long enough for a restart, short enough that an agent notices.
RIDE_OUT_S = 60.0


@dataclass(frozen=True)
class Retry:
    """Up to `attempts` tries; before try n+1 a wait of base * 2**(n-1), at most cap, of which
    the second half is random (so a retry never comes at once, and a crowd spreads out)."""

    attempts: int = 3
    base_s: float = 0.2
    cap_s: float = 2.0

    def delay(self, retry: int) -> float:
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(retry, 32))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


DEFAULT_RETRY = Retry()


class Attempts:
    """Counts one call's tries and says how long to wait before the next, or None: give up."""

    def __init__(self, retry: Retry) -> None:
        self._retry = retry
        self._done = 0

    def next_delay(self, may_retry: bool) -> float | None:
        self._done += 1
        if not may_retry or self._done >= self._retry.attempts:
            return None
        return self._retry.delay(self._done - 1)


class Settings:
    """The daemon's address, the caller's key and name, the timeouts and the retry policy."""

    def __init__(self, url: str | None, api_key: str | None, timeout: float, retry: Retry,
                 actor: str | None, ride_out_s: float) -> None:
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.parts = urllib.parse.urlsplit(self.url)
        if self.parts.scheme not in ("http", "https") or not self.parts.hostname:
            raise ValueError(f"not an http(s) URL: {self.url!r}")
        self.prefix = self.parts.path
        self.timeout = timeout
        self.retry = retry
        self.ride_out_s = ride_out_s
        key = api_key if api_key is not None else os.environ.get(KEY_ENV)
        self._headers = {"Accept": "application/json",
                         "User-Agent": f"clawguard-client/{__version__}"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        if actor:
            self._headers[calls.ACTOR_HEADER] = actor

    def headers(self, call: calls.Call[Any], request_id: str) -> Mapping[str, str]:
        """One request id for a call and all its retries, so the daemon's logs join them."""
        headers = {**self._headers, **call.headers, "X-Request-Id": request_id}
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        return headers


def request_id() -> str:
    return "cgc-" + uuid.uuid4().hex[:16]
