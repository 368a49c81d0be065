"""Webhooks against a real receiver on 127.0.0.1: every event type delivered once, signed;
retried until a receiver that was down comes back; Slack's shape; the delivery metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from receiver import Receiver

from clawguard.core import events, webhooks
from clawguard.http import state
from clawguard.runtime import config

SECRET = "whsec_test"
TOOLS = "/api/tools/approvals"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


def with_hooks(cfg: config.Config, *hooks: dict[str, Any], **notify: Any) -> config.Config:
    settings = config.NotifyConfig.model_validate({"webhooks": list(hooks), **notify})
    return cfg.model_copy(update={"notify": settings})


async def post(client: Any, path: str, body: dict[str, Any]) -> Any:
    resp = await client.post(path, data=json.dumps(body))
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()


async def drained(client: Any, within: float = 10.0) -> None:
    """Wait until the webhook's outbox is empty (its outcomes written, not only received)."""
    notifier, db = client.app[state.NOTIFIER], client.app[state.STORE]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (await db.delivery_backlog(notifier.webhooks[0].id)).depth:
        assert loop.time() < deadline
        await asyncio.sleep(0.01)


async def counted(client: Any, outcome: str, at_least: float, within: float = 10.0) -> None:
    """Wait until clawguard_webhook_deliveries_total{outcome} reaches `at_least`: the
    notifier counts a try after writing its outcome, so the receiver having answered
    does not yet mean the store knows when the next try is due."""
    counter = client.app[state.METRICS].webhook_deliveries.labels(
        client.app[state.NOTIFIER].webhooks[0].id, outcome)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while counter._value.get() < at_least:
        assert loop.time() < deadline, f"{outcome}: {counter._value.get()} < {at_least}"
        await asyncio.sleep(0.01)


async def every_event(client: Any) -> None:
    """One of each: a prompt and its decision, both crossings and a pause, a trip."""
    asked = await post(client, TOOLS, {"toolName": "rm", "agentId": "a1", "waitMs": 0})
    await post(client, f"{TOOLS}/{asked['approvalId']}/resolve", {"decision": "deny"})
    await post(client, "/api/governance/budgets",
               {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100, "mode": "cap"})
    await post(client, "/api/governance/spend", {"agentId": "a1", "costUsdCents": 80})
    await post(client, "/api/governance/spend", {"agentId": "a1", "costUsdCents": 20})
    run = await post(client, "/api/governance/runs", {"agentId": "a2"})
    await post(client, f"/api/governance/runs/{run['run']['id']}/events",
               [{"kind": "tool-result", "signature": "x", "ok": False}] * 3)


async def test_every_event_type_is_delivered_once_and_signed(
        make_client: Any, cfg: config.Config, receiver: Receiver) -> None:
    settings = with_hooks(cfg, {"url": receiver.url, "secret": SECRET})
    async with make_client(settings) as client:
        await every_event(client)
        got = await receiver.until(6)
        await drained(client)
        await asyncio.sleep(0.3)  # a stray second delivery would arrive in this time
    bodies = [r.json for r in got]
    assert len(receiver.received) == 6 and len({b["id"] for b in bodies}) == 6  # none twice
    assert {b["type"] for b in bodies} == set(events.EVENT_NAMES)
    for r, body in zip(got, bodies, strict=True):
        assert r.signed_by(SECRET)
        assert not r.signed_by("another secret")
        assert r.headers["X-Clawguard-Event-Id"] == body["id"]
        assert r.headers["Content-Type"] == "application/json"
        assert set(body) == {"id", "type", "createdAt", "data"}
    crossings = sorted(b["data"]["crossed"] for b in bodies if b["type"] == "budget.crossed")
    assert crossings == ["hard", "soft"]


async def test_a_slow_receiver_holds_up_no_request(
        make_client: Any, cfg: config.Config, receiver: Receiver) -> None:
    receiver.delay_s = 3.0
    settings = with_hooks(cfg, {"url": receiver.url, "secret": SECRET})
    async with make_client(settings) as client:
        await every_event(client)  # six deliveries, each answered after 3 s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while receiver.started < 6:  # all six POSTs under way at once, none answered yet
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        for n in range(10):  # spends and prompts, each answered while the POSTs wait
            await post(client, "/api/governance/spend", {"agentId": f"b{n}", "costUsdCents": 1})
            await post(client, TOOLS, {"toolName": "ls", "agentId": f"b{n}", "waitMs": 0})
        assert receiver.received == []  # the receiver has not answered one yet
        await receiver.until(16)
    assert len({r.json["id"] for r in receiver.received}) == 16


async def test_a_webhook_gets_only_the_events_it_names(
        make_client: Any, cfg: config.Config, receiver: Receiver) -> None:
    settings = with_hooks(cfg, {"url": receiver.url, "secret": SECRET,
                                "events": ["budget.paused"]})
    async with make_client(settings) as client:
        await every_event(client)
        [paused] = await receiver.until(1)
        await drained(client)
        await asyncio.sleep(0.3)  # a stray extra delivery would arrive in this time
    assert paused.json["type"] == "budget.paused" and len(receiver.received) == 1


async def test_what_happened_before_a_webhook_existed_is_not_replayed(
        make_client: Any, cfg: config.Config, receiver: Receiver) -> None:
    async with make_client(cfg) as client:
        await every_event(client)
    async with make_client(with_hooks(cfg, {"url": receiver.url, "secret": SECRET})) as client:
        await post(client, TOOLS, {"toolName": "rm", "agentId": "a1", "waitMs": 0})
        [only] = await receiver.until(1)
        await asyncio.sleep(0.3)
    assert only.json["type"] == "approval.requested" and len(receiver.received) == 1


