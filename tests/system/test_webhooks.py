"""Webhooks from real daemon processes: events left undelivered by a SIGKILLed daemon are
delivered once it is back, and two daemons on one PostgreSQL deliver each event once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from daemon import Daemon, call
from engines.conftest import pg_database, pg_server, pg_url  # noqa: F401 - fixtures

from clawguard.core import webhooks

pytestmark = pytest.mark.slow
SECRET = "whsec_system"


class Receiver(ThreadingHTTPServer):
    """A webhook receiver in a thread: records signed bodies, answers `status`."""

    def __init__(self) -> None:
        self.status = 200
        self.bodies: list[dict[str, object]] = []
        self.refused = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def wait_for(self, predicate, within: float = 30.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + within
        while not predicate():
            assert time.monotonic() < deadline, (self.refused, self.bodies)
            time.sleep(0.02)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            status = self.server.status
            if status == 200:
                assert self.headers["X-Clawguard-Signature"] == webhooks.signature(SECRET, body)
                self.server.bodies.append(json.loads(body))
            else:
                self.server.refused += 1
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def config_file(tmp_path: Path, url: str) -> str:
    path = tmp_path / "clawguard.toml"
    path.write_text(
        "[notify]\nretry_min_ms = 100\nretry_max_ms = 200\ntimeout_ms = 1000\n"
        f'[[notify.webhooks]]\nurl = "{url}"\nsecret = "{SECRET}"\n'
    )
    return str(path)


def prompt(url: str) -> None:
    assert call(url, "POST", "/api/tools/approvals",
                {"toolName": "rm", "agentId": "a1", "waitMs": 0})[0] == 200


def make_events(url: str) -> None:
    """A prompt, both crossings of a cap budget and its pause: four events."""
    prompt(url)
    assert call(url, "POST", "/api/governance/budgets",
                {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100, "mode": "cap"})[0] == 200
    for cents in (80, 20):
        assert call(url, "POST", "/api/governance/spend",
                    {"agentId": "a1", "costUsdCents": cents})[0] == 200


def test_events_a_killed_daemon_left_undelivered_are_delivered_after_restart(
        tmp_path: Path, receiver: Receiver) -> None:
    receiver.status = 503
    daemon = Daemon(tmp_path / "clawguard.db", "--config", config_file(tmp_path, receiver.url))
    with daemon:
        make_events(daemon.url)
        receiver.wait_for(lambda: receiver.refused >= 8)  # each of the four tried, and again
        daemon.kill()
    receiver.status = 200
    with daemon:  # the same database and config
        receiver.wait_for(lambda: len({b["id"] for b in receiver.bodies}) == 4)
    kinds = sorted(str(b["type"]) for b in receiver.bodies)
    assert sorted(set(kinds)) == ["approval.requested", "budget.crossed", "budget.paused"]


def test_two_daemons_on_one_database_deliver_each_event_once(
        tmp_path: Path, receiver: Receiver, pg_url: str) -> None:  # noqa: F811
    settings = config_file(tmp_path, receiver.url)
    first = Daemon(tmp_path / "a.db", "--config", settings, storage_url=pg_url)
    second = Daemon(tmp_path / "b.db", "--config", settings, storage_url=pg_url)
    with first, second:
        make_events(first.url)
        for n in range(20):
            prompt(first.url if n % 2 else second.url)
        receiver.wait_for(lambda: len({b["id"] for b in receiver.bodies}) >= 24)
        time.sleep(1.5)  # past a poll: a second delivery by the other daemon would show
    ids = [b["id"] for b in receiver.bodies]
    assert len(set(ids)) == 24 and len(ids) == 24, sorted(ids)
