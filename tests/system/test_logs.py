"""Structured logs: JSON lines off a terminal, request ids in and out, no secrets."""

from __future__ import annotations

import json
import logging
import socket

from daemon import Daemon, call

from clawguard.runtime import logs


async def test_request_id_is_echoed_or_made(client):
    given = await client.get("/healthz", headers={"X-Request-Id": "run-42/step.7"})
    assert given.headers["X-Request-Id"] == "run-42/step.7"
    made = await client.get("/healthz")
    other = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    made_ids = {made.headers["X-Request-Id"], other.headers["X-Request-Id"]}
    assert len(made_ids) == 2 and "bad id\twith spaces" not in made_ids  # made, and unique
    missing = await client.get("/nowhere", headers={"X-Request-Id": "r-1"})
    assert missing.status == 404 and missing.headers["X-Request-Id"] == "r-1"


def test_json_lines_carry_the_request_id_and_no_secret():
    record = logging.LogRecord("clawguard.x", logging.WARNING, __file__, 1,
                               "refused Bearer %s", ("cgk_abcdefghijklmnopqrstuvwxyz",), None)
    record.keyId = "key_1"
    token = logs.request_id.set("r-9")
    try:
        line = logs.JsonFormatter().format(record)
        text = logs.TextFormatter().format(record)
    finally:
        logs.request_id.reset(token)
    entry = json.loads(line)
    assert entry["requestId"] == "r-9" and entry["level"] == "warning"
    assert entry["keyId"] == "key_1" and entry["logger"] == "clawguard.x"
    assert "cgk_abc" not in line and "cgk_abc" not in text and "[request r-9]" in text


def test_the_daemon_logs_one_json_object_per_line(tmp_path):
    with Daemon(tmp_path / "log.db") as daemon:
        assert call(daemon.url, "GET", "/healthz")[0] == 200
        assert daemon.stop() == 0
    entries = [json.loads(line) for line in daemon.log]
    assert any(e["msg"].startswith("listening on http://127.0.0.1:") for e in entries)
    assert entries[-1]["msg"] == "stopped"


def test_a_request_aiohttp_cannot_parse_is_a_warning_not_an_error(tmp_path):
    """The client's fault: a 400 and one warning line, no error and no traceback."""
    with Daemon(tmp_path / "log.db") as daemon:
        host, port = daemon.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Bad: a\x00b\r\n\r\n")
            assert conn.recv(200).startswith(b"HTTP/1.0 400")
        assert call(daemon.url, "GET", "/healthz")[0] == 200  # and it goes on serving
        assert daemon.stop() == 0
    entries = [json.loads(line) for line in daemon.log]
    [warning] = [e for e in entries if e["logger"] == "aiohttp.server"]
    assert warning["level"] == "warning" and "exc" not in warning, warning
    assert warning["msg"].startswith("Error handling request from 127.0.0.1: Invalid header")
    assert not [e for e in entries if e["level"] in ("error", "critical")]