async def test_a_receiver_down_then_up_gets_the_event_once_it_is_back(
        make_client: Any, cfg: config.Config, clock: Any, receiver: Receiver) -> None:
    receiver.status = 503
    settings = with_hooks(cfg, {"url": receiver.url, "secret": SECRET})
    async with make_client(settings) as client:
        notifier = client.app[state.NOTIFIER]
        wid = notifier.webhooks[0].id
        await post(client, TOOLS, {"toolName": "rm", "agentId": "a1", "waitMs": 0})
        for tries in range(1, 6):  # the fake clock moves past each retry; nothing sleeps
            await counted(client, "retried", tries)
            backlog = await client.app[state.STORE].delivery_backlog(wid)
            assert backlog.depth == 1 and backlog.next_due is not None
            assert 1_000 <= backlog.next_due - clock.now <= 300_000
            clock.advance(backlog.next_due - clock.now)
            notifier.nudge()
        receiver.status = 200
        clock.advance(300_000)
        notifier.nudge()
        [delivered] = await receiver.until(1)
        await drained(client)
        metrics = await (await client.get("/metrics")).text()
    assert delivered.json["type"] == "approval.requested" and delivered.signed_by(SECRET)
    assert f'clawguard_webhook_deliveries_total{{outcome="retried",webhook="{wid}"}}' in metrics
    assert f'clawguard_webhook_deliveries_total{{outcome="sent",webhook="{wid}"}} 1.0' in metrics
    assert f'clawguard_webhook_queue_depth{{webhook="{wid}"}} 0.0' in metrics


async def test_after_a_day_of_failures_it_gives_up_and_counts_it(
        make_client: Any, cfg: config.Config, clock: Any, receiver: Receiver) -> None:
    receiver.status = 500
    # An hour of retries, not a day: the same schedule, fewer tries to make.
    settings = with_hooks(cfg, {"url": receiver.url, "secret": SECRET}, give_up_ms=3_600_000)
    # The prompt outlives the hour, so that its expiry is not a second event to deliver.
    settings = settings.model_copy(update={"approvals": config.ApprovalsConfig(ttl_ms=10**9)})
    async with make_client(settings) as client:
        notifier, db = client.app[state.NOTIFIER], client.app[state.STORE]
        wid = notifier.webhooks[0].id
        await post(client, TOOLS, {"toolName": "rm", "agentId": "a1", "waitMs": 0})
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (backlog := await db.delivery_backlog(wid)).failed == 0:
            assert loop.time() < deadline
            await notifier.observe()
            if backlog.next_due is not None and backlog.next_due > clock.now:
                clock.advance(backlog.next_due - clock.now)
                notifier.nudge()
            await asyncio.sleep(0.005)
        await counted(client, "failed", 1)
        metrics = await (await client.get("/metrics")).text()
    assert backlog.depth == 0
    assert f'clawguard_webhook_deliveries_total{{outcome="failed",webhook="{wid}"}} 1.0' in metrics
    # 1, 2, 4 ... 256 s apart (at most), then every 5 min at most, for the hour.
    assert 10 <= receiver.refused <= 3_600


async def test_a_queue_that_waits_shows_in_the_metrics(
        make_client: Any, cfg: config.Config, clock: Any, receiver: Receiver) -> None:
    receiver.status = 500
    settings = with_hooks(cfg, {"url": receiver.url, "secret": SECRET})
    async with make_client(settings) as client:
        wid = client.app[state.NOTIFIER].webhooks[0].id
        await post(client, TOOLS, {"toolName": "rm", "agentId": "a1", "waitMs": 0})
        await post(client, TOOLS, {"toolName": "ls", "agentId": "a1", "waitMs": 0})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while receiver.refused < 2:
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        clock.advance(7_000)
        metrics = await (await client.get("/metrics")).text()
    assert f'clawguard_webhook_queue_depth{{webhook="{wid}"}} 2.0' in metrics
    assert f'clawguard_webhook_oldest_undelivered_seconds{{webhook="{wid}"}} 7.0' in metrics


async def test_slack_format_is_slacks_shape_with_a_console_link(
        make_client: Any, cfg: config.Config, receiver: Receiver) -> None:
    settings = with_hooks(cfg, {"url": receiver.url, "format": "slack"},
                          console_url="https://guard.example/console")
    async with make_client(settings) as client:
        asked = await post(client, TOOLS, {"toolName": "<b>rm</b>", "agentId": "a1",
                                           "waitMs": 0})
        [got] = await receiver.until(1)
    body = got.json
    assert set(body) == {"text", "blocks"}
    assert "<https://guard.example/console|" in body["text"]
    assert "&lt;b&gt;rm&lt;/b&gt;" in body["text"]
    assert asked["approvalId"]
    assert "X-Clawguard-Signature" not in got.headers  # no secret configured
    assert got.headers["X-Clawguard-Event-Id"].isdigit()


def test_the_default_console_url_is_the_listen_address() -> None:
    cfg = config.Config(server=config.ServerConfig(host="10.0.0.5", port=8080))
    assert cfg.console_url == "http://10.0.0.5:8080/console"
    hook = config.WebhookConfig(url="https://h.example/x", secret="s")  # type: ignore[arg-type]
    assert hook.id == webhooks.webhook_id("https://h.example/x")


@pytest.mark.parametrize(("hook", "named"), [
    ({"url": "ftp://h/x", "secret": "s"}, "url"),
    ({"url": "https://h.example/x"}, "secret"),
    ({"url": "https://h.example/x", "secret": "s", "events": ["budget.set"]}, "events"),
    ({"url": "https://h.example/x", "secret": "s", "format": "xml"}, "format"),
])
def test_bad_webhooks_are_refused(hook: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named if named != "secret" else "needs a secret"):
        config.NotifyConfig.model_validate({"webhooks": [hook]})
