"""middleware.serve around a parked approval wait: the answer named, counted and in the one
error shape after the wait, its logs naming the request, a cancelled wait forgotten."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sqlite3
import threading

import aiohttp
import pytest
from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request
from test_approvals import TOOLS, pending, until
from test_metrics import scrape, value

from clawguard.http import bodies, state
from clawguard.runtime import config, logs


@pytest.fixture
def cfg(cfg):
    """Only the tests sweep (as in test_approvals)."""
    return cfg.model_copy(update={"approvals": config.ApprovalsConfig(sweep_ms=3_600_000)})


class Lines(logging.Handler):
    """The daemon's JSON lines, formatted as they are emitted (in the task that logs)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logs.JsonFormatter())
        self.entries: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append(json.loads(self.format(record)))


@pytest.fixture
def lines():
    handler = Lines()
    logger = logging.getLogger("clawguard")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def asking(client, rid: str, **fields):
    async def ask():
        body = {"toolName": "rm", "agentId": "a1"} | fields
        async with client.post(TOOLS, json=body, headers={"X-Request-Id": rid}) as resp:
            return resp.status, resp.headers.get("X-Request-Id"), await resp.json()

    return asyncio.create_task(ask())


def parked_caller(client):
    """The one parked caller's future (the registry's: no public way to reach it)."""
    [waiter] = client.app[state.APPROVALS]._waiters.values()
    return waiter


async def test_a_woken_wait_is_answered_with_its_request_id_and_counted(client):
    before = await scrape(client)
    caller = asking(client, "run-1/step.2")
    [row] = await pending(client, 1)
    await until(lambda: client.app[state.APPROVALS].parked == 1)
    resp = await client.post(f"{TOOLS}/{row['id']}/resolve", json={"decision": "allow_once"})
    assert resp.status == 200
    status, rid, body = await caller
    assert (status, rid, body["resolution"]) == (200, "run-1/step.2", "allow_once")
    after = await scrape(client)
    labels = {"method": "POST", "route": TOOLS, "status": "200"}
    assert (value(after, "clawguard_http_requests_total", **labels)
            - value(before, "clawguard_http_requests_total", **labels)) == 1


async def test_an_answer_made_at_once_is_named_too(client):
    status, rid, body = await asking(client, "r-0", waitMs=0)
    assert (status, rid, body["resolution"]) == (200, "r-0", "timeout")


async def test_an_answer_that_cannot_be_made_is_a_500_in_the_one_shape(client, lines):
    caller = asking(client, "r-500")
    await until(lambda: client.app[state.APPROVALS].parked == 1)
    parked_caller(client).set_exception(RuntimeError("no answer"))
    status, rid, body = await caller
    assert (status, rid) == (500, "r-500")
    assert body == {"error": "internal_error", "message": "internal error", "details": None}
    [entry] = [e for e in lines.entries if str(e["msg"]).startswith("unhandled error")]
    assert entry["requestId"] == "r-500" and entry["level"] == "error"


async def test_what_a_request_logs_names_it(client, db_path, lines):
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TRIGGER broken BEFORE INSERT ON approvals"
                 " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    conn.close()
    status, rid, body = await asking(client, "r-logged")
    assert (status, rid, body) == (200, "r-logged", {"resolution": "deny"})
    [entry] = [e for e in lines.entries if "handshake failed" in str(e["msg"])]
    assert entry["requestId"] == "r-logged"


async def test_a_cancelled_parked_request_is_forgotten_and_its_row_stays(client):
    caller = asking(client, "r-cancelled")
    await until(lambda: client.app[state.APPROVALS].parked == 1)
    # aiohttp serves the request in a task of its own, named for the request.
    [task] = [t for t in asyncio.all_tasks() if t.get_name() == "r-cancelled"]
    task.cancel()
    with pytest.raises(aiohttp.ClientError):
        await caller
    service = client.app[state.APPROVALS]
    assert service.parked == 0 and service.watched == 0
    [row] = await pending(client, 1)
    assert row["status"] == "pending"


async def test_a_parked_wait_keeps_no_buffer_for_its_body_and_is_answered(client):
    caller = asking(client, "r-parked", args={"target": "prod"})
    await until(lambda: client.app[state.APPROVALS].parked == 1)
    [request] = [o for o in gc.get_objects()
                 if isinstance(o, web.BaseRequest) and o.path == TOOLS and o.method == "POST"]
    content = request.content
    # What bodies.drop_read_buffer expects of the installed aiohttp, and what it left.
    assert content.at_eof() and content._buffer == ()  # type: ignore[attr-defined]
    assert (await content.read(), await content.readany()) == (b"", b"")
    [row] = await pending(client, 1)
    resp = await client.post(f"{TOOLS}/{row['id']}/resolve", json={"decision": "allow_once"})
    assert resp.status == 200
    assert await caller == (200, "r-parked", {"resolution": "allow_once",
                                               "approvalId": row["id"]})


async def test_a_body_not_read_to_its_end_keeps_its_buffer():
    request = make_mocked_request("POST", TOOLS, payload=streams.StreamReader(
        streams.BaseProtocol(asyncio.get_running_loop()), 2**16,
        loop=asyncio.get_running_loop()))
    content = request.content
    content.feed_data(b'{"a": ')
    bodies.drop_read_buffer(request)  # more is to come: the buffer stays
    assert await content.readany() == b'{"a": '
    content.feed_data(b"1}")
    content.feed_eof()
    bodies.drop_read_buffer(request)  # not read yet: it stays
    assert await content.read() == b"1}"
    bodies.drop_read_buffer(request)  # read to its end
    assert content._buffer == ()  # type: ignore[attr-defined]
    assert await content.read() == b""


async def test_no_request_id_outside_a_request():
    assert logs.current_request_id() is None  # a task not serving a request
    seen: list[str | None] = []
    thread = threading.Thread(target=lambda: seen.append(logs.current_request_id()))
    thread.start()
    thread.join()
    assert seen == [None]  # a thread without an event loop
    token = logs.request_id.set("by-hand")
    try:
        assert logs.current_request_id() == "by-hand"
    finally:
        logs.request_id.reset(token)
