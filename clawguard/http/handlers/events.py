"""The event stream: `GET /api/events`, server-sent events of what the key may read."""

from __future__ import annotations

import re

from aiohttp import web

from clawguard.core import errors
from clawguard.http import state
from clawguard.services import events

# A comment line this often keeps proxies and load balancers from closing a quiet stream.
HEARTBEAT_S = 15.0
_EVENT_ID = re.compile(r"[0-9]{1,18}")
HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


def frame(item: events.Item) -> bytes:
    """One message; compact JSON has no line breaks, so `data:` is one line."""
    head = b"" if item.id is None else b"id: %d\n" % item.id
    return head + b"event: " + item.name.encode() + b"\ndata: " + item.data + b"\n\n"


def resume_after(request: web.Request) -> int | None:
    """The Last-Event-ID a reconnecting client sends: the seq to replay after."""
    given = request.headers.get("Last-Event-ID", "").strip()
    if not given:
        return None
    if not _EVENT_ID.fullmatch(given):
        raise errors.InvalidInput("Last-Event-ID must be an event id this stream sent",
                                  {"header": "Last-Event-ID"})
    return int(given)


async def stream(request: web.Request) -> web.StreamResponse:
    after = resume_after(request)
    hub = request.app[state.EVENTS]
    async with hub.subscribe(state.principal_of(request)) as subscription:
        response = web.StreamResponse(headers=HEADERS)
        await response.prepare(request)
        try:
            await response.write(b": clawguard events\n\n")
            if after is not None:
                async for missed in hub.replay(subscription, after):
                    await response.write(frame(missed))
            while True:
                try:
                    item = await subscription.next(HEARTBEAT_S)
                except events.Subscription.Closed:
                    break
                await response.write(b": ping\n\n" if item is None else frame(item))
        except ConnectionError:  # the client went away: the write found out
            pass
        except errors.StoreUnavailable:
            pass  # mid-replay: the stream ends, the client reconnects from its last id
        return response
