"""HTTP that aiohttp's parser refuses before the app sees it: the one documented exception to
the JSON error shape (README: Using it). Each gets a 400, the connection is closed, nothing is
stored, and the daemon serves the next caller."""

from __future__ import annotations

import socket

import pytest
from conftest import dump
from daemon import Daemon, call

pytestmark = pytest.mark.slow

SPEND_HEAD = "POST /api/governance/spend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
BODY = '{"agentId": "a1", "costUsdCents": 1}'

MALFORMED = {
    "130-headers": SPEND_HEAD + "".join(f"X-H{n}: v\r\n" for n in range(130))
    + f"Content-Length: {len(BODY)}\r\n\r\n{BODY}",
    "8k-header": SPEND_HEAD + "X-Big: " + "a" * 8192 + f"\r\nContent-Length: {len(BODY)}\r\n\r\n"
    + BODY,
    "bad-method": "G(E)T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-chunk-size": SPEND_HEAD + "Transfer-Encoding: chunked\r\n\r\nzz\r\n" + BODY
    + "\r\n0\r\n\r\n",
    "bad-header-line": "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    "bad-version": "GET /healthz HTTP/9.x\r\nHost: x\r\n\r\n",
}


def _exchange(url: str, request: str) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        answer = b""
        while chunk := sock.recv(65536):  # the daemon closes the connection after it
            answer += chunk
    return answer


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("malformed") / "clawguard.db") as running:
        status, _ = call(running.url, "POST", "/api/governance/budgets",
                         {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100, "mode": "cap"})
        assert status == 200
        yield running


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_what_the_parser_refuses_is_a_plain_400_that_changes_nothing(daemon, name):
    before = dump(daemon.db_path)
    answer = _exchange(daemon.url, MALFORMED[name])
    head, _, _ = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].split(" ")[1] == "400", answer[:300]  # aiohttp answers as HTTP/1.0
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"].startswith("text/plain")  # aiohttp's, not the JSON shape
    # and _exchange read to the end: the daemon closed the connection
    assert dump(daemon.db_path) == before
    assert call(daemon.url, "GET", "/readyz")[0] == 200


def test_a_long_header_within_the_limit_gets_the_json_shape(daemon):
    """Up to aiohttp's 8190-byte header line, the app answers, in its one shape."""
    answer = _exchange(daemon.url, "POST /api/governance/spend HTTP/1.1\r\nHost: x\r\n"
                       "Connection: close\r\nContent-Type: application/json\r\n"
                       "X-Big: " + "a" * 8000 + "\r\nContent-Length: 2\r\n\r\n[]")
    assert answer.startswith(b"HTTP/1.1 400 ") and b'"error": "invalid_input"' in answer
