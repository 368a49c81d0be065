"""Waits that outlive the daemon: a real daemon is stopped (SIGTERM) and started again on the
same database and port while a client waits on an approval, or records a step's spend."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid

import pytest
from daemon import Daemon

from clawguard import client

STARTS = 20.0  # seconds a daemon may take to start or stop, at most


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Waiter:
    """A client of the given kind in a thread of its own, running `scenario(c)` once; for the
    async kind every method runs to its end on the thread's own loop."""

    def __init__(self, kind: str, url: str, scenario, **settings) -> None:
        self.kind, self.url, self.scenario, self.settings = kind, url, scenario, settings
        self.paused = threading.Event()  # set at its first pause: it is inside its wait
        self.result: object = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main)
        self.thread.start()

    def _pause(self, seconds: float) -> None:
        self.paused.set()
        time.sleep(seconds)

    def _main(self) -> None:
        try:
            if self.kind == "Client":
                with client.Client(self.url, sleep=self._pause, **self.settings) as c:
                    self.result = self.scenario(c)
            else:
                asyncio.run(self._main_async())
        except BaseException as exc:
            self.error = exc

    async def _main_async(self) -> None:
        async def pause(seconds: float) -> None:
            self.paused.set()
            await asyncio.sleep(seconds)

        async with client.AsyncClient(self.url, sleep=pause, **self.settings) as c:
            loop = asyncio.get_running_loop()
            blocking = _OnLoop(c)
            self.result = await loop.run_in_executor(None, self.scenario, blocking)


    def join(self) -> object:
        self.thread.join(STARTS * 3)
        assert not self.thread.is_alive(), "the waiter is still waiting"
        if self.error is not None:
            raise self.error
        return self.result


class _OnLoop:
    """An AsyncClient's methods called from a worker thread, each run on the client's loop."""

    def __init__(self, inner: client.AsyncClient) -> None:
        self.inner, self.loop = inner, asyncio.get_running_loop()

    def __getattr__(self, name):
        method = getattr(self.inner, name)
        return lambda *args, **kwargs: asyncio.run_coroutine_threadsafe(
            method(*args, **kwargs), self.loop).result()


def restarted(first: Daemon) -> Daemon:
    """A second daemon on the first one's database and port, started once the first is gone."""
    assert first.stop(STARTS) == 0
    port = first.url.rsplit(":", 1)[1]
    second = Daemon(first.db_path, server_port=port, approvals_wait_ms="300")
    return second.start(STARTS)


@pytest.fixture(params=["Client", "AsyncClient"])
def kind(request):
    return request.param


@pytest.mark.parametrize("how", ["wait_for_approval", "request_tool_approval"])
def test_an_approval_wait_rides_out_a_daemon_restart(tmp_path, kind, how):
    agent = unique("a")
    # Long-polls cut to 300 ms: the waiter pauses between them, which shows it is waiting.
    first = Daemon(tmp_path / "restart.db", approvals_wait_ms="300").start(STARTS)
    second = None
    try:
        with client.Client(first.url) as opener:
            if how == "wait_for_approval":
                with pytest.raises(client.ApprovalDenied) as opened:
                    opener.request_tool_approval("deploy", agent, wait_ms=0)
                approval_id = opened.value.approval_id

                def scenario(c):
                    return c.wait_for_approval(approval_id, wait_ms=60_000).status
            else:

                def scenario(c):
                    return c.request_tool_approval("deploy", agent, wait_ms=60_000).resolution

            waiter = Waiter(kind, first.url, scenario)
            assert waiter.paused.wait(STARTS)
            [pending] = [a for a in opener.pending_approvals() if a.agent_id == agent]
        second = restarted(first)
        assert second.url == first.url
        assert waiter.thread.is_alive()  # still waiting, through the outage
        with client.Client(second.url) as leader:
            leader.resolve_approval(pending.id, "allow_once", resolved_by="boss")
        assert waiter.join() == "allow_once"
    finally:
        first.kill()
        if second is not None:
            second.kill()


def test_a_wait_that_cannot_reach_the_daemon_ends_at_its_deadline(tmp_path, kind):
    agent = unique("a")
    with Daemon(tmp_path / "gone.db") as daemon:
        with client.Client(daemon.url) as opener, pytest.raises(client.ApprovalDenied) as opened:
            opener.request_tool_approval("deploy", agent, wait_ms=0)
        approval_id = opened.value.approval_id
        assert daemon.stop(STARTS) == 0

        def scenario(c):
            started = time.monotonic()
            with pytest.raises(client.ApprovalDenied) as waited:
                c.wait_for_approval(approval_id, wait_ms=1500)
            return waited.value, time.monotonic() - started

        denied, took = Waiter(kind, daemon.url, scenario).join()
    assert (denied.resolution, denied.approval_id) == ("timeout", approval_id)
    assert isinstance(denied.__cause__, client.Unreachable)
    assert 1.5 <= took < 1.5 + 3  # its own deadline, plus at most one try's retries


def test_a_wait_without_a_deadline_rides_out_at_most_ride_out_s(tmp_path, kind):
    with Daemon(tmp_path / "gone.db") as daemon:
        url = daemon.url
    started = time.monotonic()

    def scenario(c):
        with pytest.raises(client.ApprovalDenied) as waited:
            c.wait_for_approval("apr_0000000000000000")
        return waited.value

    denied = Waiter(kind, url, scenario, ride_out_s=1.0).join()
    assert denied.resolution == "timeout" and isinstance(denied.__cause__, client.Unreachable)
    assert 1.0 <= time.monotonic() - started < 1.0 + 3  # it kept trying, but not forever


def test_a_steps_spend_rides_out_a_daemon_restart(tmp_path):
    agent = unique("a")
    first = Daemon(tmp_path / "step.db").start(STARTS)
    second: list[Daemon] = []
    try:
        with client.Client(first.url) as c:
            with c.step(agent_id=agent) as step:
                step.cost(3)
                # The daemon goes away while the step runs, and comes back while the client
                # is trying to record what the step cost.
                assert first.stop(STARTS) == 0
                back = threading.Thread(target=lambda: second.append(restarted_on(first)))
                back.start()
            back.join(STARTS * 2)
            assert step.outcome is not None and step.outcome.spend.duplicate is False
        conn = sqlite3.connect(first.db_path)
        try:
            charged = conn.execute("SELECT cost_micros FROM spends WHERE agent_id = ?",
                                   (agent,)).fetchall()
        finally:
            conn.close()
        assert charged == [(30_000,)]
    finally:
        first.kill()
        for daemon in second:
            daemon.kill()


def restarted_on(first: Daemon) -> Daemon:
    port = first.url.rsplit(":", 1)[1]
    return Daemon(first.db_path, server_port=port).start(STARTS)
